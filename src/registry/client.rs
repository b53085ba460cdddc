//! Registry API calls (distribution spec v2): manifests, blobs, uploads, mounts, tags.
//!
//! Built on reqwest rather than oci-client 0.18, although the plan was to wrap oci-client. Its
//! `ClientConfig` has no client certificate (`--registry-client-cert` could not work for any
//! call), takes TLS settings per client rather than per registry, keeps single-scope tokens
//! (cross-repository mount needs a push scope on one repository and pull on another), fails on a
//! `202` answer to a mount instead of uploading, has no OAuth2 refresh-token grant for
//! `identitytoken`, re-pings `/v2/` before every request when a registry wants no token, and
//! hides HTTP statuses the retry policy needs. Each of those is a requirement here, and working
//! around them would have meant a second HTTP stack beside it for most calls; the distribution
//! API kbuild needs is a dozen requests, so they live here, each with the error a user needs.
//!
//! Uploads are monolithic: one POST for a session, one streaming PUT with `Content-Length`
//! (CONTEXT.md: about twice as fast as chunked PATCHes, and chunked uploads break on registries
//! answering PATCH with 201). A blob is read from the store file as it is sent, never held whole.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use reqwest::{Response, StatusCode};
use tokio_util::io::ReaderStream;

use super::credentials::Keychain;
use super::error::RegistryError;
use super::manifest::{ACCEPTED_MANIFESTS, detect_media_type};
use super::options::{Direction, RegistryOptions};
use super::reference::Reference;
use super::store::BlobStore;
use super::transport::{Host, Transport, pull_scope, push_scope, redact_url};
use crate::digest::Digest;

/// A manifest or index as a registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes: never re-serialised.
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// What happened to one blob during a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry already had it (HEAD).
    Existed,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded from the store.
    Uploaded,
}

/// A client for every registry a command talks to. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    transport: Arc<Transport>,
}

impl RegistryClient {
    /// A client with these options and credentials.
    pub fn new(options: RegistryOptions, keychain: Keychain) -> RegistryClient {
        RegistryClient {
            transport: Arc::new(Transport::new(options, keychain)),
        }
    }

    /// The options this client follows.
    pub fn options(&self) -> &RegistryOptions {
        &self.transport.options
    }

    async fn host(
        &self,
        reference: &Reference,
        direction: Direction,
    ) -> Result<Arc<Host>, RegistryError> {
        self.transport.host(reference.api_host(), direction).await
    }

    fn url(host: &Host, reference: &Reference, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", host.base_url, reference.repository())
    }

