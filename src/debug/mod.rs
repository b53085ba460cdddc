//! The cache debugger: `kbuild cache inspect`, `kbuild cache diff` and `kbuild explain`, for
//! kbuild's layer cache and for Kaniko's (CONTEXT.md sections 2 and 3).
//!
//! - [`repo`] reads a cache repository (a registry repository or an `oci:/path` layout): its
//!   tags, and each tag's [`entry::CacheEntry`] (kind, instruction, preimage, layer, age);
//! - [`layer`] lists what a cache layer holds by streaming the blob through a decompressor and a
//!   tar header reader, never holding it whole, and answers whether a path is inside;
//! - [`report`] reads build reports tolerantly, so reports written before and after the cache
//!   fields arrived both parse;
//! - [`diff`] compares two reports, two entries, or a report and a cache repository, preimage
//!   part by preimage part, and marks the first divergence that caused the rest;
//! - [`explain`] turns a report (and, where useful, the registry) into findings: typed rules
//!   with stable IDs, evidence and a fix, each documented in `docs/explain/<ID>.md`;
//! - [`kaniko_log`] parses Kaniko's log lines and [`kaniko`] diagnoses the mount-point cache
//!   poisoning of CONTEXT.md section 2 from a log, or statically from a Dockerfile;
//! - [`render`] prints all of it as tables and diffs readable at 100 columns.
//!
//! The data types here serialise as the documented JSON of `--format json`
//! (`docs/debug-json.md`); the text renderings are for people and may change.
//!
//! Left out on purpose: deleting or rewriting cache entries (the fix names the exact entries and
//! the registry tool to delete them with; kbuild never deletes from a registry on its own), and
//! Kaniko's local `--cache-dir` warm cache, which holds base images, not layer cache entries.

pub mod diff;
pub mod entry;
pub mod explain;
pub mod inspect;
pub mod kaniko;
pub mod kaniko_log;
pub mod layer;
pub mod preimage;
pub mod render;
pub mod repo;
pub mod report;
pub mod time;

#[cfg(test)]
pub(crate) mod testing;

use std::path::PathBuf;

use crate::registry::RegistryError;

/// The version of every JSON document `cache inspect`, `cache diff` and `explain` print.
pub const JSON_VERSION: u32 = 1;

/// Exit code of `cache inspect --find` when nothing in the layer matches.
pub const EXIT_NOT_FOUND: u8 = 4;

/// A failure of a cache debugging command.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error(transparent)]
    Registry(#[from] RegistryError),

    /// A build report that cannot be read or parsed.
    #[error(
        "cannot read build report {path}: {reason}\nhint: pass the report a build wrote with --report=FILE (kbuild build writes one for every build)"
    )]
    Report { path: PathBuf, reason: String },

    /// An argument that is neither a report file nor a cache repository or entry.
    #[error("{0}")]
    Usage(String),

    /// A tag of a cache repository whose image is not a cache entry.
    #[error("{repo}:{tag} is not a cache entry: {reason}")]
    NotAnEntry {
        repo: String,
        tag: String,
        reason: String,
    },

    /// No entry with that key (or key prefix).
    #[error(
        "no cache entry {key} in {repo}\nhint: `kbuild cache inspect {repo}` lists the entries"
    )]
    NoEntry { repo: String, key: String },

    /// A key prefix that names more than one entry.
    #[error(
        "key prefix {prefix} matches {count} entries of {repo}\nhint: give more characters of the key"
    )]
    AmbiguousKey {
        repo: String,
        prefix: String,
        count: usize,
    },

    /// A layer blob that cannot be read or is not a tar archive.
    #[error("cannot read layer {digest} of {entry}: {reason}")]
    Layer {
        entry: String,
        digest: String,
        reason: String,
    },

    /// `--find`: nothing in the layer matches (exit code [`EXIT_NOT_FOUND`]).
    #[error(
        "{pattern} is not in layer {digest} of {entry}\nhint: `kbuild cache inspect {entry} --files` lists what the layer holds"
    )]
    NotInLayer {
        pattern: String,
        entry: String,
        digest: String,
    },

    /// An OCI image layout that cannot be read.
    #[error("cannot read OCI layout {path}: {reason}")]
    Layout { path: PathBuf, reason: String },

    /// A file named on the command line (a Kaniko log, a Dockerfile) that cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `--find` pattern that is not a valid glob.
    #[error("invalid --find pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },

    #[error(transparent)]
    Dockerfile(#[from] crate::dockerfile::ParseError),

    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
}

impl DebugError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            DebugError::NotInLayer { .. } => EXIT_NOT_FOUND,
            DebugError::Usage(_) | DebugError::Pattern { .. } => crate::error::EXIT_USAGE,
            DebugError::Dockerfile(_) | DebugError::Plan(_) => crate::error::EXIT_DOCKERFILE,
            _ => crate::error::EXIT_FAILURE,
        }
    }
}
