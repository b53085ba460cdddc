//! One cache entry read from its manifest and config: kbuild's (schema 1, see the contract in
//! the README) or Kaniko's (CONTEXT.md section 3).
//!
//! A reader tells them apart by the `dev.kbuild.cache.schema` manifest annotation (or the
//! config's `kbuild_cache` field) against a first history entry by author `kaniko`. Anything
//! else in a cache repository is reported as `unknown`, never guessed at. Deviations from the
//! format (two layers, a preimage that does not hash to the tag) are listed as `problems`
//! rather than refused, since the point of inspecting is to see what is there.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::preimage::{ReadPart, key_of, read_preimage};
use super::time::{Age, parse_rfc3339};
use crate::image::ImageConfig;
use crate::registry::manifest::{ImageManifest, is_index};

pub const SCHEMA_ANNOTATION: &str = "dev.kbuild.cache.schema";
pub const KEY_ANNOTATION: &str = "dev.kbuild.cache.key";
pub const INSTRUCTION_ANNOTATION: &str = "dev.kbuild.cache.instruction";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// Who wrote an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Kbuild,
    Kaniko,
    Unknown,
}

/// A layer of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerRef {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The uncompressed digest from the config's `rootfs.diff_ids`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
}

/// A cache entry.
#[derive(Debug, Clone, Serialize)]
pub struct CacheEntry {
    /// The tag: the key's 64 hex characters.
    pub tag: String,
    /// `<repository>:<tag>`.
    pub reference: String,
    pub kind: EntryKind,
    /// The kbuild cache schema, for kbuild entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
    /// The instruction that made the layer (`created_by`).
    pub instruction: Option<String>,
    /// RFC 3339, as the entry says.
    pub created: Option<String>,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub config_digest: String,
    pub layers: Vec<LayerRef>,
    /// kbuild entries: `sha256:<hex>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// kbuild entries: the preimage as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preimage: Option<serde_json::Value>,
    /// Deviations from the entry format.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(skip)]
    pub parts: Option<Vec<ReadPart>>,
}

impl CacheEntry {
    /// Total compressed size of the layers.
    pub fn layer_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The creation time, when it parses.
    pub fn created_time(&self) -> Option<SystemTime> {
        self.created.as_deref().and_then(parse_rfc3339)
    }

    /// Age and expiry at `now` under `ttl`; None without a readable creation time.
    pub fn age(&self, now: SystemTime, ttl: Duration) -> Option<Age> {
        self.created_time().map(|c| Age::of(c, now, ttl))
    }

    /// `kbuild/1`, `kaniko` or `unknown`, for tables.
    pub fn kind_label(&self) -> String {
        match (self.kind, self.schema) {
            (EntryKind::Kbuild, Some(schema)) => format!("kbuild/{schema}"),
            (EntryKind::Kbuild, None) => "kbuild".into(),
            (EntryKind::Kaniko, _) => "kaniko".into(),
            (EntryKind::Unknown, _) => "unknown".into(),
        }
    }
}

/// Reads an entry from its manifest and config bytes. `Err` when the manifest is not a
/// single image manifest with a readable config.
pub fn parse_entry(
    repository: &str,
    tag: &str,
    manifest_bytes: &[u8],
    manifest_media_type: &str,
    config_bytes: &[u8],
) -> Result<CacheEntry, String> {
    if is_index(manifest_media_type) {
        return Err("it is an image index, not a single image".into());
    }
    let manifest: ImageManifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| format!("the manifest does not parse: {e}"))?;
    let config = ImageConfig::from_json(config_bytes)
        .map_err(|e| format!("the config does not parse: {e}"))?;
    let annotations = &manifest.annotations;
    let kbuild_cache = config.extra.get("kbuild_cache");
    let first = config.history.first();
    let mut problems = Vec::new();

    let schema = annotations
        .get(SCHEMA_ANNOTATION)
        .and_then(|s| s.parse::<u32>().ok())
        .or_else(|| {
            kbuild_cache
                .and_then(|k| k.get("schema"))
                .and_then(|s| s.as_u64())
                .map(|s| s as u32)
        });
    let kind = if annotations.contains_key(SCHEMA_ANNOTATION) || kbuild_cache.is_some() {
        EntryKind::Kbuild
    } else if first.and_then(|h| h.author.as_deref()) == Some("kaniko") {
        EntryKind::Kaniko
    } else {
        EntryKind::Unknown
    };
    let instruction = annotations
        .get(INSTRUCTION_ANNOTATION)
        .cloned()
        .or_else(|| first.and_then(|h| h.created_by.clone()));
    let created = annotations
        .get(CREATED_ANNOTATION)
        .cloned()
        .or_else(|| config.created.clone());
    let layers: Vec<LayerRef> = manifest
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerRef {
            digest: l.digest.to_string(),
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: config.rootfs.diff_ids.get(i).map(|d| d.to_string()),
        })
        .collect();
    if config.rootfs.diff_ids.len() != layers.len() {
        problems.push(format!(
            "the config lists {} diffIDs for {} layers",
            config.rootfs.diff_ids.len(),
            layers.len()
        ));
    }
    let mut key = None;
    let mut preimage = None;
    let mut parts = None;
    match kind {
        EntryKind::Kbuild => {
            if layers.len() > 1 {
                problems.push(format!(
                    "{} layers (a kbuild entry has at most one)",
                    layers.len()
                ));
            }
            key = annotations.get(KEY_ANNOTATION).cloned().or_else(|| {
                kbuild_cache
                    .and_then(|k| k.get("key"))
                    .and_then(|k| k.as_str())
                    .map(str::to_string)
            });
            if let Some(k) = &key
                && k.strip_prefix("sha256:") != Some(tag)
            {
                problems.push(format!("the key annotation {k} does not match the tag"));
            }
            preimage = kbuild_cache.and_then(|k| k.get("preimage")).cloned();
            parts = preimage.as_ref().and_then(read_preimage);
            match &parts {
                None => problems.push("no preimage in the config's kbuild_cache".into()),
                Some(parts) => {
                    if let Some(computed) = key_of(parts)
                        && computed.strip_prefix("sha256:") != Some(tag)
                    {
                        problems.push(format!("the preimage hashes to {computed}, not to the tag"));
                    }
                }
            }
        }
        EntryKind::Kaniko => {
            if layers.len() != 1 {
                problems.push(format!(
                    "{} layers (a Kaniko entry has exactly one)",
                    layers.len()
                ));
            }
        }
        EntryKind::Unknown => {}
    }
    Ok(CacheEntry {
        tag: tag.to_string(),
        reference: format!("{repository}:{tag}"),
        kind,
        schema: if kind == EntryKind::Kbuild {
            schema
        } else {
            None
        },
        instruction,
        created,
        manifest_digest: crate::digest::Digest::of(manifest_bytes).to_string(),
        manifest_media_type: manifest_media_type.to_string(),
        config_digest: manifest.config.digest.to_string(),
        layers,
        key,
        preimage,
        problems,
        parts,
    })
}

