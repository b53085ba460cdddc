//! Registry credentials from a Docker `config.json`, as Docker, Kaniko and Tekton lay them out.
//!
//! The config file is the first of these that exists (the order Kaniko's users rely on):
//! 1. `$DOCKER_CONFIG/config.json` (or `$DOCKER_CONFIG` itself when it names a file),
//! 2. `$HOME/.docker/config.json`,
//! 3. `/kaniko/.docker/config.json` (the catalog Tasks' `dockerconfig` workspace),
//! 4. `/tekton/creds/.docker/config.json` (Tekton's merged ServiceAccount secrets).
//!
//! For a registry host the lookup is: `credHelpers[host]` (run `docker-credential-<name> get`),
//! then an `auths` entry with `auth` (base64 `user:password`), `username`/`password` or
//! `identitytoken`, then `credsStore`, then anonymous. `auths` keys may be URLs
//! (`https://index.docker.io/v1/`) or carry paths; only the host counts, and Docker Hub's
//! spellings are one host. Secrets never reach a log line: [`Credential`]'s `Debug` redacts them
//! and logs only say which source was used.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::reference::{DOCKER_HUB, normalize_registry};

/// What to present to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credentials.
    Anonymous,
    /// A user name and password (or token used as a password).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token, exchanged at the registry's token service for access tokens.
    IdentityToken { username: String, token: String },
    /// A registry token sent as is (`registrytoken` in config.json).
    Bearer(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Anonymous => write!(f, "Anonymous"),
            Credential::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Credential::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username:?}, <redacted>)")
            }
            Credential::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// Credentials for one registry and a description of where they came from (no secret in it).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub credential: Credential,
    pub source: String,
}

/// A failure to read credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "cannot read docker config {path}: {reason}\nhint: fix or remove the file; kbuild reads the first of {searched}"
    )]
    Config {
        path: PathBuf,
        reason: String,
        searched: String,
    },
    #[error(
        "credential helper docker-credential-{helper} failed for {registry}: {reason}\nhint: check that docker-credential-{helper} is on PATH and works: echo {registry} | docker-credential-{helper} get"
    )]
    Helper {
        helper: String,
        registry: String,
        reason: String,
    },
}

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// The credentials kbuild may use, loaded once per command.
#[derive(Debug, Default)]
pub struct Keychain {
    path: Option<PathBuf>,
    config: ConfigFile,
    searched: Vec<PathBuf>,
    helper_dirs: Vec<PathBuf>,
}

