//! HTTP to registries: one reqwest client per host and TLS setting, the `/v2/` ping that picks
//! HTTPS or HTTP and learns the auth challenge, Basic and Bearer authentication with tokens
//! cached per scope set, and retries of single requests on 429, 5xx and broken connections.
//!
//! Requests are built by a closure so a retry sends a fresh request (a streaming body cannot be
//! replayed, so uploads retry at the blob level instead, see `client`). Authorization headers
//! are attached here and nowhere else, and never logged; reqwest drops them on redirects to
//! another host (blob downloads redirected to object storage).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode};

use super::credentials::{Credential, Keychain, Resolved};
use super::error::{RegistryError, is_retryable_status};
use super::options::{Direction, RegistryOptions, TlsSettings};

const USER_AGENT: &str = concat!("kbuild/", env!("CARGO_PKG_VERSION"));

/// How a registry wants to be authenticated, from its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// What kbuild knows about one registry host for one direction.
pub struct Host {
    pub name: String,
    pub base_url: String,
    client: Client,
    challenge: Mutex<Challenge>,
    credential: Resolved,
}

/// Shared connection state for every registry a command talks to.
pub struct Transport {
    pub options: RegistryOptions,
    keychain: Keychain,
    hosts: tokio::sync::Mutex<HashMap<(String, Direction), Arc<Host>>>,
    clients: Mutex<HashMap<TlsSettings, Client>>,
    tokens: Mutex<HashMap<(String, String), String>>,
}

/// A repository scope in a registry token request.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope for pushing to a repository (push needs pull too, for HEAD and mounts).
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

