//! Pushing an image from the blob store to one or more destinations.
//!
//! Destinations are pushed one after the other, so a later destination in the same registry can
//! mount blobs from an earlier one instead of uploading them again; within a destination the
//! blobs go in parallel and the manifest last, so a tag never points at missing blobs. A failed
//! destination is retried whole (`--push-retry`); blobs that arrived before the failure are then
//! found by HEAD and skipped.
//!
//! Two pushes of the same blobs into one repository at the same time (two pipelines building one
//! image) can make the registry refuse the manifest with `MANIFEST_BLOB_UNKNOWN`: distribution
//! rewrites a blob's link in place when it is mounted or uploaded again, and a manifest checked
//! meanwhile finds it missing or half-written. Such a refusal sends the blobs (HEAD, then upload
//! what is really missing) and the manifest again, twice at most, whatever `--push-retry` says.

use futures_util::{StreamExt, TryStreamExt, stream};

use super::client::{BlobPush, RegistryClient};
use super::error::RegistryError;
use super::reference::Reference;
use super::store::BlobStore;
use crate::digest::Digest;

/// What a push needs: the manifest bytes and every blob it references, all in the store.
#[derive(Debug, Clone)]
pub struct ImageToPush {
    /// The manifest exactly as it will be stored (its digest is the image digest).
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// Config and layer digests.
    pub blobs: Vec<Digest>,
    /// Repositories known to hold some of the blobs (the base image's source), for mounts.
    pub mount_sources: Vec<Reference>,
}

impl ImageToPush {
    /// The image digest.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

/// One destination that received the image.
#[derive(Debug, Clone)]
pub struct PushedDestination {
    pub reference: Reference,
    pub digest: Digest,
    pub uploaded: usize,
    pub mounted: usize,
    pub existed: usize,
}

/// Checks before a build that every destination repository accepts a push (Kaniko's
/// preflight, skipped with `--skip-push-permission-check`): one upload session opened and
/// cancelled per repository.
pub async fn check_push_permissions(
    client: &RegistryClient,
    destinations: &[Reference],
) -> Result<(), RegistryError> {
    let mut seen = std::collections::BTreeSet::new();
    for destination in destinations {
        if seen.insert(destination.name()) {
            client.check_push_permission(destination).await?;
        }
    }
    Ok(())
}

/// Pushes `image` to every destination in order; stops at the first destination that fails
/// after its retries.
pub async fn push_image(
    client: &RegistryClient,
    image: &ImageToPush,
    destinations: &[Reference],
    store: &BlobStore,
) -> Result<Vec<PushedDestination>, RegistryError> {
    let mut pushed: Vec<PushedDestination> = Vec::new();
    for destination in destinations {
        // Earlier destinations hold every blob; the base image's source only the base layers.
        let mut sources: Vec<Reference> = pushed.iter().map(|p| p.reference.clone()).collect();
        sources.extend(image.mount_sources.iter().cloned());
        let retries = client.options().push_retries;
        let mut attempt = 0;
        let done = loop {
            match push_one(client, image, destination, &sources, store).await {
                Err(e) if attempt < retries => {
                    attempt += 1;
                    let wait = client.options().backoff(attempt);
                    tracing::warn!(
                        "push to {destination} failed: {e}; retrying in {:.1}s ({attempt}/{retries})",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                other => break other?,
            }
        };
        pushed.push(done);
    }
    Ok(pushed)
}

async fn push_one(
    client: &RegistryClient,
    image: &ImageToPush,
    destination: &Reference,
    mount_sources: &[Reference],
    store: &BlobStore,
) -> Result<PushedDestination, RegistryError> {
    tracing::info!("pushing {destination}");
    let mut outcomes = push_blobs(client, image, destination, mount_sources, store).await?;
    let mut again = 0;
    let digest = loop {
        match client
            .put_manifest(destination, &image.manifest, &image.media_type)
            .await
        {
            Err(RegistryError::Status {
                status: 400,
                message,
                ..
            }) if again < 2 && message.contains("MANIFEST_BLOB_UNKNOWN") => {
                again += 1;
                tracing::warn!(
                    "{destination}: the registry did not find a blob it had just accepted \
                     (another push of the same blobs at the same time?); sending the blobs and \
                     the manifest again ({again}/2)"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200 * again)).await;
                // The first round's transfers stand; this round adds what it had to send again.
                let resent = push_blobs(client, image, destination, mount_sources, store).await?;
                outcomes.extend(resent.into_iter().filter(|o| *o != BlobPush::Existed));
            }
            other => break other?,
        }
    };
    let count = |kind| outcomes.iter().filter(|o| **o == kind).count();
    let result = PushedDestination {
        reference: destination.clone(),
        digest,
        uploaded: count(BlobPush::Uploaded),
        mounted: count(BlobPush::Mounted),
        existed: count(BlobPush::Existed),
    };
    tracing::info!(
        "pushed {destination}@{digest} ({} uploaded, {} mounted, {} already there)",
        result.uploaded,
        result.mounted,
        result.existed
    );
    Ok(result)
}

/// Every blob of `image` into `destination`, in parallel: found by HEAD, mounted, or uploaded.
async fn push_blobs(
    client: &RegistryClient,
    image: &ImageToPush,
    destination: &Reference,
    mount_sources: &[Reference],
    store: &BlobStore,
) -> Result<Vec<BlobPush>, RegistryError> {
    // Owned digests: a closure over borrowed ones is not general enough for a push spawned
    // as a task (the layer cache pushes in the background).
    stream::iter(image.blobs.iter().copied().map(|digest| async move {
        client
            .push_blob(destination, &digest, store, mount_sources)
            .await
    }))
    .buffer_unordered(client.options().concurrency.max(1))
    .try_collect()
    .await
}
