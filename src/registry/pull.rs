//! Pulling an image into the blob store: mirrors and maps in order, index to platform manifest,
//! config and layers downloaded concurrently with their digests verified as they stream.

use futures_util::{StreamExt, TryStreamExt, stream};

use super::client::{FetchedManifest, RegistryClient};
use super::error::RegistryError;
use super::manifest::{
    Descriptor, ImageIndex, ImageManifest, MediaFamily, is_index, select_platform,
};
use super::options::{Direction, Endpoint};
use super::reference::Reference;
use super::store::BlobStore;
use crate::digest::Digest;
use crate::platform::Platform;

/// An image whose manifest, config and layers are in the blob store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as asked for.
    pub reference: Reference,
    /// Where it actually came from (a mirror, a mapped registry or the registry itself); blobs
    /// can be mounted from this repository when pushing to the same registry.
    pub source: Reference,
    /// The index digest when the reference named an index.
    pub index_digest: Option<Digest>,
    /// The platform manifest, as served (its raw bytes are what a push or an output reuses).
    pub manifest: FetchedManifest,
    /// The same manifest, parsed.
    pub parsed: ImageManifest,
    /// The config blob's raw bytes.
    pub config: Vec<u8>,
    /// The platform that was asked for.
    pub platform: Platform,
    /// Layers that were downloaded; the others were in the blob store already (a persistent
    /// `--cache-dir`, or an earlier pull of the same build).
    pub layers_downloaded: usize,
    /// Bytes of those layers.
    pub bytes_downloaded: u64,
}

impl PulledImage {
    /// The platform manifest's digest: what a cache key is seeded with.
    pub fn digest(&self) -> Digest {
        self.manifest.digest
    }

    /// Docker or OCI media types, as the base image uses.
    pub fn family(&self) -> MediaFamily {
        MediaFamily::of(&self.manifest.media_type)
    }

    /// The layers, base first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.parsed.layers
    }
}

/// Pulls `reference` for `platform` into `store`, trying mirrors and maps first as the options
/// say, retrying each source `download_retries` times.
pub async fn pull_image(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
    store: &BlobStore,
) -> Result<PulledImage, RegistryError> {
    let endpoints = client.options().pull_endpoints(reference);
    let mut failures = Vec::new();
    let single = endpoints.len() == 1;
    for endpoint in &endpoints {
        let retries = client.options().download_retries;
        let mut attempt = 0;
        let result = loop {
            match pull_from(client, reference, endpoint, platform, store).await {
                Err(e) if attempt < retries => {
                    attempt += 1;
                    let wait = client.options().backoff(attempt);
                    tracing::warn!(
                        "pull of {} failed: {e}; retrying in {:.1}s ({attempt}/{retries})",
                        endpoint.reference,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        };
        match result {
            Ok(image) => return Ok(image),
            Err(e) if single => return Err(e),
            Err(e) => {
                if endpoint.is_mirror {
                    tracing::warn!("mirror {} failed: {e}", endpoint.reference.registry());
                }
                failures.push(format!("{}: {e}", endpoint.reference.registry()));
            }
        }
    }
    Err(RegistryError::AllSourcesFailed {
        reference: reference.to_string(),
        failures,
    })
}

async fn pull_from(
    client: &RegistryClient,
    asked: &Reference,
    endpoint: &Endpoint,
    platform: &Platform,
    store: &BlobStore,
) -> Result<PulledImage, RegistryError> {
    let source = &endpoint.reference;
    tracing::info!("pulling {asked} from {}", source.registry());
    let first = client.get_manifest(source, Direction::Pull).await?;
    let (manifest, index_digest) = if is_index(&first.media_type) {
        let index: ImageIndex =
            serde_json::from_slice(&first.bytes).map_err(|e| invalid(source, e))?;
        let chosen =
            select_platform(&index, platform).ok_or_else(|| RegistryError::NoPlatform {
                reference: asked.to_string(),
                platform: platform.to_string(),
                available: available(&index),
            })?;
        store.put_bytes(&first.bytes)?;
        let by_digest = source.with_digest(chosen.digest);
        let manifest = client.get_manifest(&by_digest, Direction::Pull).await?;
        if is_index(&manifest.media_type) {
            return Err(RegistryError::InvalidManifest {
                reference: by_digest.to_string(),
                reason: "an index entry for a platform is itself an index".into(),
            });
        }
        (manifest, Some(first.digest))
    } else {
        (first, None)
    };
    let parsed: ImageManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| invalid(source, e))?;
    if parsed.schema_version != 2 {
        return Err(RegistryError::InvalidManifest {
            reference: source.to_string(),
            reason: format!(
                "schema version {} (only version 2 is supported)",
                parsed.schema_version
            ),
        });
    }
    store.put_bytes(&manifest.bytes)?;
    let blobs: Vec<&Descriptor> = std::iter::once(&parsed.config)
        .chain(parsed.layers.iter())
        .collect();
    let total: u64 = parsed.layers.iter().map(|l| l.size).sum();
    let missing = blobs.iter().filter(|d| !store.contains(&d.digest)).count();
    let to_download: Vec<&Descriptor> = parsed
        .layers
        .iter()
        .filter(|d| !store.contains(&d.digest))
        .collect();
    let layers_downloaded = to_download.len();
    let bytes_downloaded = to_download.iter().map(|d| d.size).sum();
    tracing::info!(
        "{asked}: {} layers, {}, {missing} blobs to download",
        parsed.layers.len(),
        human_size(total)
    );
    let repository = source.clone();
    stream::iter(blobs.into_iter().map(|d| {
        let repository = repository.clone();
        async move {
            client
                .fetch_blob(&repository, &d.digest, Some(d.size), store)
                .await?;
            tracing::debug!("have blob {} ({})", d.digest, human_size(d.size));
            Ok::<(), RegistryError>(())
        }
    }))
    .buffer_unordered(client.options().concurrency.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    let config = store.read(&parsed.config.digest)?;
    if index_digest.is_none() {
        warn_on_platform_mismatch(asked, &config, platform);
    }
    tracing::info!("pulled {asked} ({})", manifest.digest);
    Ok(PulledImage {
        reference: asked.clone(),
        source: source.clone(),
        index_digest,
        manifest,
        parsed,
        config,
        platform: platform.clone(),
        layers_downloaded,
        bytes_downloaded,
    })
}

fn invalid(reference: &Reference, e: serde_json::Error) -> RegistryError {
    RegistryError::InvalidManifest {
        reference: reference.to_string(),
        reason: e.to_string(),
    }
}

fn available(index: &ImageIndex) -> String {
    let list: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.platform().to_string()))
        .filter(|p| p != "unknown/unknown")
        .collect();
    if list.is_empty() {
        "no platforms".into()
    } else {
        list.join(", ")
    }
}

fn warn_on_platform_mismatch(reference: &Reference, config: &[u8], want: &Platform) {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    if let Ok(head) = serde_json::from_slice::<Head>(config)
        && !head.os.is_empty()
    {
        let have = Platform::new(&head.os, &head.architecture, head.variant.as_deref());
        if !want.matches(&have) {
            tracing::warn!(
                "{reference} is a single-platform image for {have}, not {want}; using it anyway"
            );
        }
    }
}

/// Sizes for log lines: `12.3 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