impl Transport {
    pub fn new(options: RegistryOptions, keychain: Keychain) -> Transport {
        Transport {
            options,
            keychain,
            hosts: tokio::sync::Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The state for `host` (pinging it the first time): scheme, challenge, credentials.
    pub async fn host(&self, name: &str, direction: Direction) -> Result<Arc<Host>, RegistryError> {
        let mut hosts = self.hosts.lock().await;
        if let Some(host) = hosts.get(&(name.to_string(), direction)) {
            return Ok(host.clone());
        }
        let settings = self.options.tls_for(name, direction);
        let client = self.client(name, &settings)?;
        let credential = self.keychain.resolve(name)?;
        tracing::debug!("registry {name}: credentials from {}", credential.source);
        let (base_url, challenge) = self.ping(name, &client, settings.allow_http).await?;
        let host = Arc::new(Host {
            name: name.to_string(),
            base_url,
            client,
            challenge: Mutex::new(challenge),
            credential,
        });
        hosts.insert((name.to_string(), direction), host.clone());
        Ok(host)
    }

    fn client(&self, host: &str, settings: &TlsSettings) -> Result<Client, RegistryError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(settings) {
            return Ok(client.clone());
        }
        // reqwest is built without a default crypto provider; the first client installs ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls_err =
            |what: &'static str, path: &std::path::Path, reason: String| RegistryError::TlsFile {
                registry: host.to_string(),
                what,
                path: path.display().to_string(),
                reason,
            };
        let mut builder = Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(self.options.connect_timeout)
            .read_timeout(Duration::from_secs(300))
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .proxy(reqwest::Proxy::custom(proxy_from_env));
        if !settings.verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &settings.ca_certificate {
            let pem =
                std::fs::read(path).map_err(|e| tls_err("certificate", path, e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| tls_err("certificate", path, error_chain(&e)))?;
            if certs.is_empty() {
                return Err(tls_err(
                    "certificate",
                    path,
                    "no PEM certificate in it".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if let Some((cert, key)) = &settings.client_certificate {
            let mut pem = std::fs::read(cert)
                .map_err(|e| tls_err("client certificate", cert, e.to_string()))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|e| tls_err("client key", key, e.to_string()))?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| tls_err("client certificate", cert, error_chain(&e)))?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| RegistryError::Connect {
            registry: host.to_string(),
            url: String::new(),
            reason: error_chain(&e),
            hint: None,
        })?;
        clients.insert(settings.clone(), client.clone());
        Ok(client)
    }

    async fn ping(
        &self,
        host: &str,
        client: &Client,
        allow_http: bool,
    ) -> Result<(String, Challenge), RegistryError> {
        let https = format!("https://{host}");
        // Where plain HTTP is allowed, a failed TLS attempt is not retried: the registry may
        // simply speak HTTP, and the fallback below answers at once.
        let attempts = if allow_http {
            1
        } else {
            self.options.request_attempts.max(1)
        };
        let first = self.ping_once(host, client, &https, attempts).await;
        let https_error = match first {
            Ok(challenge) => return Ok((https, challenge)),
            Err(e) => e,
        };
        if allow_http && matches!(https_error, RegistryError::Connect { .. }) {
            let http = format!("http://{host}");
            let attempts = self.options.request_attempts.max(1);
            match self.ping_once(host, client, &http, attempts).await {
                Ok(challenge) => {
                    tracing::debug!("registry {host}: using plain HTTP");
                    return Ok((http, challenge));
                }
                Err(e) => tracing::debug!("registry {host}: plain HTTP failed too: {e}"),
            }
        }
        Err(https_error)
    }

    async fn ping_once(
        &self,
        host: &str,
        client: &Client,
        base: &str,
        attempts: u32,
    ) -> Result<Challenge, RegistryError> {
        let url = format!("{base}/v2/");
        let response = self
            .send_attempts(host, attempts, || Ok(client.get(&url)))
            .await?;
        match response.status() {
            StatusCode::OK => Ok(Challenge::None),
            StatusCode::UNAUTHORIZED => Ok(parse_challenge(response.headers())),
            status => Err(RegistryError::Connect {
                registry: host.to_string(),
                url,
                reason: format!(
                    "GET /v2/ answered HTTP {} instead of 200 or 401",
                    status.as_u16()
                ),
                hint: Some("is this a container registry, and the right port and protocol?".into()),
            }),
        }
    }

    /// Sends the request `make` builds, authenticated for `scopes`, retrying transient failures.
    /// Any HTTP status comes back as `Ok`; callers decide what they expected.
    pub async fn send(
        &self,
        host: &Host,
        scopes: &[String],
        make: impl Fn(&Client) -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        self.send_with(host, scopes, self.options.request_attempts.max(1), make)
            .await
    }

    /// As [`Transport::send`], with an explicit number of attempts (1 for streaming bodies).
    pub async fn send_with(
        &self,
        host: &Host,
        scopes: &[String],
        attempts: u32,
        make: impl Fn(&Client) -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut refreshed = false;
        loop {
            let auth = self.authorization(host, scopes).await?;
            let response = self
                .send_attempts(&host.name, attempts, || {
                    let request = make(&host.client)?;
                    Ok(match &auth {
                        Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
                        None => request,
                    })
                })
                .await?;
            if response.status() == StatusCode::UNAUTHORIZED && !refreshed {
                // A token may have expired, or the registry wants auth only for this repository.
                let challenge = parse_challenge(response.headers());
                let changed = {
                    let mut current = host.challenge.lock().unwrap_or_else(|e| e.into_inner());
                    let changed = challenge != Challenge::None && *current != challenge;
                    if changed {
                        *current = challenge;
                    }
                    changed
                };
                let had_token = self.forget_token(&host.name, scopes);
                if changed || had_token {
                    refreshed = true;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    async fn send_attempts(
        &self,
        registry: &str,
        attempts: u32,
        make: impl Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        loop {
            let (client, request) = make()?.build_split();
            let request = request.map_err(|e| connect_error(registry, "", &e))?;
            let (method, url) = (request.method().clone(), request.url().to_string());
            let result = client.execute(request).await;
            let retry_after = match &result {
                Ok(response) if is_retryable_status(response.status().as_u16()) => {
                    Some(retry_after(response.headers()))
                }
                Ok(_) => None,
                Err(_) => Some(None),
            };
            match (result, retry_after) {
                (Ok(response), None) => return Ok(response),
                (result, Some(wait)) if attempt < attempts => {
                    let wait = wait.unwrap_or_else(|| self.options.backoff(attempt));
                    let what = match &result {
                        Ok(r) => format!("HTTP {}", r.status().as_u16()),
                        Err(e) => error_chain(e),
                    };
                    tracing::warn!(
                        "{method} {} failed ({what}); retrying in {:.1}s (attempt {}/{attempts})",
                        redact_url(&url),
                        wait.as_secs_f64(),
                        attempt + 1
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                (Ok(response), Some(_)) => return Ok(response),
                (Err(e), _) => {
                    return Err(connect_error(registry, &redact_url(&url), &e));
                }
            }
        }
    }

    /// The `Authorization` header value for `scopes` on `host`, fetching a token when needed.
    async fn authorization(
        &self,
        host: &Host,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let challenge = host
            .challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(match &host.credential.credential {
                Credential::Basic { username, password } => Some(basic(username, password)),
                Credential::IdentityToken { username, token } => Some(basic(username, token)),
                Credential::Bearer(token) => Some(format!("Bearer {token}")),
                Credential::Anonymous => None,
            }),
            Challenge::Bearer { realm, service } => {
                if let Credential::Bearer(token) = &host.credential.credential {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let key = (host.name.clone(), scopes.join(" "));
                if let Some(token) = self
                    .tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let token = self
                    .fetch_token(host, &realm, service.as_deref(), scopes)
                    .await?;
                self.tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn forget_token(&self, host: &str, scopes: &[String]) -> bool {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(host.to_string(), scopes.join(" ")))
            .is_some()
    }

    async fn fetch_token(
        &self,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        let response = match &host.credential.credential {
            Credential::IdentityToken { token, .. } => {
                // OAuth2 refresh-token grant, as Docker does with identity tokens.
                let scope = scopes.join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("client_id", "kbuild"),
                    ("refresh_token", token.as_str()),
                    ("scope", scope.as_str()),
                ];
                form.extend(query.iter().copied());
                self.send_attempts(&host.name, self.options.request_attempts, || {
                    Ok(host.client.post(realm).form(&form))
                })
                .await?
            }
            credential => {
                for scope in scopes {
                    query.push(("scope", scope));
                }
                self.send_attempts(&host.name, self.options.request_attempts, || {
                    let request = host.client.get(realm).query(&query);
                    Ok(match credential {
                        Credential::Basic { username, password } => {
                            request.basic_auth(username, Some(password))
                        }
                        _ => request,
                    })
                })
                .await?
            }
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: host.name.clone(),
                operation: format!("a token for {}", scopes.join(" ")),
                credentials: host.credential.source.clone(),
                looked_up: self.keychain.describe(),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                registry: host.name.clone(),
                method: "GET".into(),
                url: realm.to_string(),
                status: status.as_u16(),
                message: "the token service refused".into(),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| connect_error(&host.name, realm, &e))?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| RegistryError::Status {
                registry: host.name.clone(),
                method: "GET".into(),
                url: realm.to_string(),
                status: status.as_u16(),
                message: "the token service's answer is not JSON with a token".into(),
            })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Status {
                registry: host.name.clone(),
                method: "GET".into(),
                url: realm.to_string(),
                status: status.as_u16(),
                message: "the token service's answer has no token".into(),
            })
    }

    /// Turns an unexpected response into an error naming the registry and operation.
    pub async fn unexpected(
        &self,
        host: &Host,
        operation: &str,
        what: &str,
        response: Response,
    ) -> RegistryError {
        let status = response.status();
        let method = operation.to_string();
        let url = redact_url(response.url().as_str());
        match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                registry: host.name.clone(),
                operation: format!("{operation} {what}"),
                credentials: host.credential.source.clone(),
                looked_up: self.keychain.describe(),
            },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                registry: host.name.clone(),
                operation: format!("{operation} {what}"),
                credentials: host.credential.source.clone(),
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                registry: host.name.clone(),
                what: what.to_string(),
                hint: None,
            },
            _ => {
                let body = response.text().await.unwrap_or_default();
                RegistryError::Status {
                    registry: host.name.clone(),
                    method,
                    url,
                    status: status.as_u16(),
                    message: registry_message(&body),
                }
            }
        }
    }
}

/// Honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (either case) except for loopback hosts, so a
/// proxy configured for the step never intercepts an in-pod registry on 127.0.0.1.
fn proxy_from_env(url: &reqwest::Url) -> Option<reqwest::Url> {
    let host = url.host_str()?;
    if super::options::is_loopback(host) {
        return None;
    }
    let var = |name: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(name.to_ascii_lowercase()))
            .ok()
            .filter(|v| !v.is_empty())
    };
    if let Some(no_proxy) = var("NO_PROXY") {
        let excluded = no_proxy.split(',').map(str::trim).any(|entry| {
            entry == "*"
                || (!entry.is_empty()
                    && (host == entry.trim_start_matches('.')
                        || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))))
        });
        if excluded {
            return None;
        }
    }
    let proxy = match url.scheme() {
        "https" => var("HTTPS_PROXY"),
        _ => var("HTTP_PROXY"),
    }?;
    reqwest::Url::parse(&proxy).ok()
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine as _;
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(30)))
}

