//! Cache keys that explain themselves (DESIGN.md decision 6).
//!
//! A key is sha256 over a framed encoding of typed, named parts: every part is a tag and its fields,
//! each field length-prefixed, so no two different part lists can encode to the same bytes (Kaniko
//! joins strings with "-", which collides). The parts themselves are the preimage: stored beside the
//! key in the cache entry and the build report so `kbuild cache diff` can say which part changed.
//!
//! What goes into a key is decided by the executor; this module only guarantees that the encoding
//! is unambiguous, versioned ([`SCHEMA_VERSION`]) and stable. mtimes have no part type on purpose.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// The key schema. Bump it whenever the parts an instruction contributes change meaning, so old
/// entries are never mistaken for new ones.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a key's parent comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentKind {
    /// The base image's manifest digest for the platform.
    BaseImage,
    /// The previous instruction's key in the same stage.
    Instruction,
    /// The final key of the stage this stage is built `FROM`.
    Stage,
    /// No parent: `FROM scratch`.
    Scratch,
}

/// One named part of a preimage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "part", rename_all = "snake_case")]
pub enum Part {
    /// The key schema version; always the first part.
    Schema { version: u32 },
    /// The key (or base image digest) this instruction builds on.
    Parent { from: ParentKind, key: String },
    /// The target platform.
    Platform { platform: String },
    /// The instruction kind (`RUN`, `COPY`, ...) and its text after expansion.
    Instruction { name: String, text: String },
    /// An ENV value the instruction can see.
    Env { name: String, value: String },
    /// A declared ARG value the instruction can see.
    Arg { name: String, value: String },
    /// An instruction option that changes its result (`--chown`, `--chmod`, destination, ...).
    Option { name: String, value: String },
    /// A source file of COPY/ADD: its path relative to the source root, metadata and content.
    /// `content` is `sha256:<hex>` for a file, `symlink:<target>` for a link, `dir` for a directory.
    File {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
        content: String,
    },
    /// A remote ADD source and the digest of what was downloaded.
    Url { url: String, digest: String },
    /// A file COPY'd from another stage or image: where from, and its content as for `File`.
    StageFile {
        stage: String,
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
        content: String,
    },
}

impl Part {
    /// A short type name, for diffs and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Part::Schema { .. } => "schema",
            Part::Parent { .. } => "parent",
            Part::Platform { .. } => "platform",
            Part::Instruction { .. } => "instruction",
            Part::Env { .. } => "env",
            Part::Arg { .. } => "arg",
            Part::Option { .. } => "option",
            Part::File { .. } => "file",
            Part::Url { .. } => "url",
            Part::StageFile { .. } => "stage_file",
        }
    }

    /// What identifies this part among its kind (the variable, option or file it is about), so
    /// two preimages can be compared part by part.
    pub fn identity(&self) -> String {
        match self {
            Part::Schema { .. } | Part::Parent { .. } | Part::Platform { .. } => String::new(),
            Part::Instruction { name, .. } => name.clone(),
            Part::Env { name, .. } | Part::Arg { name, .. } | Part::Option { name, .. } => {
                name.clone()
            }
            Part::File { path, .. } => path.clone(),
            Part::Url { url, .. } => url.clone(),
            Part::StageFile { stage, path, .. } => format!("{stage}:{path}"),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.kind().as_bytes());
        match self {
            Part::Schema { version } => field(&version.to_be_bytes()),
            Part::Parent { from, key } => {
                field(format!("{from:?}").as_bytes());
                field(key.as_bytes());
            }
            Part::Platform { platform } => field(platform.as_bytes()),
            Part::Instruction { name, text } => {
                field(name.as_bytes());
                field(text.as_bytes());
            }
            Part::Env { name, value }
            | Part::Arg { name, value }
            | Part::Option { name, value } => {
                field(name.as_bytes());
                field(value.as_bytes());
            }
            Part::File {
                path,
                mode,
                uid,
                gid,
                content,
            } => {
                field(path.as_bytes());
                field(&mode.to_be_bytes());
                field(&uid.to_be_bytes());
                field(&gid.to_be_bytes());
                field(content.as_bytes());
            }
            Part::Url { url, digest } => {
                field(url.as_bytes());
                field(digest.as_bytes());
            }
            Part::StageFile {
                stage,
                path,
                mode,
                uid,
                gid,
                content,
            } => {
                field(stage.as_bytes());
                field(path.as_bytes());
                field(&mode.to_be_bytes());
                field(&uid.to_be_bytes());
                field(&gid.to_be_bytes());
                field(content.as_bytes());
            }
        }
    }
}

