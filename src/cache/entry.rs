//! The cache entry format (schema 1, `/work/notes/contracts.md`): one OCI image per key, tagged
//! with the key's hex, holding the instruction's layer (or none for a step that changed nothing)
//! and, in its config, the key's preimage.
//!
//! Writing: [`NewEntry::encode`] gives the config and manifest bytes (canonical JSON). Reading:
//! [`Entry::decode`] checks that a manifest and config are a kbuild schema 1 entry for the key
//! asked for. A Kaniko entry (Docker manifest, history author `kaniko`, no preimage) is told
//! apart and refused by [`EntryError::NotKbuild`]; `kbuild cache inspect` reads those itself.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::image::config::{History, ImageConfig};
use crate::platform::Platform;
use crate::registry::manifest::{
    Descriptor, ImageManifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST,
    canonical_json,
};

use super::key::Preimage;

/// The entry schema this kbuild writes and reads.
pub const ENTRY_SCHEMA: u32 = 1;
/// Manifest annotation: the entry schema (`"1"`).
pub const ANNOTATION_SCHEMA: &str = "dev.kbuild.cache.schema";
/// Manifest annotation: the key (`sha256:<hex>`).
pub const ANNOTATION_KEY: &str = "dev.kbuild.cache.key";
/// Manifest annotation: the instruction (its history `created_by`).
pub const ANNOTATION_INSTRUCTION: &str = "dev.kbuild.cache.instruction";
/// Manifest annotation: when the entry was made (RFC 3339); the TTL counts from here.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// The config's top-level field holding the key and preimage.
pub const CONFIG_FIELD: &str = "kbuild_cache";

/// Why a manifest and config are not a usable kbuild entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not a kbuild cache entry ({0})")]
    NotKbuild(String),
    #[error("kbuild cache entry schema {found}, this kbuild reads schema {ENTRY_SCHEMA}")]
    Schema { found: String },
    #[error("the entry is for key {found}, not {wanted}")]
    OtherKey { found: String, wanted: String },
    #[error("invalid cache entry: {0}")]
    Invalid(String),
}

/// The layer of an entry: its descriptor (digest, size, media type) and diffID.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

impl EntryLayer {
    /// True for a zstd layer (else gzip).
    pub fn is_zstd(&self) -> bool {
        self.descriptor.media_type.contains("zstd")
    }
}

/// A cache entry as read from a store.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Digest,
    pub instruction: String,
    /// RFC 3339, as stored.
    pub created: String,
    pub created_at: Option<SystemTime>,
    pub preimage: Option<Preimage>,
    /// None for a step that changed nothing.
    pub layer: Option<EntryLayer>,
    /// Files the instruction added, changed and deleted, when the entry says.
    pub files: Option<FileCounts>,
}

/// How many files a layer added, changed and deleted (kept with an entry for the report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCounts {
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
}

/// An entry about to be stored.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub key: Digest,
    pub preimage: Preimage,
    pub instruction: String,
    pub platform: Platform,
    pub layer: Option<EntryLayer>,
    pub files: Option<FileCounts>,
    pub created: SystemTime,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ConfigField {
    schema: u32,
    key: String,
    preimage: Preimage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<FileCounts>,
}

/// RFC 3339 with seconds, as kbuild writes times.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

