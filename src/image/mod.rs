//! Images: kbuild's image config, building an image's config and manifest in the blob store,
//! and the local outputs (`--oci-layout-path`, `--tar-path`).
//!
//! [`ImageBuilder`] is the seam between the executor and the registry: start from a pulled base
//! or scratch, add layers (tar streams gzipped here, or blobs the fs engine already wrote), edit
//! the config, [`ImageBuilder::build`], then push ([`BuiltImage::to_push`]) and write outputs.
//! Left out: multi-platform indexes of kbuild's own (one platform per build, as Kaniko) and zstd
//! compression of tar streams (a zstd layer written by the fs engine can still be added).

pub mod builder;
pub mod config;
pub mod output;
pub mod publish;

use std::path::PathBuf;

pub use builder::{BuiltImage, ImageBuilder, LayerBlob, gzip_into_store};
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig};
pub use output::{write_docker_tar, write_oci_layout};
pub use publish::{Publish, PublishError, publish};

use crate::registry::StoreError;

/// A failure while assembling or saving an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid image config of {image}: {reason}")]
    Config { image: String, reason: String },

    #[error("cannot write image output {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
}
