//! Sending a finished image everywhere the command line asks, in an order that keeps results
//! honest: every destination first, then the local outputs, then the results files, so a
//! failure anywhere leaves no digest behind for Tekton Chains to sign.

use std::path::PathBuf;

use crate::registry::{
    BlobStore, PushedDestination, Reference, RegistryClient, RegistryError, push_image,
};
use crate::tekton::{ResultFiles, ResultsError, write_results};

use super::ImageError;
use super::builder::BuiltImage;
use super::output::{write_docker_tar, write_oci_layout};

/// Where a final image goes (Kaniko's output flags, parsed).
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// `--destination`s, in the order given.
    pub destinations: Vec<Reference>,
    /// False for `--no-push`.
    pub push: bool,
    /// `--tar-path`.
    pub tar_path: Option<PathBuf>,
    /// `--oci-layout-path`.
    pub oci_layout_path: Option<PathBuf>,
    /// Digest files and Tekton results.
    pub results: ResultFiles,
}

/// A failure while publishing; nothing was written to the results files.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Output(#[from] ImageError),
    #[error(transparent)]
    Results(#[from] ResultsError),
}

/// Pushes `image` to every destination (unless `push` is off), writes the local outputs, then
/// the results. Returns what each destination received. Only for the final image: cache pushes
/// go through [`push_image`] directly and never produce results.
pub async fn publish(
    client: &RegistryClient,
    store: &BlobStore,
    image: &BuiltImage,
    publish: &Publish,
) -> Result<Vec<PushedDestination>, PublishError> {
    let pushed = if publish.push && !publish.destinations.is_empty() {
        push_image(client, &image.to_push(), &publish.destinations, store).await?
    } else {
        Vec::new()
    };
    if let Some(path) = &publish.tar_path {
        let tags: Vec<String> = publish
            .destinations
            .iter()
            .filter(|d| d.tag().is_some())
            .map(|d| d.name_with_tag())
            .collect();
        write_docker_tar(image, store, path, &tags)?;
        tracing::info!("wrote image tarball {}", path.display());
    }
    if let Some(dir) = &publish.oci_layout_path {
        let ref_name = publish.destinations.first().and_then(|d| d.tag());
        write_oci_layout(image, store, dir, ref_name)?;
        tracing::info!("wrote OCI layout {}", dir.display());
    }
    // Without a push no destination holds the image, so results name none of them.
    let named: &[Reference] = if publish.push {
        &publish.destinations
    } else {
        &[]
    };
    write_results(&publish.results, named, &image.digest)?;
    Ok(pushed)
}