impl NewEntry {
    /// The config and manifest bytes of the entry (canonical JSON); the manifest's config
    /// descriptor names the config bytes' digest.
    pub fn encode(&self) -> Result<(Vec<u8>, Vec<u8>), EntryError> {
        let created = rfc3339(self.created);
        let mut config = ImageConfig::for_platform(&self.platform);
        config.created = Some(created.clone());
        config.history.push(History {
            created: Some(created.clone()),
            created_by: Some(self.instruction.clone()),
            author: Some("kbuild".into()),
            comment: Some(format!("kbuild cache schema {ENTRY_SCHEMA}")),
            empty_layer: self.layer.is_none().then_some(true),
            ..History::default()
        });
        if let Some(layer) = &self.layer {
            config.rootfs.diff_ids.push(layer.diff_id);
        }
        let field = ConfigField {
            schema: ENTRY_SCHEMA,
            key: self.key.to_string(),
            preimage: self.preimage.clone(),
            files: self.files,
        };
        let value = serde_json::to_value(&field).map_err(|e| EntryError::Invalid(e.to_string()))?;
        config.extra.insert(CONFIG_FIELD.into(), value);
        let config_bytes = config
            .to_json()
            .map_err(|e| EntryError::Invalid(e.to_string()))?;
        let layers = self
            .layer
            .iter()
            .map(|l| {
                let media_type = if l.is_zstd() {
                    OCI_LAYER_ZSTD
                } else {
                    OCI_LAYER_GZIP
                };
                Descriptor::new(media_type, l.descriptor.digest, l.descriptor.size)
            })
            .collect();
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_SCHEMA.into(), ENTRY_SCHEMA.to_string());
        annotations.insert(ANNOTATION_KEY.into(), self.key.to_string());
        annotations.insert(ANNOTATION_INSTRUCTION.into(), self.instruction.clone());
        annotations.insert(ANNOTATION_CREATED.into(), created);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor::new(
                OCI_CONFIG,
                Digest::of(&config_bytes),
                config_bytes.len() as u64,
            ),
            layers,
            annotations,
            extra: BTreeMap::new(),
        };
        let manifest_bytes =
            canonical_json(&manifest).map_err(|e| EntryError::Invalid(e.to_string()))?;
        Ok((config_bytes, manifest_bytes))
    }
}

/// The parts of a manifest that say whether it is a kbuild entry, read before its config.
pub fn check_manifest(bytes: &[u8], wanted: &Digest) -> Result<ImageManifest, EntryError> {
    let manifest: ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| EntryError::Invalid(e.to_string()))?;
    let Some(schema) = manifest.annotations.get(ANNOTATION_SCHEMA) else {
        return Err(EntryError::NotKbuild(
            "no dev.kbuild.cache.schema annotation; a Kaniko entry has none".into(),
        ));
    };
    if schema != &ENTRY_SCHEMA.to_string() {
        return Err(EntryError::Schema {
            found: schema.clone(),
        });
    }
    let key = manifest
        .annotations
        .get(ANNOTATION_KEY)
        .cloned()
        .unwrap_or_default();
    if key != wanted.to_string() {
        return Err(EntryError::OtherKey {
            found: key,
            wanted: wanted.to_string(),
        });
    }
    if manifest.layers.len() > 1 {
        return Err(EntryError::Invalid(format!(
            "{} layers; an entry holds one or none",
            manifest.layers.len()
        )));
    }
    Ok(manifest)
}

impl Entry {
    /// Reads an entry from its manifest and config bytes, checking it is a schema 1 entry for
    /// `wanted`.
    pub fn decode(manifest: &[u8], config: &[u8], wanted: &Digest) -> Result<Entry, EntryError> {
        let parsed = check_manifest(manifest, wanted)?;
        let image =
            ImageConfig::from_json(config).map_err(|e| EntryError::Invalid(e.to_string()))?;
        let field: Option<ConfigField> = image
            .extra
            .get(CONFIG_FIELD)
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let created = parsed
            .annotations
            .get(ANNOTATION_CREATED)
            .cloned()
            .or_else(|| image.created.clone())
            .unwrap_or_default();
        let created_at = humantime::parse_rfc3339_weak(&created).ok();
        let layer = match parsed.layers.first() {
            None => None,
            Some(descriptor) => {
                let diff_id = *image.rootfs.diff_ids.first().ok_or_else(|| {
                    EntryError::Invalid("a layer but no diff_id in the config".into())
                })?;
                Some(EntryLayer {
                    descriptor: descriptor.clone(),
                    diff_id,
                })
            }
        };
        Ok(Entry {
            key: *wanted,
            instruction: parsed
                .annotations
                .get(ANNOTATION_INSTRUCTION)
                .cloned()
                .unwrap_or_default(),
            created,
            created_at,
            files: field.as_ref().and_then(|f| f.files),
            preimage: field.map(|f| f.preimage),
            layer,
        })
    }