/// Parses a `WWW-Authenticate` header into the challenge kbuild answers.
pub fn parse_challenge(headers: &HeaderMap) -> Challenge {
    let Some(value) = headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()) else {
        return Challenge::None;
    };
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Challenge::Basic;
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::None;
    }
    let params = parse_params(params);
    match params.get("realm") {
        Some(realm) => Challenge::Bearer {
            realm: realm.clone(),
            service: params.get("service").cloned(),
        },
        None => Challenge::None,
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Every cause of an error, joined: reqwest's top-level message hides the TLS or socket reason.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn connect_error(registry: &str, url: &str, e: &reqwest::Error) -> RegistryError {
    // reqwest's own top line repeats the URL the message already names; its causes say why.
    let reason = match std::error::Error::source(e) {
        Some(cause) => error_chain(cause),
        None => error_chain(e),
    };
    let lower = reason.to_ascii_lowercase();
    let hint = if lower.contains("certificate") || lower.contains("unknownissuer") {
        Some(format!(
            "the registry's TLS certificate is not trusted: pass --registry-certificate {registry}=/path/ca.pem, or --skip-tls-verify (pushes) / --skip-tls-verify-pull (pulls) / --skip-tls-verify-registry {registry}"
        ))
    } else if lower.contains("connection refused") {
        Some("is the registry running, and is the host and port right?".into())
    } else if lower.contains("connection closed") || lower.contains("connection reset") {
        Some("the registry dropped the connection; --push-retry=N (pushes) or --image-download-retry=N (pulls) retries the whole transfer".into())
    } else if lower.contains("http2")
        || lower.contains("invalid http version")
        || lower.contains("wrong version number")
    {
        Some(format!(
            "the registry may speak plain HTTP: pass --insecure-registry {registry}"
        ))
    } else {
        None
    };
    RegistryError::Connect {
        registry: registry.to_string(),
        url: url.to_string(),
        reason,
        hint,
    }
}

/// Drops the query from a URL for messages: upload URLs carry opaque state there.
pub fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// The `message` of a registry's JSON error body, or a short prefix of the body.
fn registry_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(errors) = serde_json::from_str::<Errors>(body) {
        return errors
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; ");
    }
    body.trim().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn challenge(value: &str) -> Challenge {
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
        parse_challenge(&headers)
    }

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(
            challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            challenge(r#"Bearer realm=https://r/t, service="a \"b\"""#),
            Challenge::Bearer {
                realm: "https://r/t".into(),
                service: Some("a \"b\"".into())
            }
        );
        assert_eq!(challenge("Negotiate"), Challenge::None);
    }

    #[test]
    fn registry_errors_are_summarised() {
        let body =
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_message(body), "MANIFEST_UNKNOWN manifest unknown");
        assert_eq!(
            redact_url("http://r/v2/a/blobs/uploads/x?_state=secret"),
            "http://r/v2/a/blobs/uploads/x?…"
        );
    }
}
