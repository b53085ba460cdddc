//! How kbuild reaches registries: mirrors, maps, plain HTTP, TLS trust, retries.
//!
//! [`RegistryOptions`] holds what Kaniko's registry flags say, already parsed; the command line
//! builds it (`cli`), this module never reads flags. The rules, as Kaniko's:
//! - pulls try `--registry-map` replacements for the image's registry, then for docker.io images
//!   each `--registry-mirror` in order, then the registry itself unless
//!   `--skip-default-registry-fallback`; pushes always go to the destination itself;
//! - `--insecure` (push), `--insecure-pull` (pull) and `--insecure-registry HOST` (both) allow
//!   plain HTTP: HTTPS is tried first, HTTP when it cannot connect. Loopback hosts (`localhost`,
//!   `127.x`, `::1`) get the same fallback without a flag, as in Kaniko;
//! - `--skip-tls-verify` (push), `--skip-tls-verify-pull` (pull) and
//!   `--skip-tls-verify-registry HOST` (both) accept any certificate;
//! - `--registry-certificate HOST=PEM` adds a trusted CA for that host,
//!   `--registry-client-cert HOST=CERT,KEY` presents a client certificate to it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::reference::{DOCKER_HUB, Reference, normalize_registry};

/// Which way data goes: the TLS and plain-HTTP flags differ for the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Pull,
    Push,
}

/// The registry behaviour Kaniko's flags ask for.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Mirrors for docker.io (`HOST[/PATH]`), tried in order.
    pub mirrors: Vec<String>,
    /// Replacements for a registry (`HOST[/PATH]` each), tried in order before it.
    pub registry_maps: BTreeMap<String, Vec<String>>,
    /// Fail instead of using the original registry when every mirror or map failed.
    pub skip_default_registry_fallback: bool,
    /// Plain HTTP allowed for pushes.
    pub insecure_push: bool,
    /// Plain HTTP allowed for pulls.
    pub insecure_pull: bool,
    /// Hosts where plain HTTP is allowed both ways.
    pub insecure_registries: Vec<String>,
    /// Certificates not verified for pushes.
    pub skip_tls_verify_push: bool,
    /// Certificates not verified for pulls.
    pub skip_tls_verify_pull: bool,
    /// Hosts whose certificates are not verified.
    pub skip_tls_verify_registries: Vec<String>,
    /// Extra trusted certificate (PEM) per host.
    pub registry_certificates: BTreeMap<String, PathBuf>,
    /// Client certificate and key (PEM) per host.
    pub client_certificates: BTreeMap<String, (PathBuf, PathBuf)>,
    /// Retries of a whole image download (`--image-download-retry`).
    pub download_retries: u32,
    /// Retries of a whole push (`--push-retry`).
    pub push_retries: u32,
    /// Attempts of one request on 429, 5xx or a dropped connection, before giving up on it.
    pub request_attempts: u32,
    /// First wait between retries; each further retry waits twice as long (capped at 30 s).
    pub retry_backoff: Duration,
    /// Blobs downloaded or uploaded at the same time.
    pub concurrency: usize,
    /// Connect timeout for one connection.
    pub connect_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            mirrors: Vec::new(),
            registry_maps: BTreeMap::new(),
            skip_default_registry_fallback: false,
            insecure_push: false,
            insecure_pull: false,
            insecure_registries: Vec::new(),
            skip_tls_verify_push: false,
            skip_tls_verify_pull: false,
            skip_tls_verify_registries: Vec::new(),
            registry_certificates: BTreeMap::new(),
            client_certificates: BTreeMap::new(),
            download_retries: 0,
            push_retries: 0,
            request_attempts: 3,
            retry_backoff: Duration::from_millis(500),
            concurrency: 4,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// The TLS and protocol settings for one host and direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlsSettings {
    pub allow_http: bool,
    pub verify: bool,
    pub ca_certificate: Option<PathBuf>,
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// Where to fetch an image from: one candidate of the mirror/map list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The image as this endpoint names it.
    pub reference: Reference,
    /// True for a mirror or map entry, false for the image's own registry.
    pub is_mirror: bool,
}

fn host_matches(list: &[String], host: &str) -> bool {
    let host = normalize_registry(host);
    list.iter()
        .any(|h| normalize_registry(h.trim_end_matches('/')) == host)
}

fn lookup<'a, T>(map: &'a BTreeMap<String, T>, host: &str) -> Option<&'a T> {
    let host = normalize_registry(host);
    map.iter()
        .find(|(k, _)| normalize_registry(k) == host)
        .map(|(_, v)| v)
}

/// True for hosts on the loopback interface, where Kaniko allows plain HTTP without a flag.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

