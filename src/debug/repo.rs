//! Reading a cache repository: a registry repository or an OCI image layout (`oci:/path`).
//!
//! Tags are listed with the registry's paginated tag list (or the layout's `index.json` ref
//! names); entries are fetched concurrently, each as its manifest and config, never its layer.
//! A layer is only ever opened as a stream ([`CacheRepo::layer_reader`]), read by
//! [`super::layer`] through a decompressor and a tar header reader.
//!
//! Cache repositories are read with the same [`RegistryClient`] the build uses, so its
//! credentials and TLS and plain-HTTP flags apply. Mirrors and `--registry-map` do not: they
//! stand in for base image pulls, and a cache is read where it was written.

use std::io::Read;
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::DebugError;
use super::entry::{CacheEntry, LayerRef, is_key_tag, parse_entry};
use crate::digest::Digest;
use crate::registry::manifest::{ImageIndex, ImageManifest, detect_media_type, is_index};
use crate::registry::{Direction, Reference, RegistryClient, RegistryError};

/// Entries fetched at the same time when listing a repository.
const CONCURRENT_FETCHES: usize = 8;
/// A config blob larger than this is not a cache entry's.
const MAX_CONFIG: usize = 8 * 1024 * 1024;
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where a cache repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A registry repository (no tag).
    Registry(Reference),
    /// An OCI image layout directory.
    Layout(PathBuf),
}

impl Location {
    /// How the repository is named to a user: `registry/repo` or `oci:/path`.
    pub fn name(&self) -> String {
        match self {
            Location::Registry(r) => r.name(),
            Location::Layout(p) => format!("oci:{}", p.display()),
        }
    }
}

/// A command-line argument naming a cache repository, optionally with a key (or key prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub location: Location,
    pub key: Option<String>,
}

/// Parses `REPO`, `REPO:KEY`, `oci:/path` or `oci:/path:KEY`. A key may be `sha256:`-prefixed
/// and may be a prefix of at least 6 hex characters.
pub fn parse_target(text: &str) -> Result<Target, DebugError> {
    let split_key = |s: &str| -> (String, Option<String>) {
        let s = s.replace("@sha256:", ":");
        match s.rsplit_once(':') {
            Some((rest, key))
                if !rest.is_empty()
                    && !rest.ends_with('/')
                    && key.len() >= 6
                    && key.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                (rest.to_string(), Some(key.to_ascii_lowercase()))
            }
            _ => (s.to_string(), None),
        }
    };
    if let Some(path) = text.strip_prefix("oci:") {
        let (path, key) = split_key(path);
        if path.is_empty() {
            return Err(DebugError::Usage(
                "oci: needs a directory\nhint: write oci:/path/to/layout".into(),
            ));
        }
        return Ok(Target {
            location: Location::Layout(PathBuf::from(path)),
            key,
        });
    }
    let last = text.rsplit('/').next().unwrap_or(text);
    let (name, key) = if last.contains(':') || text.contains('@') {
        let (name, key) = split_key(text);
        match key {
            Some(key) => (name, Some(key)),
            None => {
                return Err(DebugError::Usage(format!(
                    "{text}: the tag is not a cache key\nhint: cache entries are tagged with \
                     their key's 64 hex characters; name the repository alone to list them"
                )));
            }
        }
    } else {
        (text.to_string(), None)
    };
    let reference: Reference = name
        .parse()
        .map_err(|e| DebugError::Registry(RegistryError::Reference(e)))?;
    Ok(Target {
        location: Location::Registry(reference),
        key,
    })
}

/// A cache repository to read.
#[derive(Clone)]
pub struct CacheRepo {
    location: Location,
    client: RegistryClient,
}

