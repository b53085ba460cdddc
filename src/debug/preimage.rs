//! Preimages as they are read back from cache entries and reports.
//!
//! A preimage written by a newer kbuild may hold part types this one does not know; those are
//! kept as [`ReadPart::Unknown`] and compared by their JSON, so `cache diff` still says which
//! part changed instead of failing to parse the whole entry.

use crate::cache::key::{ParentKind, Part};

/// One part of a preimage as read from JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadPart {
    Known(Part),
    Unknown {
        kind: String,
        value: serde_json::Value,
    },
}

impl ReadPart {
    /// The part type (`env`, `file`, ...).
    pub fn kind(&self) -> String {
        match self {
            ReadPart::Known(p) => p.kind().to_string(),
            ReadPart::Unknown { kind, .. } => kind.clone(),
        }
    }

    /// What the part is about among parts of its type (a variable, a file), for pairing.
    pub fn identity(&self) -> String {
        match self {
            ReadPart::Known(p) => p.identity(),
            ReadPart::Unknown { value, .. } => ["name", "path", "url"]
                .iter()
                .find_map(|k| value.get(*k).and_then(|v| v.as_str()))
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// The part's value as one line of text (what a diff shows for it).
    pub fn value_text(&self) -> String {
        match self {
            ReadPart::Known(part) => match part {
                Part::Schema { version } => version.to_string(),
                Part::Parent { from, key } => format!("{} {key}", parent_label(*from)),
                Part::Platform { platform } => platform.clone(),
                Part::Instruction { text, .. } => text.clone(),
                Part::Env { value, .. } | Part::Arg { value, .. } | Part::Option { value, .. } => {
                    value.clone()
                }
                Part::File {
                    mode,
                    uid,
                    gid,
                    content,
                    ..
                }
                | Part::StageFile {
                    mode,
                    uid,
                    gid,
                    content,
                    ..
                } => format!("{content} mode {mode:04o} owner {uid}:{gid}"),
                Part::Url { digest, .. } => digest.clone(),
            },
            ReadPart::Unknown { value, .. } => value.to_string(),
        }
    }

    /// The known part, if this kbuild knows its type.
    pub fn known(&self) -> Option<&Part> {
        match self {
            ReadPart::Known(p) => Some(p),
            ReadPart::Unknown { .. } => None,
        }
    }

    /// The parent part's origin and key.
    pub fn parent(&self) -> Option<(ParentKind, &str)> {
        match self.known()? {
            Part::Parent { from, key } => Some((*from, key.as_str())),
            _ => None,
        }
    }
}

/// How a parent is described to a user.
pub fn parent_label(from: ParentKind) -> &'static str {
    match from {
        ParentKind::BaseImage => "base image",
        ParentKind::Instruction => "previous instruction",
        ParentKind::Stage => "stage",
        ParentKind::Scratch => "scratch",
    }
}

/// Reads `{"parts": [...]}`. None when the value has no `parts` list.
pub fn read_preimage(value: &serde_json::Value) -> Option<Vec<ReadPart>> {
    let parts = value.get("parts")?.as_array()?;
    Some(
        parts
            .iter()
            .map(|p| match serde_json::from_value::<Part>(p.clone()) {
                Ok(part) => ReadPart::Known(part),
                Err(_) => ReadPart::Unknown {
                    kind: p
                        .get("part")
                        .and_then(|k| k.as_str())
                        .unwrap_or("unknown")
                        .to_string(),
                    value: p.clone(),
                },
            })
            .collect(),
    )
}

/// The key these parts hash to, when every part is of a known type.
pub fn key_of(parts: &[ReadPart]) -> Option<String> {
    let known: Option<Vec<Part>> = parts.iter().map(|p| p.known().cloned()).collect();
    Some(
        crate::cache::key::Preimage { parts: known? }
            .key()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Preimage;

    #[test]
    fn unknown_part_types_are_kept_and_known_ones_hash_to_the_key() {
        let mut p = Preimage::new(ParentKind::BaseImage, "sha256:base");
        p.push(Part::Arg {
            name: "GOPROXY".into(),
            value: "https://a".into(),
        });
        let mut json = serde_json::to_value(&p).unwrap();
        let parts = read_preimage(&json).unwrap();
        assert_eq!(key_of(&parts), Some(p.key().to_string()));
        assert_eq!(parts[2].identity(), "GOPROXY");
        assert_eq!(parts[1].value_text(), "base image sha256:base");

        json["parts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"part": "secret_mount", "name": "npmrc", "digest": "x"}));
        let parts = read_preimage(&json).unwrap();
        assert_eq!(parts[3].kind(), "secret_mount");
        assert_eq!(parts[3].identity(), "npmrc");
        assert_eq!(key_of(&parts), None, "unknown parts cannot be hashed here");
        assert_eq!(read_preimage(&serde_json::json!({"x": 1})), None);
    }
}