impl RegistryOptions {
    /// The protocol and TLS settings for `host` in `direction`.
    pub fn tls_for(&self, host: &str, direction: Direction) -> TlsSettings {
        let (insecure, skip_verify) = match direction {
            Direction::Pull => (self.insecure_pull, self.skip_tls_verify_pull),
            Direction::Push => (self.insecure_push, self.skip_tls_verify_push),
        };
        TlsSettings {
            allow_http: insecure
                || host_matches(&self.insecure_registries, host)
                || is_loopback(host),
            verify: !(skip_verify || host_matches(&self.skip_tls_verify_registries, host)),
            ca_certificate: lookup(&self.registry_certificates, host).cloned(),
            client_certificate: lookup(&self.client_certificates, host).cloned(),
        }
    }

    /// The places to pull `reference` from, in the order to try them.
    pub fn pull_endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        let registry = reference.registry();
        let mut replacements: Vec<&String> = lookup(&self.registry_maps, registry)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        if registry == DOCKER_HUB {
            replacements.extend(self.mirrors.iter());
        }
        for replacement in replacements {
            let replacement = replacement
                .trim()
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            if replacement.is_empty() {
                continue;
            }
            let (host, prefix) = match replacement.split_once('/') {
                Some((host, prefix)) => (host, Some(prefix)),
                None => (replacement, None),
            };
            let repository = match prefix {
                Some(prefix) => format!("{prefix}/{}", reference.repository()),
                None => reference.repository().to_string(),
            };
            endpoints.push(Endpoint {
                reference: reference.relocated(&normalize_registry(host), &repository),
                is_mirror: true,
            });
        }
        if endpoints.is_empty() || !self.skip_default_registry_fallback {
            endpoints.push(Endpoint {
                reference: reference.clone(),
                is_mirror: false,
            });
        }
        endpoints
    }

    /// The wait before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.retry_backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints.iter().map(|e| e.reference.to_string()).collect()
    }

    #[test]
    fn mirrors_come_first_for_docker_hub_only() {
        let opts = RegistryOptions {
            mirrors: vec!["mirror.local:5000".into(), "https://m2.local/hub/".into()],
            ..Default::default()
        };
        let hub: Reference = "alpine:3".parse().unwrap();
        assert_eq!(
            names(&opts.pull_endpoints(&hub)),
            [
                "mirror.local:5000/library/alpine:3",
                "m2.local/hub/library/alpine:3",
                "docker.io/library/alpine:3"
            ]
        );
        let other: Reference = "ghcr.io/a/b:1".parse().unwrap();
        assert_eq!(names(&opts.pull_endpoints(&other)), ["ghcr.io/a/b:1"]);
        let strict = RegistryOptions {
            skip_default_registry_fallback: true,
            ..opts
        };
        assert_eq!(strict.pull_endpoints(&hub).len(), 2);
    }

    #[test]
    fn registry_maps_replace_any_registry() {
        let mut maps = BTreeMap::new();
        maps.insert("index.docker.io".to_string(), vec!["m.local".to_string()]);
        maps.insert(
            "gcr.io".to_string(),
            vec!["a.local/gcr".to_string(), "b.local".to_string()],
        );
        let opts = RegistryOptions {
            registry_maps: maps,
            mirrors: vec!["mirror.local".into()],
            ..Default::default()
        };
        let hub: Reference = "busybox".parse().unwrap();
        assert_eq!(
            names(&opts.pull_endpoints(&hub)),
            [
                "m.local/library/busybox:latest",
                "mirror.local/library/busybox:latest",
                "docker.io/library/busybox:latest"
            ]
        );
        let gcr: Reference = "gcr.io/p/img:1".parse().unwrap();
        assert_eq!(
            names(&opts.pull_endpoints(&gcr)),
            ["a.local/gcr/p/img:1", "b.local/p/img:1", "gcr.io/p/img:1"]
        );
    }

    #[test]
    fn tls_flags_apply_per_direction_and_host() {
        let opts = RegistryOptions {
            insecure_push: true,
            skip_tls_verify_pull: true,
            insecure_registries: vec!["plain.local:5000".into()],
            skip_tls_verify_registries: vec!["self.local".into()],
            ..Default::default()
        };
        assert!(opts.tls_for("x.io", Direction::Push).allow_http);
        assert!(!opts.tls_for("x.io", Direction::Pull).allow_http);
        assert!(opts.tls_for("plain.local:5000", Direction::Pull).allow_http);
        assert!(!opts.tls_for("x.io", Direction::Pull).verify);
        assert!(opts.tls_for("x.io", Direction::Push).verify);
        assert!(!opts.tls_for("self.local", Direction::Push).verify);
        assert!(opts.tls_for("127.0.0.1:5000", Direction::Pull).allow_http);
        assert!(opts.tls_for("[::1]:5000", Direction::Pull).allow_http);
        assert!(!opts.tls_for("reg.example.com", Direction::Pull).allow_http);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let opts = RegistryOptions::default();
        assert_eq!(opts.backoff(1), Duration::from_millis(500));
        assert_eq!(opts.backoff(3), Duration::from_secs(2));
        assert_eq!(opts.backoff(40), Duration::from_secs(30));
    }
}