/// True for a tag that is a cache key (64 lower-case hex characters).
pub fn is_key_tag(tag: &str) -> bool {
    tag.len() == 64 && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::{ParentKind, Part, Preimage};

    const DIFF: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    const LAYER: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest(annotations: &str, media: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media}","config":{{"mediaType":"x","digest":"{LAYER}","size":1}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{LAYER}","size":32}}],"annotations":{{{annotations}}}}}"#
        )
    }

    #[test]
    fn kaniko_entries_are_recognised_by_their_history_author() {
        let config = format!(
            r#"{{"created":"2025-06-01T10:00:00.5Z","history":[{{"author":"kaniko","created_by":"RUN go build"}}],"rootfs":{{"type":"layers","diff_ids":["{DIFF}"]}}}}"#
        );
        let tag = "a".repeat(64);
        let e = parse_entry(
            "reg/cache",
            &tag,
            manifest("", "application/vnd.docker.distribution.manifest.v2+json").as_bytes(),
            "application/vnd.docker.distribution.manifest.v2+json",
            config.as_bytes(),
        )
        .unwrap();
        assert_eq!(e.kind, EntryKind::Kaniko);
        assert_eq!(e.kind_label(), "kaniko");
        assert_eq!(e.instruction.as_deref(), Some("RUN go build"));
        assert_eq!(e.layers[0].diff_id.as_deref(), Some(DIFF));
        assert!(e.problems.is_empty(), "{:?}", e.problems);
        assert!(e.preimage.is_none());
        assert!(e.created_time().is_some());
    }

    #[test]
    fn kbuild_entries_check_key_and_preimage_against_the_tag() {
        let mut p = Preimage::new(ParentKind::BaseImage, "sha256:b");
        p.push(Part::Instruction {
            name: "RUN".into(),
            text: "RUN make".into(),
        });
        let key = p.key();
        let config = serde_json::json!({
            "history": [{"author": "kbuild", "created_by": "RUN make"}],
            "rootfs": {"type": "layers", "diff_ids": [DIFF]},
            "kbuild_cache": {"schema": 1, "key": key.to_string(), "preimage": p},
        })
        .to_string();
        let annotations = format!(
            r#""{SCHEMA_ANNOTATION}":"1","{KEY_ANNOTATION}":"{key}","{CREATED_ANNOTATION}":"2025-06-01T10:00:00Z""#
        );
        let m = manifest(&annotations, "application/vnd.oci.image.manifest.v1+json");
        let ok = parse_entry("r", &key.hex(), m.as_bytes(), "x", config.as_bytes()).unwrap();
        assert_eq!(ok.kind_label(), "kbuild/1");
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        assert_eq!(ok.parts.as_ref().unwrap().len(), 3);

        let other = "b".repeat(64);
        let bad = parse_entry("r", &other, m.as_bytes(), "x", config.as_bytes()).unwrap();
        assert_eq!(bad.problems.len(), 2, "{:?}", bad.problems);
        assert!(bad.problems[1].contains("the preimage hashes to"));
    }

    #[test]
    fn indexes_and_garbage_are_not_entries() {
        let err = parse_entry(
            "r",
            "t",
            b"{}",
            "application/vnd.oci.image.index.v1+json",
            b"{}",
        );
        assert!(err.unwrap_err().contains("image index"));
        assert!(parse_entry("r", "t", b"nope", "x", b"{}").is_err());
        assert!(is_key_tag(&"0f".repeat(32)));
        assert!(!is_key_tag("latest"));
        assert!(!is_key_tag(&"0F".repeat(32)));
    }
}
