//! The registry module's error: every variant names the registry (and the image or blob) involved,
//! and says whether retrying can help.

use super::credentials::CredentialError;
use super::reference::ReferenceError;
use super::store::StoreError;

/// A failure while talking to a registry or handling the blobs it serves.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    #[error(transparent)]
    Credentials(#[from] CredentialError),

    #[error(transparent)]
    Store(#[from] StoreError),

    /// The registry could not be reached or the connection broke.
    #[error(
        "cannot reach registry {registry} ({url}): {reason}{}",
        hint_line(hint)
    )]
    Connect {
        registry: String,
        url: String,
        reason: String,
        hint: Option<String>,
    },

    /// 401: the registry did not accept the credentials (or wants some).
    #[error(
        "registry {registry} refused the credentials for {operation} (HTTP 401 Unauthorized); credentials: {credentials}\nhint: check the user name and password; kbuild looked for credentials in {looked_up}"
    )]
    Unauthorized {
        registry: String,
        operation: String,
        credentials: String,
        looked_up: String,
    },

    /// 403: authenticated, but not allowed.
    #[error(
        "registry {registry} denied {operation} (HTTP 403 Forbidden); credentials: {credentials}\nhint: the account needs {operation} rights on this repository"
    )]
    Denied {
        registry: String,
        operation: String,
        credentials: String,
    },

    /// 404 for something that must exist.
    #[error(
        "{what} not found in registry {registry} (HTTP 404){}",
        hint_line(hint)
    )]
    NotFound {
        registry: String,
        what: String,
        hint: Option<String>,
    },

    /// Any other unexpected HTTP status.
    #[error("registry {registry} answered {method} {url} with HTTP {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        registry: String,
        method: String,
        url: String,
        status: u16,
        message: String,
    },

    /// A manifest or index that kbuild cannot use.
    #[error("invalid manifest for {reference}: {reason}")]
    InvalidManifest { reference: String, reason: String },

    /// A manifest fetched by digest whose bytes hash to something else.
    #[error(
        "manifest {reference} from registry {registry} hashes to {actual}, not the digest it was asked for\nhint: the registry or a proxy served corrupt data"
    )]
    ManifestDigestMismatch {
        registry: String,
        reference: String,
        actual: String,
    },

    /// An index without a manifest for the wanted platform.
    #[error(
        "image {reference} has no manifest for platform {platform}; it offers {available}\nhint: choose one of those with --custom-platform"
    )]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    /// Every mirror and the registry itself failed.
    #[error("cannot pull {reference}: every source failed:\n{}", failures.iter().map(|f| format!("  - {f}")).collect::<Vec<_>>().join("\n"))]
    AllSourcesFailed {
        reference: String,
        failures: Vec<String>,
    },

    /// A TLS file named on the command line cannot be used.
    #[error("cannot use {what} {path} for registry {registry}: {reason}")]
    TlsFile {
        registry: String,
        what: &'static str,
        path: String,
        reason: String,
    },

    /// Something the caller asked for that cannot be done (a destination with only a digest).
    #[error("{0}")]
    Invalid(String),
}

fn hint_line(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\nhint: {h}"))
        .unwrap_or_default()
}

impl RegistryError {
    /// True when trying the same thing again later may succeed: dropped connections, 429 and
    /// 5xx answers. Authentication failures, 404 and corrupt data are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => is_retryable_status(*status),
            RegistryError::AllSourcesFailed { .. } => true,
            _ => false,
        }
    }
}

/// HTTP statuses worth retrying: throttling and server-side trouble.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}
