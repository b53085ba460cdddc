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

/// Any failure of a kbuild command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something kbuild does not do yet.
    #[error("{what} is not supported yet\nhint: {hint}")]
    NotSupported { what: String, hint: String },

    /// The command line is inconsistent in a way clap cannot express.
    #[error("{0}")]
    Usage(String),

    /// The rootfs engine failed: extraction, a snapshot or a layer.
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),

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
            Error::NotSupported { .. } | Error::Usage(_) => EXIT_USAGE,
            Error::Io { .. } | Error::Fs(_) => EXIT_FAILURE,
        })
    }
}