    /// Fetches a manifest or index by tag or digest. A manifest asked for by digest is checked
    /// against it.
    pub async fn get_manifest(
        &self,
        reference: &Reference,
        direction: Direction,
    ) -> Result<FetchedManifest, RegistryError> {
        let host = self.host(reference, direction).await?;
        let url = Self::url(
            &host,
            reference,
            &format!("manifests/{}", reference.manifest_reference()),
        );
        let scopes = [pull_scope(reference.repository())];
        let accept = ACCEPTED_MANIFESTS.join(", ");
        let response = self
            .transport
            .send(&host, &scopes, |c| {
                Ok(c.get(&url).header("Accept", &accept))
            })
            .await?;
        if response.status() != StatusCode::OK {
            let mut err = self
                .transport
                .unexpected(&host, "pull", &format!("manifest {reference}"), response)
                .await;
            if let RegistryError::NotFound { hint, .. } = &mut err {
                *hint = Some(
                    "check the image name and tag; `skopeo list-tags docker://REPO` lists the tags"
                        .into(),
                );
            }
            return Err(err);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| body_error(&host, &url, &e))?
            .to_vec();
        let digest = Digest::of(&bytes);
        if let Some(want) = reference.digest()
            && *want != digest
        {
            return Err(RegistryError::ManifestDigestMismatch {
                registry: host.name.clone(),
                reference: reference.to_string(),
                actual: digest.to_string(),
            });
        }
        let media_type = detect_media_type(content_type.as_deref(), &bytes).ok_or_else(|| {
            RegistryError::InvalidManifest {
                reference: reference.to_string(),
                reason: format!("unknown media type {:?}", content_type.unwrap_or_default()),
            }
        })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// True when the repository already has the blob.
    pub async fn blob_exists(
        &self,
        repository: &Reference,
        digest: &Digest,
        direction: Direction,
    ) -> Result<bool, RegistryError> {
        let host = self.host(repository, direction).await?;
        let url = Self::url(&host, repository, &format!("blobs/{digest}"));
        let scopes = [scope_for(repository, direction)];
        let response = self
            .transport
            .send(&host, &scopes, |c| Ok(c.head(&url)))
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .transport
                .unexpected(
                    &host,
                    "HEAD",
                    &format!("blob {digest} in {}", repository.name()),
                    response,
                )
                .await),
        }
    }

    /// Downloads a blob into the store, verifying its digest (and size) while it streams. On a
    /// mismatch nothing is kept and the error names the blob and the registry.
    pub async fn fetch_blob(
        &self,
        repository: &Reference,
        digest: &Digest,
        size: Option<u64>,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        if store.contains(digest) {
            return Ok(());
        }
        let (host, url, response) = self.blob_response(repository, digest).await?;
        let mut writer = store.writer_expecting(*digest, size)?;
        writer.set_source(url.clone());
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| body_error(&host, &url, &e))?;
            // Small synchronous writes to the page cache: cheaper than a blocking-pool hop.
            std::io::Write::write_all(&mut writer, &chunk).map_err(|source| {
                super::store::StoreError::Io {
                    path: store.root().join("tmp"),
                    source,
                }
            })?;
        }
        writer.commit()?;
        Ok(())
    }

    /// Streams a blob without storing it (reading a cache layer's file list). The caller hashes
    /// the bytes if it needs them verified.
    pub async fn blob_stream(
        &self,
        repository: &Reference,
        digest: &Digest,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, RegistryError>> + use<>, RegistryError>
    {
        let (host, url, response) = self.blob_response(repository, digest).await?;
        Ok(response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| body_error(&host, &url, &e))))
    }

    async fn blob_response(
        &self,
        repository: &Reference,
        digest: &Digest,
    ) -> Result<(Arc<Host>, String, Response), RegistryError> {
        let host = self.host(repository, Direction::Pull).await?;
        let url = Self::url(&host, repository, &format!("blobs/{digest}"));
        let scopes = [pull_scope(repository.repository())];
        let response = self
            .transport
            .send(&host, &scopes, |c| Ok(c.get(&url)))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(self
                .transport
                .unexpected(
                    &host,
                    "pull",
                    &format!("blob {digest} of {}", repository.name()),
                    response,
                )
                .await);
        }
        Ok((host, url, response))
    }

    /// Pushes one blob from the store: skipped when the registry has it, mounted when one of
    /// `mount_from` (repositories of the same registry) has it, uploaded otherwise.
    pub async fn push_blob(
        &self,
        destination: &Reference,
        digest: &Digest,
        store: &BlobStore,
        mount_from: &[Reference],
    ) -> Result<BlobPush, RegistryError> {
        if self
            .blob_exists(destination, digest, Direction::Push)
            .await?
        {
            return Ok(BlobPush::Existed);
        }
        let host = self.host(destination, Direction::Push).await?;
        let size = store.size(digest)?;
        let candidates: Vec<&Reference> = mount_from
            .iter()
            .filter(|s| {
                s.registry() == destination.registry() && s.repository() != destination.repository()
            })
            .collect();
        let mut session = None;
        for (i, source) in candidates.iter().enumerate() {
            match self.mount(&host, destination, source, digest).await? {
                None => return Ok(BlobPush::Mounted),
                Some(location) if i + 1 == candidates.len() => session = Some(location),
                Some(location) => {
                    // 202: not in that repository; drop the session and ask the next one.
                    let scopes = [push_scope(destination.repository())];
                    let _ = self
                        .transport
                        .send(&host, &scopes, |c| Ok(c.delete(&location)))
                        .await;
                }
            }
        }
        // A 202 from the last candidate opened an upload session: upload into it.
        self.upload(&host, destination, digest, size, store, session)
            .await?;
        Ok(BlobPush::Uploaded)
    }

    /// Asks for a cross-repository mount. `Ok(None)` means mounted (201); `Ok(Some(location))`
    /// means the registry opened an upload session instead (202).
    async fn mount(
        &self,
        host: &Host,
        destination: &Reference,
        source: &Reference,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        let url = Self::url(host, destination, "blobs/uploads/");
        let digest_text = digest.to_string();
        let query = [
            ("mount", digest_text.as_str()),
            ("from", source.repository()),
        ];
        // One token for both repositories: push on the destination, pull on the source.
        let scopes = [
            push_scope(destination.repository()),
            pull_scope(source.repository()),
        ];
        let response = self
            .transport
            .send(host, &scopes, |c| {
                Ok(c.post(&url).query(&query).header("Content-Length", "0"))
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => {
                tracing::info!(
                    "mounted {digest} into {} from {}",
                    destination.name(),
                    source.repository()
                );
                Ok(None)
            }
            StatusCode::ACCEPTED => Ok(Some(location(host, &response)?)),
            _ => Err(self
                .transport
                .unexpected(
                    host,
                    "push",
                    &format!("(mount of blob {digest} into {})", destination.name()),
                    response,
                )
                .await),
        }
    }

    async fn start_upload(
        &self,
        host: &Host,
        destination: &Reference,
    ) -> Result<String, RegistryError> {
        let url = Self::url(host, destination, "blobs/uploads/");
        let scopes = [push_scope(destination.repository())];
        let response = self
            .transport
            .send(host, &scopes, |c| {
                Ok(c.post(&url).header("Content-Length", "0"))
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self
                .transport
                .unexpected(
                    host,
                    "push",
                    &format!("to {}", destination.name()),
                    response,
                )
                .await);
        }
        location(host, &response)
    }

    async fn upload(
        &self,
        host: &Host,
        destination: &Reference,
        digest: &Digest,
        size: u64,
        store: &BlobStore,
        session: Option<String>,
    ) -> Result<(), RegistryError> {
        let attempts = self.options().request_attempts.max(1);
        let mut session = session;
        let mut attempt = 1;
        loop {
            let result = self
                .upload_once(host, destination, digest, size, store, session.take())
                .await;
            match result {
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let wait = self.options().backoff(attempt);
                    tracing::warn!(
                        "upload of {digest} to {} failed ({e}); retrying in {:.1}s",
                        destination.name(),
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn upload_once(
        &self,
        host: &Host,
        destination: &Reference,
        digest: &Digest,
        size: u64,
        store: &BlobStore,
        session: Option<String>,
    ) -> Result<(), RegistryError> {
        let location = match session {
            Some(location) => location,
            None => self.start_upload(host, destination).await?,
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let scopes = [push_scope(destination.repository())];
        tracing::debug!(
            "uploading {digest} ({size} bytes) to {}",
            destination.name()
        );
        let response = self
            .transport
            .send_with(host, &scopes, 1, |c| {
                let file = store.open_blob(digest)?;
                let stream =
                    ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024);
                Ok(c.put(&url)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", size.to_string())
                    .body(reqwest::Body::wrap_stream(stream)))
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self
                .transport
                .unexpected(
                    host,
                    "PUT",
                    &format!("blob {digest} to {}", destination.name()),
                    response,
                )
                .await);
        }
        Ok(())
    }

    /// Pushes a manifest under the destination's tag (or its digest when it has no tag) and
    /// returns the digest the registry stored it under.
    pub async fn put_manifest(
        &self,
        destination: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let host = self.host(destination, Direction::Push).await?;
        let digest = Digest::of(bytes);
        let tag = match destination.tag() {
            Some(tag) => tag.to_string(),
            None => digest.to_string(),
        };
        let url = Self::url(&host, destination, &format!("manifests/{tag}"));
        let scopes = [push_scope(destination.repository())];
        let body = bytes.to_vec();
        let response = self
            .transport
            .send(&host, &scopes, |c| {
                Ok(c.put(&url)
                    .header("Content-Type", media_type)
                    .body(body.clone()))
            })
            .await?;
        if response.status() != StatusCode::CREATED && response.status() != StatusCode::OK {
            return Err(self
                .transport
                .unexpected(&host, "push", &format!("manifest {destination}"), response)
                .await);
        }
        if let Some(answered) = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && answered != digest
        {
            return Err(RegistryError::Invalid(format!(
                "registry {} stored manifest {destination} as {answered}, but kbuild sent {digest}",
                host.name
            )));
        }
        Ok(digest)
    }

    /// Checks that a push to `destination` would be accepted, by opening an upload session and
    /// cancelling it (Kaniko's push-permission preflight).
    pub async fn check_push_permission(
        &self,
        destination: &Reference,
    ) -> Result<(), RegistryError> {
        let host = self.host(destination, Direction::Push).await?;
        let location = self.start_upload(&host, destination).await?;
        let scopes = [push_scope(destination.repository())];
        // Cancelling is a courtesy: registries expire abandoned sessions anyway.
        let _ = self
            .transport
            .send(&host, &scopes, |c| Ok(c.delete(&location)))
            .await;
        Ok(())
    }

    /// Every tag of a repository, following `Link` pagination.
    pub async fn list_tags(&self, repository: &Reference) -> Result<Vec<String>, RegistryError> {
        self.list_tags_paged(repository, 1000).await
    }

    /// As [`RegistryClient::list_tags`], asking for `page_size` tags per request.
    pub async fn list_tags_paged(
        &self,
        repository: &Reference,
        page_size: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let host = self.host(repository, Direction::Pull).await?;
        let scopes = [pull_scope(repository.repository())];
        let mut url = Self::url(&host, repository, &format!("tags/list?n={page_size}"));
        let mut tags = Vec::new();
        loop {
            let response = self
                .transport
                .send(&host, &scopes, |c| Ok(c.get(&url)))
                .await?;
            if response.status() != StatusCode::OK {
                return Err(self
                    .transport
                    .unexpected(
                        &host,
                        "list tags of",
                        &format!("repository {}", repository.name()),
                        response,
                    )
                    .await);
            }
            let next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            #[derive(serde::Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| body_error(&host, &url, &e))?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Status {
                    registry: host.name.clone(),
                    method: "GET".into(),
                    url: url.clone(),
                    status: 200,
                    message: format!("the tag list is not valid JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) if next.starts_with('/') => url = format!("{}{next}", host.base_url),
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(tags)
    }
}

fn scope_for(repository: &Reference, direction: Direction) -> String {
    match direction {
        Direction::Pull => pull_scope(repository.repository()),
        Direction::Push => push_scope(repository.repository()),
    }
}

/// The URL in a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn location(host: &Host, response: &Response) -> Result<String, RegistryError> {
    let value = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Status {
            registry: host.name.clone(),
            method: "POST".into(),
            url: redact_url(response.url().as_str()),
            status: response.status().as_u16(),
            message: "the upload answer has no Location header".into(),
        })?;
    Ok(if value.starts_with('/') {
        format!("{}{value}", host.base_url)
    } else {
        value.to_string()
    })
}

fn body_error(host: &Host, url: &str, e: &reqwest::Error) -> RegistryError {
    RegistryError::Connect {
        registry: host.name.clone(),
        url: redact_url(url),
        reason: format!("the transfer broke: {}", super::transport::error_chain(e)),
        hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        assert_eq!(
            next_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/app/tags/list?last=b&n=2".into())
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="prev""#), None);
    }
}
