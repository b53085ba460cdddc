//! Local outputs: `--oci-layout-path` (an OCI image layout directory) and `--tar-path` (a
//! tarball `docker load` and `skopeo ... docker-archive:` read).
//!
//! Both copy blobs from the store as streams, so a big layer never sits in memory. The layout
//! keeps images other builds put there (entries with another ref name stay in `index.json`).
//! OCI layout readers (containers/image, so skopeo, podman, buildah) ignore `index.json` entries
//! that are not OCI manifests, so an image with Docker media types is stored in the layout with
//! the OCI types instead: same config and layer bytes, a new manifest and so a different digest
//! from the one pushed to registries (logged, and returned by [`write_oci_layout`]);
//! the tarball is written to a temp file beside its path and renamed, so a failed build never
//! leaves half a tarball where the user expects one.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::digest::Digest;
use crate::registry::BlobStore;
use crate::registry::manifest::{
    DOCKER_LAYER_GZIP, Descriptor, ImageIndex, ImageManifest, MediaFamily, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST, canonical_json,
};

use super::ImageError;
use super::builder::BuiltImage;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The same image with OCI media types: Docker's types replaced in a new manifest.
fn as_oci(image: &BuiltImage, store: &BlobStore) -> Result<(Vec<u8>, Digest), ImageError> {
    let mut manifest: ImageManifest =
        serde_json::from_slice(&image.manifest).map_err(|e| ImageError::Config {
            image: image.digest.to_string(),
            reason: e.to_string(),
        })?;
    manifest.media_type = Some(OCI_MANIFEST.into());
    manifest.config.media_type = OCI_CONFIG.into();
    for layer in &mut manifest.layers {
        layer.media_type = match layer.media_type.as_str() {
            DOCKER_LAYER_GZIP => OCI_LAYER_GZIP.into(),
            "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER_TAR.into(),
            other => other.to_string(),
        };
    }
    let bytes = canonical_json(&manifest).map_err(|e| ImageError::Config {
        image: image.digest.to_string(),
        reason: e.to_string(),
    })?;
    let digest = store.put_bytes(&bytes)?;
    Ok((bytes, digest))
}

/// Writes `image` into the OCI image layout at `dir` (created when missing), named `ref_name`
/// (usually the destination's tag) in `index.json` when given. Returns the manifest digest in
/// the layout (the image digest, unless Docker media types had to become OCI ones).
pub fn write_oci_layout(
    image: &BuiltImage,
    store: &BlobStore,
    dir: &Path,
    ref_name: Option<&str>,
) -> Result<Digest, ImageError> {
    let (manifest, manifest_digest) = if MediaFamily::of(&image.media_type) == MediaFamily::Docker {
        let (bytes, digest) = as_oci(image, store)?;
        tracing::info!(
            "the OCI layout holds {} with OCI media types as {digest}",
            image.digest
        );
        (bytes, digest)
    } else {
        (image.manifest.clone(), image.digest)
    };
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let digests = std::iter::once(manifest_digest)
        .chain(std::iter::once(image.config.digest))
        .chain(image.layers.iter().map(|l| l.digest));
    for digest in digests {
        let target = blobs.join(digest.hex());
        if target.is_file() {
            continue;
        }
        let source = store.path(&digest);
        // A hard link costs nothing on the same filesystem; copy otherwise.
        if fs::hard_link(&source, &target).is_err() {
            let tmp = blobs.join(format!(".{}.tmp", digest.hex()));
            let mut from = store.open_blob(&digest)?;
            let mut to = File::create(&tmp).map_err(io_err(&tmp))?;
            io::copy(&mut from, &mut to).map_err(io_err(&tmp))?;
            fs::rename(&tmp, &target).map_err(io_err(&target))?;
        }
    }
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => {
            serde_json::from_slice::<ImageIndex>(&bytes).map_err(|e| ImageError::Layout {
                path: index_path.clone(),
                reason: format!("existing index.json is not an OCI index: {e}"),
            })?
        }
        Err(_) => ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: Default::default(),
            extra: Default::default(),
        },
    };
    index.manifests.retain(|d| {
        d.digest != manifest_digest && d.annotations.get(REF_NAME).map(String::as_str) != ref_name
    });
    let mut entry = Descriptor::new(OCI_MANIFEST, manifest_digest, manifest.len() as u64);
    if let Some(name) = ref_name {
        entry.annotations.insert(REF_NAME.into(), name.to_string());
    }
    index.manifests.push(entry);
    let bytes = canonical_json(&index).map_err(|e| ImageError::Layout {
        path: index_path.clone(),
        reason: e.to_string(),
    })?;
    write_file(&index_path, &bytes)?;
    Ok(manifest_digest)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[derive(serde::Serialize)]
struct TarManifestEntry<'a> {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: &'a [String],
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Writes `image` as a `docker save`-style tarball at `path`: `manifest.json`, the config as
/// `<hex>.json` and each layer, still compressed, as `<hex>.tar.gz` (`docker load` and skopeo
/// decompress them). `repo_tags` are the names `docker load` gives the image.
pub fn write_docker_tar(
    image: &BuiltImage,
    store: &BlobStore,
    path: &Path,
    repo_tags: &[String],
) -> Result<(), ImageError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp = tempfile::NamedTempFile::new_in(&parent).map_err(io_err(&parent))?;
    {
        let mut tar = tar::Builder::new(BufWriter::new(tmp.as_file()));
        tar.mode(tar::HeaderMode::Deterministic);
        let config_name = format!("{}.json", image.config.digest.hex());
        append_blob(
            &mut tar,
            store,
            &image.config.digest,
            image.config.size,
            &config_name,
            path,
        )?;
        let mut layers = Vec::new();
        for layer in &image.layers {
            let name = format!("{}.tar.gz", layer.digest.hex());
            if !layers.contains(&name) {
                append_blob(&mut tar, store, &layer.digest, layer.size, &name, path)?;
            }
            layers.push(name);
        }
        let manifest = serde_json::to_vec(&[TarManifestEntry {
            config: config_name,
            repo_tags,
            layers,
        }])
        .map_err(|e| ImageError::Layout {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        append(
            &mut tar,
            "manifest.json",
            manifest.len() as u64,
            &manifest[..],
            path,
        )?;
        let writer = tar.into_inner().map_err(io_err(path))?;
        writer
            .into_inner()
            .map_err(|e| io_err(path)(e.into_error()))?
            .flush()
            .map_err(io_err(path))?;
    }
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    store: &BlobStore,
    digest: &crate::digest::Digest,
    size: u64,
    name: &str,
    out: &Path,
) -> Result<(), ImageError> {
    let file = store.open_blob(digest)?;
    append(tar, name, size, file, out)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl io::Read,
    out: &Path,
) -> Result<(), ImageError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .map_err(io_err(out))
}
