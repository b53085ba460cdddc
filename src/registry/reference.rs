//! Image references (`[registry/]repository[:tag][@digest]`) with Docker's normalisation.
//!
//! `alpine` means `docker.io/library/alpine:latest`; `index.docker.io` and `registry-1.docker.io`
//! are spellings of `docker.io`; the first path component is a registry when it contains `.` or
//! `:` or is `localhost` (so `localhost:5000/app`, `127.0.0.1:5000/app` and `[::1]:5000/app` are
//! registries, `team/app` is a Docker Hub repository). The text the user gave is kept beside the
//! normalised form because Tekton's `IMAGE_URL` must echo the destination as given.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry Docker Hub images live on, in its canonical spelling.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that answers Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "index.docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
    given: String,
}

/// A reference that cannot be understood, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}{}", hint.map(|h| format!("\nhint: {h}")).unwrap_or_default())]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
    pub hint: Option<&'static str>,
}

impl Reference {
    /// The registry host (with port), `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, `library/alpine` for `alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when one was given (or implied: `latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The text this reference was parsed from.
    pub fn given(&self) -> &str {
        &self.given
    }

    /// The host that serves the registry API (`index.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag` with the tag (or `latest`), no digest.
    pub fn name_with_tag(&self) -> String {
        format!(
            "{}:{}",
            self.name(),
            self.tag.as_deref().unwrap_or("latest")
        )
    }