impl CacheRepo {
    pub fn new(location: Location, client: RegistryClient) -> CacheRepo {
        CacheRepo { location, client }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// `registry/repo` or `oci:/path`.
    pub fn name(&self) -> String {
        self.location.name()
    }

    fn tagged(&self, reference: &Reference, tag: &str) -> Result<Reference, DebugError> {
        format!("{}:{tag}", reference.name())
            .parse()
            .map_err(|e| DebugError::Registry(RegistryError::Reference(e)))
    }

    /// Every tag that is a cache key, sorted.
    pub async fn tags(&self) -> Result<Vec<String>, DebugError> {
        let mut tags = match &self.location {
            Location::Registry(r) => match self.client.list_tags(r).await {
                Ok(tags) => tags,
                // A repository nobody pushed to yet has no entries.
                Err(RegistryError::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            },
            Location::Layout(dir) => read_index(dir)?
                .manifests
                .iter()
                .filter_map(|d| d.annotations.get(REF_NAME))
                .map(|name| layout_tag(name).to_string())
                .collect(),
        };
        let total = tags.len();
        tags.retain(|t| is_key_tag(t));
        tags.sort();
        tags.dedup();
        if tags.len() < total {
            tracing::info!(
                "{}: skipped {} tag(s) that are not cache keys",
                self.name(),
                total - tags.len()
            );
        }
        Ok(tags)
    }

    /// The full tag for a key or key prefix.
    pub async fn resolve_key(&self, key: &str) -> Result<String, DebugError> {
        let key = key.strip_prefix("sha256:").unwrap_or(key);
        if is_key_tag(key) {
            return Ok(key.to_string());
        }
        let matching: Vec<String> = self
            .tags()
            .await?
            .into_iter()
            .filter(|t| t.starts_with(key))
            .collect();
        match matching.len() {
            1 => Ok(matching[0].clone()),
            0 => Err(DebugError::NoEntry {
                repo: self.name(),
                key: key.to_string(),
            }),
            count => Err(DebugError::AmbiguousKey {
                repo: self.name(),
                prefix: key.to_string(),
                count,
            }),
        }
    }

    /// The entry tagged `tag`.
    pub async fn entry(&self, tag: &str) -> Result<CacheEntry, DebugError> {
        let not_entry = |reason: String| DebugError::NotAnEntry {
            repo: self.name(),
            tag: tag.to_string(),
            reason,
        };
        let (manifest, media_type, config) = match &self.location {
            Location::Registry(r) => {
                let reference = self.tagged(r, tag)?;
                let fetched = match self.client.get_manifest(&reference, Direction::Pull).await {
                    Err(RegistryError::NotFound { .. }) => {
                        return Err(DebugError::NoEntry {
                            repo: self.name(),
                            key: tag.to_string(),
                        });
                    }
                    other => other?,
                };
                if is_index(&fetched.media_type) {
                    return Err(not_entry("it is an image index, not a single image".into()));
                }
                let parsed: ImageManifest = serde_json::from_slice(&fetched.bytes)
                    .map_err(|e| not_entry(format!("the manifest does not parse: {e}")))?;
                let config = self.small_blob(r, &parsed.config.digest).await?;
                (fetched.bytes, fetched.media_type, config)
            }
            Location::Layout(dir) => {
                let index = read_index(dir)?;
                let descriptor = index
                    .manifests
                    .iter()
                    .find(|d| d.annotations.get(REF_NAME).map(|n| layout_tag(n)) == Some(tag))
                    .ok_or_else(|| DebugError::NoEntry {
                        repo: self.name(),
                        key: tag.to_string(),
                    })?;
                let bytes = read_layout_blob(dir, &descriptor.digest)?;
                let media_type = detect_media_type(Some(&descriptor.media_type), &bytes)
                    .unwrap_or_else(|| descriptor.media_type.clone());
                if is_index(&media_type) {
                    return Err(not_entry("it is an image index, not a single image".into()));
                }
                let parsed: ImageManifest = serde_json::from_slice(&bytes)
                    .map_err(|e| not_entry(format!("the manifest does not parse: {e}")))?;
                let config = read_layout_blob(dir, &parsed.config.digest)?;
                (bytes, media_type, config)
            }
        };
        parse_entry(&self.name(), tag, &manifest, &media_type, &config).map_err(not_entry)
    }

    /// Fetches the entries of `tags` concurrently; a tag that cannot be read keeps its error.
    pub async fn entries(&self, tags: &[String]) -> Vec<(String, Result<CacheEntry, DebugError>)> {
        let mut out: Vec<(String, Result<CacheEntry, DebugError>)> =
            futures_util::stream::iter(tags.iter().cloned().map(|tag| async move {
                let entry = self.entry(&tag).await;
                (tag, entry)
            }))
            .buffer_unordered(CONCURRENT_FETCHES)
            .collect()
            .await;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every readable entry of the repository; unreadable tags are logged and left out.
    pub async fn all_entries(&self) -> Result<Vec<CacheEntry>, DebugError> {
        let tags = self.tags().await?;
        let mut entries = Vec::new();
        for (tag, entry) in self.entries(&tags).await {
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => tracing::warn!("{}:{tag}: {e}", self.name()),
            }
        }
        Ok(entries)
    }

    async fn small_blob(&self, repo: &Reference, digest: &Digest) -> Result<Vec<u8>, DebugError> {
        let mut stream = self.client.blob_stream(repo, digest).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
            if bytes.len() > MAX_CONFIG {
                return Err(DebugError::NotAnEntry {
                    repo: self.name(),
                    tag: digest.to_string(),
                    reason: format!("its config is larger than {MAX_CONFIG} bytes"),
                });
            }
        }
        if Digest::of(&bytes) != *digest {
            return Err(DebugError::Registry(RegistryError::Invalid(format!(
                "blob {digest} of {} has other content than its digest says",
                repo.name()
            ))));
        }
        Ok(bytes)
    }

    /// Opens a layer as a synchronous stream, for [`super::layer::walk_layer`]. Call it outside
    /// the runtime (the reader blocks on `handle` for every read).
    pub fn layer_reader(
        &self,
        handle: &tokio::runtime::Handle,
        layer: &LayerRef,
    ) -> Result<Box<dyn Read + Send>, DebugError> {
        let digest: Digest = layer.digest.parse().map_err(|e| DebugError::Layer {
            entry: self.name(),
            digest: layer.digest.clone(),
            reason: format!("{e}"),
        })?;
        match &self.location {
            Location::Registry(r) => {
                let stream = handle.block_on(self.client.blob_stream(r, &digest))?;
                let reader = StreamReader::new(stream.map_err(std::io::Error::other));
                Ok(Box::new(SyncIoBridge::new_with_handle(
                    Box::pin(reader),
                    handle.clone(),
                )))
            }
            Location::Layout(dir) => {
                let path = blob_path(dir, &digest);
                let file = std::fs::File::open(&path).map_err(|e| DebugError::Layout {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Box::new(std::io::BufReader::new(file)))
            }
        }
    }
}

/// The tag in a layout ref name: `KEY` or `repo:KEY`.
fn layout_tag(ref_name: &str) -> &str {
    match ref_name.rsplit_once(':') {
        Some((_, tag)) if is_key_tag(tag) => tag,
        _ => ref_name,
    }
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

fn read_index(dir: &Path) -> Result<ImageIndex, DebugError> {
    let path = dir.join("index.json");
    let bytes = std::fs::read(&path).map_err(|e| DebugError::Layout {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| DebugError::Layout {
        path,
        reason: format!("not an OCI index: {e}"),
    })
}

fn read_layout_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, DebugError> {
    let path = blob_path(dir, digest);
    let bytes = std::fs::read(&path).map_err(|e| DebugError::Layout {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if Digest::of(&bytes) != *digest {
        return Err(DebugError::Layout {
            path,
            reason: "the blob's content does not match its digest".into(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        "ab".repeat(32)
    }

    #[test]
    fn targets_name_a_repository_and_maybe_a_key() {
        let t = parse_target("127.0.0.1:5000/app/cache").unwrap();
        assert_eq!(t.location.name(), "127.0.0.1:5000/app/cache");
        assert_eq!(t.key, None);
        let t = parse_target(&format!("reg.local/app/cache:{}", key())).unwrap();
        assert_eq!(t.key, Some(key()));
        let t = parse_target("reg.local/app/cache:abcdef12").unwrap();
        assert_eq!(t.key.as_deref(), Some("abcdef12"));
        let t = parse_target(&format!("reg.local/c@sha256:{}", key())).unwrap();
        assert_eq!(t.key, Some(key()));
        let err = parse_target("reg.local/app:latest")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a cache key"), "{err}");
    }

    #[test]
    fn oci_layouts_with_and_without_key() {
        let t = parse_target("oci:/var/cache/kb").unwrap();
        assert_eq!(t.location, Location::Layout("/var/cache/kb".into()));
        assert_eq!(t.location.name(), "oci:/var/cache/kb");
        let t = parse_target(&format!("oci:/var/cache/kb:{}", key())).unwrap();
        assert_eq!(t.key, Some(key()));
        assert!(parse_target("oci:").is_err());
        assert_eq!(layout_tag(&format!("reg/c:{}", key())), key());
        assert_eq!(layout_tag("latest"), "latest");
    }
}