impl Keychain {
    /// The candidate config files, in lookup order, for the given environment.
    pub fn candidates(docker_config: Option<&Path>, home: Option<&Path>) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        if let Some(dir) = docker_config.filter(|d| !d.as_os_str().is_empty()) {
            if dir.is_file() {
                paths.push(dir.to_path_buf());
            } else {
                paths.push(dir.join("config.json"));
            }
        }
        if let Some(home) = home.filter(|h| !h.as_os_str().is_empty()) {
            paths.push(home.join(".docker").join("config.json"));
        }
        paths.push(PathBuf::from("/kaniko/.docker/config.json"));
        paths.push(PathBuf::from("/tekton/creds/.docker/config.json"));
        paths
    }

    /// Loads the first config file that exists, looking where the process environment says.
    pub fn from_env() -> Result<Keychain, CredentialError> {
        let docker_config = std::env::var_os("DOCKER_CONFIG").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Keychain::load(&Keychain::candidates(
            docker_config.as_deref(),
            home.as_deref(),
        ))
    }

    /// Loads the first of `candidates` that exists; none existing means anonymous access.
    pub fn load(candidates: &[PathBuf]) -> Result<Keychain, CredentialError> {
        let searched = candidates.to_vec();
        for path in candidates {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(CredentialError::Config {
                        path: path.clone(),
                        reason: e.to_string(),
                        searched: list(&searched),
                    });
                }
            };
            let config: ConfigFile =
                serde_json::from_slice(&bytes).map_err(|e| CredentialError::Config {
                    path: path.clone(),
                    reason: format!("not valid JSON: {e}"),
                    searched: list(&searched),
                })?;
            tracing::debug!("registry credentials from {}", path.display());
            return Ok(Keychain {
                path: Some(path.clone()),
                config,
                searched,
                helper_dirs: Vec::new(),
            });
        }
        Ok(Keychain {
            path: None,
            config: ConfigFile::default(),
            searched,
            helper_dirs: Vec::new(),
        })
    }

    /// Looks for `docker-credential-*` helpers in `dir` before `PATH` (a Task can ship helpers
    /// in a workspace without changing the step's environment).
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Keychain {
        self.helper_dirs.push(dir.into());
        self
    }

    /// A keychain that knows no credentials.
    pub fn anonymous() -> Keychain {
        Keychain::default()
    }

    /// Where credentials were looked up, for error messages.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(path) if self.searched.len() > 1 => format!(
                "docker config {} (the first that exists of {})",
                path.display(),
                list(&self.searched)
            ),
            Some(path) => format!("docker config {}", path.display()),
            None if self.searched.is_empty() => "no docker config (anonymous)".into(),
            None => format!(
                "no docker config found (looked at {})",
                list(&self.searched)
            ),
        }
    }

    /// The credentials for a registry host (`docker.io`, `reg.local:5000`).
    pub fn resolve(&self, registry: &str) -> Result<Resolved, CredentialError> {
        let host = normalize_registry(registry);
        let file = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if let Some(helper) = find_by_host(&self.config.cred_helpers, &host) {
            let credential = run_helper(&self.helper_dirs, helper, &host)?;
            return Ok(Resolved {
                credential,
                source: format!(
                    "credential helper docker-credential-{helper} (credHelpers in {file})"
                ),
            });
        }
        if let Some((key, entry)) = self
            .config
            .auths
            .iter()
            .find(|(k, _)| auth_key_host(k) == host)
            && let Some(credential) =
                entry_credential(entry).map_err(|reason| CredentialError::Config {
                    path: self.path.clone().unwrap_or_default(),
                    reason: format!("auths entry {key:?}: {reason}"),
                    searched: list(&self.searched),
                })?
        {
            return Ok(Resolved {
                credential,
                source: format!("auths entry {key:?} in {file}"),
            });
        }
        if let Some(store) = &self.config.creds_store {
            let credential = run_helper(&self.helper_dirs, store, &host)?;
            return Ok(Resolved {
                credential,
                source: format!(
                    "credential store docker-credential-{store} (credsStore in {file})"
                ),
            });
        }
        Ok(Resolved {
            credential: Credential::Anonymous,
            source: format!(
                "anonymous: no credentials for {host} in {}",
                self.describe()
            ),
        })
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The registry host an `auths` or `credHelpers` key names.
fn auth_key_host(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or_default();
    normalize_registry(host)
}

fn find_by_host<'a>(map: &'a BTreeMap<String, String>, host: &str) -> Option<&'a str> {
    map.iter()
        .find(|(k, _)| auth_key_host(k) == host)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn entry_credential(entry: &AuthEntry) -> Result<Option<Credential>, String> {
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let (mut username, mut password) = (nonempty(&entry.username), nonempty(&entry.password));
    if let Some(auth) = nonempty(&entry.auth) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "\"auth\" is not base64".to_string())?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8".to_string())?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| "\"auth\" does not decode to user:password".to_string())?;
        username = Some(user.to_string());
        password = Some(pass.to_string());
    }
    if let Some(token) = nonempty(&entry.identitytoken) {
        return Ok(Some(Credential::IdentityToken {
            username: username.unwrap_or_default(),
            token,
        }));
    }
    if let Some(token) = nonempty(&entry.registrytoken) {
        return Ok(Some(Credential::Bearer(token)));
    }
    Ok(match (username, password) {
        (Some(username), Some(password)) => Some(Credential::Basic { username, password }),
        _ => None,
    })
}