    /// What a manifest request names: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The same repository with a digest instead of tag and digest.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
            given: format!("{}@{digest}", self.name()),
        }
    }

    /// The same image in another repository of another (or the same) registry: used for mirrors
    /// and `--registry-map`, which keep tag and digest.
    pub fn relocated(&self, registry: &str, repository: &str) -> Reference {
        Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: self.tag.clone(),
            digest: self.digest,
            given: self.given.clone(),
        }
    }

    /// The reference as given, without any `@digest` part (Tekton's `IMAGE_URL`).
    pub fn given_without_digest(&self) -> &str {
        match self.given.split_once('@') {
            Some((name, _)) => name,
            None => &self.given,
        }
    }

    /// The name part as given, without tag or digest (the base of Tekton's `IMAGE_REF`).
    pub fn given_name(&self) -> &str {
        let name = self.given_without_digest();
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        match name[last_slash..].rfind(':') {
            Some(colon) => &name[..last_slash + colon],
            None => name,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Reference, ReferenceError> {
        parse(input)
    }
}

/// True when the first path component of a reference names a registry rather than a Docker Hub
/// namespace, by Docker's rule.
pub fn is_registry_component(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Canonical spelling of a registry host: the Docker Hub aliases become `docker.io`.
pub fn normalize_registry(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.into(),
        _ => host,
    }
}

fn parse(input: &str) -> Result<Reference, ReferenceError> {
    let err = |reason: String, hint: Option<&'static str>| ReferenceError {
        input: input.to_string(),
        reason,
        hint,
    };
    if input.is_empty() {
        return Err(err("it is empty".into(), None));
    }
    if input.trim() != input || input.contains(char::is_whitespace) {
        return Err(err("it contains whitespace".into(), None));
    }
    if input.contains("://") {
        return Err(err(
            "it has a URL scheme".into(),
            Some(
                "write the reference without http:// or https://, like registry.local:5000/app:tag",
            ),
        ));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => {
            let digest = digest
                .parse::<Digest>()
                .map_err(|e| err(format!("bad digest: {}", e.reason), None))?;
            (rest, Some(digest))
        }
        None => (input, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(colon) => {
            let tag = &rest[last_slash + colon + 1..];
            validate_tag(tag).map_err(|reason| err(reason, None))?;
            (&rest[..last_slash + colon], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(err("the repository name is missing".into(), None));
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, path)) if is_registry_component(first) => {
            validate_registry(first).map_err(|reason| err(reason, None))?;
            (normalize_registry(first), path.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    validate_repository(&path).map_err(|(reason, hint)| err(reason, hint))?;
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (tag, _) => tag,
    };
    Ok(Reference {
        registry,
        repository: path,
        tag,
        digest,
        given: input.to_string(),
    })
}

fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    if tag.len() > 128 {
        return Err(format!(
            "the tag is {} characters long; at most 128 are allowed",
            tag.len()
        ));
    }
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok {
        return Err(format!(
            "the tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if let Some(bad) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "the tag {tag:?} contains {bad:?}; tags use letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

fn validate_registry(host: &str) -> Result<(), String> {
    let (hostname, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) => (ip, port.strip_prefix(':')),
            None => return Err(format!("the registry {host:?} has an unclosed '['")),
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if hostname.is_empty() {
        return Err(format!("the registry {host:?} has no host name"));
    }
    if let Some(port) = port
        && (port.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!(
            "the registry port {port:?} is not a number from 0 to 65535"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
    if let Some(bad) = hostname.chars().find(|c| !allowed(*c)) {
        return Err(format!("the registry host {hostname:?} contains {bad:?}"));
    }
    Ok(())
}

fn validate_repository(path: &str) -> Result<(), (String, Option<&'static str>)> {
    if path.len() > 255 {
        return Err((
            format!(
                "the repository name is {} characters long; at most 255 are allowed",
                path.len()
            ),
            None,
        ));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err((
                "the repository has an empty path component (a doubled or trailing '/')".into(),
                None,
            ));
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err((
                format!("the repository component {component:?} has upper-case letters"),
                Some("repository names are lower case; tags may use upper case"),
            ));
        }
        if let Some(bad) = component.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err((
                format!("the repository component {component:?} contains {bad:?}"),
                None,
            ));
        }
        let starts_ok = component.starts_with(|c: char| c.is_ascii_alphanumeric());
        let ends_ok = component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !starts_ok || !ends_ok {
            return Err((
                format!(
                    "the repository component {component:?} must start and end with a letter or digit"
                ),
                None,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn references_normalise_like_docker() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("team/app", "docker.io/team/app:latest"),
            (
                "index.docker.io/library/alpine",
                "docker.io/library/alpine:latest",
            ),
            ("registry-1.docker.io/team/app:v1", "docker.io/team/app:v1"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:dev", "localhost:5000/app:dev"),
            ("127.0.0.1:5000/a/b/c:1", "127.0.0.1:5000/a/b/c:1"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            (
                "Registry.Example.com/app",
                "registry.example.com/app:latest",
            ),
            ("ghcr.io/org/app:v1.2_3-rc", "ghcr.io/org/app:v1.2_3-rc"),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<Reference>().unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn digests_and_tags_are_kept() {
        let r: Reference = format!("reg.local:5000/app@{D}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), D);
        let r: Reference = format!("reg.local:5000/app:v1@{D}").parse().unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.to_string(), format!("reg.local:5000/app:v1@{D}"));
        assert_eq!(r.given_without_digest(), "reg.local:5000/app:v1");
        assert_eq!(r.given_name(), "reg.local:5000/app");
        assert_eq!(r.api_host(), "reg.local:5000");
        let hub: Reference = "alpine".parse().unwrap();
        assert_eq!(hub.api_host(), "index.docker.io");
        assert_eq!(hub.given_name(), "alpine");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("", "it is empty"),
            ("https://reg/app", "it has a URL scheme"),
            ("App", "has upper-case letters"),
            ("reg.local/app:", "the tag after ':' is empty"),
            ("reg.local/app:-x", "must start with a letter"),
            ("reg.local//app", "empty path component"),
            ("reg.local:99999/app", "is not a number"),
            ("reg.local/app@sha256:abc", "bad digest"),
            ("reg.local/a$b", "contains '$'"),
            ("app tag", "whitespace"),
        ];
        for (input, want) in cases {
            let err = input.parse::<Reference>().unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        let upper = "App".parse::<Reference>().unwrap_err().to_string();
        assert!(
            upper.contains("hint: repository names are lower case"),
            "{upper}"
        );
    }
}
