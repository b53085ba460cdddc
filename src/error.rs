//! The one error type every command returns, and the exit code each kind of failure maps to.
//!
//! Modules keep their own typed errors (with the line, stage, path or registry a user needs); this
//! enum only aggregates them so `main` can print one message and pick an exit code. The exit codes
//! are part of kbuild's interface and documented in the README.

use std::process::ExitCode;

/// Exit code for a failure that has no more specific code.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for an invalid command line, including flags whose behaviour is not supported yet.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a Dockerfile that cannot be parsed or planned.
pub const EXIT_DOCKERFILE: u8 = 3;

/// Any failure of a kbuild command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something kbuild does not do yet.
    #[error("{what} is not supported yet\nhint: {hint}")]
    NotSupported { what: String, hint: String },

    /// The command line is inconsistent in a way clap cannot express.
    #[error("{0}")]
    Usage(String),

    /// A Tekton debug breakpoint could not be released.
    #[error(transparent)]
    Debug(#[from] crate::tekton::DebugError),
    /// The Dockerfile cannot be parsed.
    #[error(transparent)]
    Dockerfile(#[from] crate::dockerfile::ParseError),

    /// The Dockerfile parses but cannot be planned (unknown stage, cycle, unset required ARG).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),

    /// Talking to a registry or using the blob store failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),

    /// Pushing the final image, writing its local outputs or its results failed.
    #[error(transparent)]
    Publish(#[from] crate::image::PublishError),

    /// A build failed; the report was written to `report`.
    #[error("{source}{}", crate::cli::build::failure_notes(report, breakpoint.as_deref()))]
    Build {
        source: Box<crate::build::BuildError>,
        report: std::path::PathBuf,
        /// Inside a Tekton step with a debug breakpoint: the commands to run next.
        breakpoint: Option<Box<crate::tekton::DebugHint>>,
    },

    /// The rootfs engine failed: extraction, a snapshot or a layer.
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),

    /// `kbuild cache inspect`, `cache diff` or `explain` failed (or `--find` found nothing).
    #[error(transparent)]
    CacheDebug(#[from] crate::debug::DebugError),

    /// An I/O failure outside any module's own error (reading a file named on the command line).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Build { source, .. } => match source.as_ref() {
                crate::build::BuildError::RunFailed { exit_code, .. } => {
                    (*exit_code).clamp(1, 255) as u8
                }
                crate::build::BuildError::Dockerfile(_) | crate::build::BuildError::Plan(_) => {
                    EXIT_DOCKERFILE
                }
                crate::build::BuildError::NotSupported { .. } => EXIT_USAGE,
                _ => EXIT_FAILURE,
            },
            Error::NotSupported { .. } | Error::Usage(_) => EXIT_USAGE,
            Error::CacheDebug(e) => e.exit_code(),
            Error::Io { .. }
            | Error::Fs(_)
            | Error::Debug(_)
            | Error::Registry(_)
            | Error::Publish(_) => EXIT_FAILURE,
            Error::Dockerfile(_) | Error::Plan(_) => EXIT_DOCKERFILE,
        })
    }
}