/// The named parts a key is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage {
    pub parts: Vec<Part>,
}

impl Preimage {
    /// A preimage that starts with the schema version and the parent.
    pub fn new(from: ParentKind, parent_key: impl Into<String>) -> Preimage {
        Preimage {
            parts: vec![
                Part::Schema {
                    version: SCHEMA_VERSION,
                },
                Part::Parent {
                    from,
                    key: parent_key.into(),
                },
            ],
        }
    }

    /// Appends a part.
    pub fn push(&mut self, part: Part) -> &mut Self {
        self.parts.push(part);
        self
    }

    /// The key: sha256 over the framed parts.
    pub fn key(&self) -> Digest {
        let mut hasher = Sha256::new();
        let mut buf = Vec::new();
        hasher.update(b"kbuild-cache-key\0");
        hasher.update((self.parts.len() as u64).to_be_bytes());
        for part in &self.parts {
            buf.clear();
            part.encode(&mut buf);
            hasher.update((buf.len() as u64).to_be_bytes());
            hasher.update(&buf);
        }
        Digest::from_bytes(hasher.finalize().into())
    }

    /// The schema version this preimage was made with, if it says.
    pub fn schema_version(&self) -> Option<u32> {
        self.parts.iter().find_map(|p| match p {
            Part::Schema { version } => Some(*version),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Preimage {
        let mut p = Preimage::new(ParentKind::BaseImage, "sha256:base");
        p.push(Part::Platform {
            platform: "linux/amd64".into(),
        })
        .push(Part::Instruction {
            name: "RUN".into(),
            text: text.into(),
        });
        p
    }

    fn file(path: &str, content: &str) -> Part {
        Part::File {
            path: path.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            content: content.into(),
        }
    }

    #[test]
    fn framing_prevents_join_collisions() {
        // Kaniko's "-" join makes these two collide; framed parts must not.
        let mut a = run("x");
        a.push(Part::Arg {
            name: "A-B".into(),
            value: "C".into(),
        });
        let mut b = run("x");
        b.push(Part::Arg {
            name: "A".into(),
            value: "B-C".into(),
        });
        assert_ne!(a.key(), b.key());
        assert_ne!(run("ab").key(), run("a").push(file("b", "")).key());
    }

    #[test]
    fn renaming_a_file_changes_the_key_and_equal_inputs_do_not() {
        let mut a = run("COPY . /app");
        a.push(file("src/main.go", "sha256:1"));
        let mut renamed = run("COPY . /app");
        renamed.push(file("src/app.go", "sha256:1"));
        let mut same = run("COPY . /app");
        same.push(file("src/main.go", "sha256:1"));
        assert_ne!(a.key(), renamed.key());
        assert_eq!(a.key(), same.key());
    }

    #[test]
    fn preimages_round_trip_through_json_with_the_same_key() {
        let mut p = run("go build");
        p.push(Part::Env {
            name: "GOPROXY".into(),
            value: "https://proxy".into(),
        })
        .push(Part::StageFile {
            stage: "builder".into(),
            path: "/out/app".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            content: "sha256:2".into(),
        });
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""part":"env","name":"GOPROXY""#), "{json}");
        let back: Preimage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.key(), p.key());
        assert_eq!(back.schema_version(), Some(SCHEMA_VERSION));
    }
}
