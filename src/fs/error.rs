//! The fs module's error: every variant names the rootfs path, layer or entry involved.

use std::io;
use std::path::PathBuf;

/// A failure of the rootfs engine.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A directory cannot serve as a rootfs.
    #[error("cannot use {path} as a rootfs: {reason}")]
    BadRoot { path: PathBuf, reason: String },

    /// An operation on a path inside a rootfs failed.
    #[error("cannot {op} /{path} in rootfs {root}: {source}")]
    Path {
        op: &'static str,
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A layer entry is malformed or would reach outside the rootfs; nothing of it was applied.
    #[error(
        "layer {layer}: entry {entry:?} refused: {reason}\nhint: the layer is malformed or hostile; \
         check where the image comes from"
    )]
    BadEntry {
        layer: String,
        entry: String,
        reason: String,
    },

    /// Applying a layer entry to the rootfs failed.
    #[error("layer {layer}: entry {entry:?}: {source}")]
    Entry {
        layer: String,
        entry: String,
        #[source]
        source: io::Error,
    },

    /// The layer stream itself is broken: decompression failed, a header is corrupt, or the
    /// archive ends in the middle of an entry.
    #[error(
        "layer {layer}: {what}: {source}\nhint: the blob is corrupt or truncated; pull it again"
    )]
    Archive {
        layer: String,
        what: String,
        #[source]
        source: io::Error,
    },

    /// Walking the rootfs for a snapshot failed.
    #[error("cannot snapshot /{path} in rootfs {root}: {source}")]
    Snapshot {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing a layer failed: reading a file from the rootfs, compressing, or the sink.
    #[error("cannot write layer{}: {source}", path.as_ref().map(|p| format!(" entry /{}", p.display())).unwrap_or_default())]
    LayerWrite {
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
}