    /// True when the entry is older than `ttl` (or its age cannot be told).
    pub fn expired(&self, ttl: std::time::Duration, now: SystemTime) -> bool {
        match self.created_at {
            Some(at) => now.duration_since(at).is_ok_and(|age| age > ttl),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::{ParentKind, Part};

    fn new_entry(layer: bool) -> NewEntry {
        let mut preimage = Preimage::new(ParentKind::BaseImage, "sha256:base");
        preimage.push(Part::Instruction {
            name: "RUN".into(),
            text: "RUN make".into(),
        });
        NewEntry {
            key: preimage.key(),
            preimage,
            instruction: "RUN make".into(),
            platform: "linux/amd64".parse().unwrap(),
            layer: layer.then(|| EntryLayer {
                descriptor: Descriptor::new(OCI_LAYER_GZIP, Digest::of(b"blob"), 4),
                diff_id: Digest::of(b"tar"),
            }),
            files: Some(FileCounts {
                added: 2,
                changed: 1,
                deleted: 0,
            }),
            created: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn entries_follow_the_contract_and_read_back() {
        let entry = new_entry(true);
        let (config, manifest) = entry.encode().unwrap();
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["annotations"][ANNOTATION_SCHEMA], "1");
        assert_eq!(m["annotations"][ANNOTATION_KEY], entry.key.to_string());
        assert_eq!(m["annotations"][ANNOTATION_INSTRUCTION], "RUN make");
        assert_eq!(m["annotations"][ANNOTATION_CREATED], "2023-11-14T22:13:20Z");
        assert_eq!(m["config"]["digest"], Digest::of(&config).to_string());
        let c: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["history"][0]["author"], "kbuild");
        assert_eq!(c["history"][0]["comment"], "kbuild cache schema 1");
        assert_eq!(c["history"][0]["created_by"], "RUN make");
        assert_eq!(c["rootfs"]["diff_ids"][0], Digest::of(b"tar").to_string());
        assert_eq!(c["kbuild_cache"]["schema"], 1);
        assert_eq!(c["kbuild_cache"]["preimage"]["parts"][0]["part"], "schema");

        let back = Entry::decode(&manifest, &config, &entry.key).unwrap();
        assert_eq!(back.preimage.as_ref().unwrap().key(), entry.key);
        assert_eq!(back.layer.unwrap().diff_id, Digest::of(b"tar"));
        assert_eq!(back.files.unwrap().added, 2);
        let later = entry.created + std::time::Duration::from_secs(3600);
        assert!(!back_expired(&manifest, &config, &entry.key, 7200, later));
        assert!(back_expired(&manifest, &config, &entry.key, 60, later));
    }

    fn back_expired(m: &[u8], c: &[u8], key: &Digest, ttl: u64, now: SystemTime) -> bool {
        Entry::decode(m, c, key)
            .unwrap()
            .expired(std::time::Duration::from_secs(ttl), now)
    }

    #[test]
    fn an_empty_step_is_an_entry_without_layers() {
        let entry = new_entry(false);
        let (config, manifest) = entry.encode().unwrap();
        let back = Entry::decode(&manifest, &config, &entry.key).unwrap();
        assert!(back.layer.is_none());
        let c: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["history"][0]["empty_layer"], true);
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn kaniko_entries_and_other_keys_are_refused() {
        let kaniko = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let key = Digest::of(b"k");
        assert!(matches!(
            check_manifest(kaniko, &key),
            Err(EntryError::NotKbuild(_))
        ));
        let entry = new_entry(true);
        let (_, manifest) = entry.encode().unwrap();
        assert!(matches!(
            check_manifest(&manifest, &key),
            Err(EntryError::OtherKey { .. })
        ));
    }
}
