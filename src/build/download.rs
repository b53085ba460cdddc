//! `ADD <url>`: downloading a remote file into the build's work directory, streaming through
//! sha256 so `--checksum` is checked (and the cache key gets the content digest) without a second
//! read. Only http(s) URLs; git sources are refused before this is reached.
//!
//! The file keeps the download time as its mtime (Docker uses `Last-Modified` when the server
//! sends one); `--reproducible` fixes layer times anyway.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;

use crate::digest::{Digest, HashingWriter};

use super::stage::Executor;

/// Downloads `url` into `dir`; returns the file name (the URL's last path segment) and the
/// content's digest.
pub(super) fn fetch(
    exec: &Executor,
    url: &str,
    checksum: Option<&str>,
    dir: &Path,
) -> Result<(String, Digest), String> {
    let expected = checksum
        .map(|c| {
            c.parse::<Digest>()
                .map_err(|e| format!("--checksum {c:?}: {e}"))
        })
        .transpose()?;
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("download")
        .to_string();
    let path = dir.join(&name);
    let digest = exec.handle.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("ADD {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("ADD {url}: the server answered {status}"));
        }
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut out = HashingWriter::new(std::io::BufWriter::new(file));
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("ADD {url}: {e}"))?;
            out.write_all(&chunk)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        let (mut writer, digest, _) = out.finish();
        writer
            .flush()
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok::<Digest, String>(digest)
    })?;
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(format!(
            "ADD {url}: checksum mismatch: expected {expected}, downloaded {digest}\nhint: the \
             file changed on the server, or --checksum is wrong"
        ));
    }
    Ok((name, digest))
}
