//! Assembling an image in the blob store: a base (or scratch), layers, config, manifest.
//!
//! Layers arrive either as uncompressed tar streams, which are gzipped into the store here while
//! both digests are computed in one pass (diffID before compression, blob digest after), or as
//! blobs the caller already wrote (the fs engine streams its own layers into the store). The
//! manifest and config are written as canonical JSON. An image that adds nothing to its base is
//! the base: its pulled manifest and config bytes are reused as they are, never re-serialised.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::digest::{Digest, HashingWriter};
use crate::platform::Platform;
use crate::registry::manifest::{
    Descriptor, ImageManifest, LayerCompression, MediaFamily, canonical_json,
};
use crate::registry::{BlobStore, ImageToPush, PulledImage, Reference};

use super::ImageError;
use super::config::{History, ImageConfig};

/// A layer blob already in the store, with its uncompressed digest.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub compression: LayerCompression,
}

/// Builds one image.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    store: BlobStore,
    family: MediaFamily,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    mount_sources: Vec<Reference>,
    base: Option<(Vec<u8>, String)>,
    modified: bool,
}

/// A finished image: manifest and every blob it names are in the store.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The manifest bytes (canonical JSON, or the base's bytes when nothing was added).
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// The image digest: the manifest's.
    pub digest: Digest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Repositories known to hold base layers, for cross-repository mounts.
    pub mount_sources: Vec<Reference>,
}

impl BuiltImage {
    /// What [`crate::registry::push_image`] needs.
    pub fn to_push(&self) -> ImageToPush {
        ImageToPush {
            manifest: self.manifest.clone(),
            media_type: self.media_type.clone(),
            blobs: std::iter::once(self.config.digest)
                .chain(self.layers.iter().map(|l| l.digest))
                .collect(),
            mount_sources: self.mount_sources.clone(),
        }
    }
}

impl ImageBuilder {
    /// An empty image (`FROM scratch`) for `platform`, with Docker media types as Kaniko writes.
    pub fn scratch(store: &BlobStore, platform: &Platform) -> ImageBuilder {
        ImageBuilder {
            store: store.clone(),
            family: MediaFamily::Docker,
            config: ImageConfig::for_platform(platform),
            layers: Vec::new(),
            mount_sources: Vec::new(),
            base: None,
            modified: true,
        }
    }

    /// An image on top of a pulled base: its layers, config and media type family.
    pub fn from_base(store: &BlobStore, base: &PulledImage) -> Result<ImageBuilder, ImageError> {
        let config = ImageConfig::from_json(&base.config).map_err(|e| ImageError::Config {
            image: base.reference.to_string(),
            reason: e.to_string(),
        })?;
        Ok(ImageBuilder {
            store: store.clone(),
            family: base.family(),
            config,
            layers: base.parsed.layers.clone(),
            mount_sources: vec![base.source.clone()],
            base: Some((
                base.manifest.bytes.clone(),
                base.manifest.media_type.clone(),
            )),
            modified: false,
        })
    }

    /// Docker or OCI media types for the manifest, config and new layers.
    pub fn family(&self) -> MediaFamily {
        self.family
    }

    /// Switches media types (zstd layers need OCI).
    pub fn set_family(&mut self, family: MediaFamily) {
        self.modified |= family != self.family;
        self.family = family;
    }

    /// The config, to change (ENV, CMD, labels, ...).
    pub fn config_mut(&mut self) -> &mut ImageConfig {
        self.modified = true;
        &mut self.config
    }

    /// The config as it stands.
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// Gzips an uncompressed layer tar into the store and adds it with a history entry.
    pub fn add_layer_tar(
        &mut self,
        tar: impl Read,
        created_by: &str,
    ) -> Result<Descriptor, ImageError> {
        let blob = gzip_into_store(&self.store, tar)?;
        Ok(self.add_layer(blob, history(created_by, false)))
    }

    /// As [`ImageBuilder::add_layer_tar`], reading the tar from a file.
    pub fn add_layer_tar_file(
        &mut self,
        path: &Path,
        created_by: &str,
    ) -> Result<Descriptor, ImageError> {
        let file = std::fs::File::open(path).map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_layer_tar(io::BufReader::new(file), created_by)
    }

    /// Adds a layer blob that is already in the store.
    pub fn add_layer(&mut self, blob: LayerBlob, history: History) -> Descriptor {
        if blob.compression == LayerCompression::Zstd {
            self.family = MediaFamily::Oci;
        }
        let descriptor =
            Descriptor::new(self.family.layer(blob.compression), blob.digest, blob.size);
        self.layers.push(descriptor.clone());
        self.config.rootfs.diff_ids.push(blob.diff_id);
        self.config.history.push(history);
        self.modified = true;
        descriptor
    }

    /// Adds a history entry for an instruction that made no layer.
    pub fn add_empty_history(&mut self, created_by: &str) {
        self.config.history.push(history(created_by, true));
        self.modified = true;
    }

    /// Writes config and manifest to the store.
    pub fn build(self) -> Result<BuiltImage, ImageError> {
        if !self.modified
            && let Some((bytes, media_type)) = &self.base
        {
            let parsed: ImageManifest =
                serde_json::from_slice(bytes).map_err(|e| ImageError::Config {
                    image: "base image manifest".into(),
                    reason: e.to_string(),
                })?;
            return Ok(BuiltImage {
                manifest: bytes.clone(),
                media_type: media_type.clone(),
                digest: Digest::of(bytes),
                config: parsed.config,
                layers: parsed.layers,
                mount_sources: self.mount_sources,
            });
        }
        let config_bytes = self.config.to_json().map_err(|e| ImageError::Config {
            image: "new image".into(),
            reason: e.to_string(),
        })?;
        let config_digest = self.store.put_bytes(&config_bytes)?;
        let config = Descriptor::new(
            self.family.config(),
            config_digest,
            config_bytes.len() as u64,
        );
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(self.family.manifest().to_string()),
            config: config.clone(),
            layers: self.layers.clone(),
            annotations: Default::default(),
            extra: Default::default(),
        };
        let manifest_bytes = canonical_json(&manifest).map_err(|e| ImageError::Config {
            image: "new image".into(),
            reason: e.to_string(),
        })?;
        let digest = self.store.put_bytes(&manifest_bytes)?;
        Ok(BuiltImage {
            manifest: manifest_bytes,
            media_type: self.family.manifest().to_string(),
            digest,
            config,
            layers: self.layers,
            mount_sources: self.mount_sources,
        })
    }
}

fn history(created_by: &str, empty_layer: bool) -> History {
    History {
        created_by: Some(created_by.to_string()),
        empty_layer: empty_layer.then_some(true),
        ..History::default()
    }
}

/// Gzips `tar` into the store in one streaming pass; returns the blob with both digests.
pub fn gzip_into_store(store: &BlobStore, mut tar: impl Read) -> Result<LayerBlob, ImageError> {
    let writer = store.writer()?;
    let encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
    let mut diff = HashingWriter::new(encoder);
    let io_err = |source| ImageError::Io {
        path: store.root().join("tmp"),
        source,
    };
    io::copy(&mut tar, &mut diff).map_err(io_err)?;
    let (encoder, diff_id, _) = diff.finish();
    let mut writer = encoder.finish().map_err(io_err)?;
    writer.flush().map_err(io_err)?;
    let (digest, size) = writer.commit()?;
    Ok(LayerBlob {
        digest,
        size,
        diff_id,
        compression: LayerCompression::Gzip,
    })
}
