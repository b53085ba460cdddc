//! Manifests, indexes and descriptors in Docker v2 schema 2 and OCI form, and their media types.
//!
//! These structs read what registries serve and write what kbuild pushes. Unknown fields are kept
//! (`extra`) and maps are sorted, so writing is deterministic; but a pulled manifest is never
//! written back from these structs: its raw bytes are what gets pushed or saved, since a registry
//! names a manifest by the digest of exactly those bytes. oci-spec's types are not used because
//! their maps are unordered and they drop fields they do not know (CONTEXT.md section 7).

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::platform::Platform;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Every manifest media type kbuild reads, for `Accept` headers.
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Docker's or OCI's family of media types: an image keeps its base image's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaFamily {
    #[default]
    Docker,
    Oci,
}

/// Layer compression, which decides a new layer's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    #[default]
    Gzip,
    Zstd,
}

impl MediaFamily {
    /// The family a manifest media type belongs to.
    pub fn of(media_type: &str) -> MediaFamily {
        if media_type.starts_with("application/vnd.docker.") {
            MediaFamily::Docker
        } else {
            MediaFamily::Oci
        }
    }

    pub fn manifest(self) -> &'static str {
        match self {
            MediaFamily::Docker => DOCKER_MANIFEST,
            MediaFamily::Oci => OCI_MANIFEST,
        }
    }

    pub fn index(self) -> &'static str {
        match self {
            MediaFamily::Docker => DOCKER_MANIFEST_LIST,
            MediaFamily::Oci => OCI_INDEX,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            MediaFamily::Docker => DOCKER_CONFIG,
            MediaFamily::Oci => OCI_CONFIG,
        }
    }

    /// The media type of a new layer. Docker's schema has no zstd layer type, so a zstd layer
    /// always has the OCI type (callers switch the image to OCI for zstd).
    pub fn layer(self, compression: LayerCompression) -> &'static str {
        match (self, compression) {
            (MediaFamily::Docker, LayerCompression::Gzip) => DOCKER_LAYER_GZIP,
            (MediaFamily::Oci, LayerCompression::Gzip) => OCI_LAYER_GZIP,
            (_, LayerCompression::Zstd) => OCI_LAYER_ZSTD,
        }
    }
}

/// True for index (manifest list) media types.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// A content descriptor: what a manifest says about a blob or another manifest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<IndexPlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with only media type, digest and size.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            urls: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// A platform as an index entry writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IndexPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl IndexPlatform {
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    pub fn from_platform(p: &Platform) -> IndexPlatform {
        IndexPlatform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
            os_version: None,
            extra: BTreeMap::new(),
        }
    }
}

/// An image manifest (Docker v2 schema 2 or OCI).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The media type of a manifest document: the `Content-Type` a registry sent, else the
/// document's own `mediaType`, else a guess from its shape (OCI allows omitting it).
pub fn detect_media_type(content_type: Option<&str>, bytes: &[u8]) -> Option<String> {
    let from_header = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
        .filter(|c| ACCEPTED_MANIFESTS.contains(&c.as_str()));
    if from_header.is_some() {
        return from_header;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = value.get("mediaType").and_then(|m| m.as_str()) {
        return Some(mt.to_string());
    }
    if value.get("manifests").is_some() {
        Some(OCI_INDEX.into())
    } else if value.get("config").is_some() {
        Some(OCI_MANIFEST.into())
    } else {
        None
    }
}

/// Picks the manifest for `want` from an index: an exact platform match first, then one that
/// [`Platform::matches`] (a variant given on one side only). Attestation entries
/// (`unknown/unknown`) never match.
pub fn select_platform<'a>(index: &'a ImageIndex, want: &Platform) -> Option<&'a Descriptor> {
    let candidates = || {
        index
            .manifests
            .iter()
            .filter(|d| !is_index(&d.media_type))
            .filter_map(|d| d.platform.as_ref().map(|p| (d, p.platform())))
    };
    candidates()
        .find(|(_, p)| p == want)
        .or_else(|| candidates().find(|(_, p)| want.matches(p)))
        .map(|(d, _)| d)
}

/// Serialises a value as canonical JSON: keys sorted at every level, no insignificant
/// whitespace. Used for every manifest and config kbuild writes, so equal content gives equal
/// digests whatever serde_json's map features are.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::new();
    write_canonical(&value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        serde_json::Value::Object(map) => {
            out.push(b'{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical(&map[key], out)?;
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn entry(platform: &str) -> String {
        let p: Platform = platform.parse().unwrap();
        let variant = p
            .variant
            .map(|v| format!(r#","variant":"{v}""#))
            .unwrap_or_default();
        format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":{},"platform":{{"os":"{}","architecture":"{}"{variant}}}}}"#,
            platform.len(),
            p.os,
            p.architecture
        )
    }

    #[test]
    fn platform_selection_honours_variants() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{},{},{}]}}"#,
            entry("linux/arm/v6"),
            entry("linux/arm/v7"),
            entry("linux/amd64"),
            entry("linux/arm64/v8")
        );
        let index: ImageIndex = serde_json::from_str(&json).unwrap();
        let pick = |p: &str| select_platform(&index, &p.parse().unwrap()).map(|d| d.size);
        assert_eq!(pick("linux/arm/v7"), Some("linux/arm/v7".len() as u64));
        assert_eq!(pick("linux/arm/v6"), Some("linux/arm/v6".len() as u64));
        assert_eq!(pick("linux/amd64"), Some("linux/amd64".len() as u64));
        assert_eq!(pick("linux/arm64"), Some("linux/arm64/v8".len() as u64));
        assert_eq!(pick("linux/s390x"), None);
    }

    #[test]
    fn canonical_json_sorts_keys_and_keeps_unknown_fields() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":0}},"layers":[],"zz":1,"aa":{{"b":1,"a":2}}}}"#
        );
        let m: ImageManifest = serde_json::from_str(&json).unwrap();
        let out = String::from_utf8(canonical_json(&m).unwrap()).unwrap();
        assert!(out.starts_with(r#"{"aa":{"a":2,"b":1},"config":"#), "{out}");
        assert!(out.ends_with(r#""schemaVersion":2,"zz":1}"#), "{out}");
    }

    #[test]
    fn media_types_are_detected() {
        assert_eq!(
            detect_media_type(
                Some("application/vnd.oci.image.index.v1+json; charset=x"),
                b"{}"
            ),
            Some(OCI_INDEX.into())
        );
        assert_eq!(
            detect_media_type(Some("application/json"), br#"{"manifests":[]}"#),
            Some(OCI_INDEX.into())
        );
        assert_eq!(MediaFamily::of(DOCKER_MANIFEST), MediaFamily::Docker);
        assert_eq!(
            MediaFamily::Docker.layer(LayerCompression::Zstd),
            OCI_LAYER_ZSTD
        );
    }
}