/// The server URL a credential helper is asked about: Docker asks about Docker Hub by its
/// historical URL, and stores created by `docker login` are keyed by it.
fn helper_server_url(host: &str) -> String {
    if host == DOCKER_HUB {
        "https://index.docker.io/v1/".into()
    } else {
        host.to_string()
    }
}

#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn run_helper(dirs: &[PathBuf], helper: &str, host: &str) -> Result<Credential, CredentialError> {
    let program = format!("docker-credential-{helper}");
    let executable = dirs
        .iter()
        .map(|d| d.join(&program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(&program));
    let fail = |reason: String| CredentialError::Helper {
        helper: helper.to_string(),
        registry: host.to_string(),
        reason,
    };
    let mut child = Command::new(&executable)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(helper_server_url(host).as_bytes())
            .map_err(|e| fail(format!("cannot write to {program}: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("{program} did not finish: {e}")))?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The helper protocol's way of saying "nothing stored for this server".
        if stdout.contains("credentials not found") {
            return Ok(Credential::Anonymous);
        }
        return Err(fail(format!("it exited with {}", output.status)));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| fail("its answer is not the JSON the helper protocol specifies".into()))?;
    if answer.username == "<token>" {
        return Ok(Credential::IdentityToken {
            username: String::new(),
            token: answer.secret,
        });
    }
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(Credential::Anonymous);
    }
    Ok(Credential::Basic {
        username: answer.username,
        password: answer.secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keychain(json: &str) -> (tempfile::TempDir, Keychain) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let chain = Keychain::load(&[dir.path().join("missing.json"), path]).unwrap();
        (dir, chain)
    }

    #[test]
    fn lookup_order_puts_docker_config_first() {
        let c = Keychain::candidates(Some(Path::new("/dc")), Some(Path::new("/home/u")));
        let c: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            c,
            [
                "/dc/config.json",
                "/home/u/.docker/config.json",
                "/kaniko/.docker/config.json",
                "/tekton/creds/.docker/config.json"
            ]
        );
    }

    #[test]
    fn auths_entries_give_basic_credentials() {
        let (_d, chain) = keychain(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "reg.local:5000": {"username": "u", "password": "p"},
                "tok.local": {"identitytoken": "refresh"},
                "empty.local": {}
            }}"#,
        );
        let hub = chain.resolve("docker.io").unwrap();
        assert_eq!(
            hub.credential,
            Credential::Basic {
                username: "hub".into(),
                password: "secret".into()
            }
        );
        assert!(hub.source.contains("https://index.docker.io/v1/"));
        assert!(!format!("{hub:?}").contains("secret"));
        assert!(matches!(
            chain.resolve("reg.local:5000").unwrap().credential,
            Credential::Basic { .. }
        ));
        assert!(matches!(
            chain.resolve("tok.local").unwrap().credential,
            Credential::IdentityToken { .. }
        ));
        let none = chain.resolve("empty.local").unwrap();
        assert_eq!(none.credential, Credential::Anonymous);
        assert!(none.source.contains("anonymous"), "{}", none.source);
    }

    #[test]
    fn a_broken_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Keychain::load(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        let (_d, chain) = keychain(r#"{"auths": {"r.local": {"auth": "!!"}}}"#);
        let err = chain.resolve("r.local").unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
    }

    #[test]
    fn nothing_found_is_anonymous_and_says_where_it_looked() {
        let chain = Keychain::load(&[PathBuf::from("/nonexistent/config.json")]).unwrap();
        let r = chain.resolve("reg.local").unwrap();
        assert_eq!(r.credential, Credential::Anonymous);
        assert!(
            r.source.contains("/nonexistent/config.json"),
            "{}",
            r.source
        );
    }
}
