//! The content-addressed local blob store: `<root>/blobs/sha256/<hex>`, as in an OCI image layout.
//!
//! Every blob arrives through a [`BlobWriter`]: bytes go to a temporary file under `<root>/tmp`
//! while being hashed, and only a blob whose digest is known (and, when one was expected, equal to
//! it) is renamed into place. A blob file therefore always holds the content its name says, so
//! readers never re-hash, and a download that fails or does not match leaves nothing behind.
//! Renames are atomic and the content of a name never changes, so two builds sharing a store (a
//! `--cache-dir` on a persistent volume) can write the same blob at the same time safely: the last
//! rename wins with identical bytes. Eviction is left out: nothing here deletes a committed blob.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::digest::{Digest, HashingWriter};

/// A directory of blobs named by their sha256 digest.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// A failure of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected} does not match its digest: its content hashes to {actual}{}\nhint: the source served corrupt data; the blob was not kept", from.as_ref().map(|f| format!(" (from {f})")).unwrap_or_default())]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        from: Option<String>,
    },
    #[error("blob {digest} has {actual} bytes but its descriptor says {expected}{}", from.as_ref().map(|f| format!(" (from {f})")).unwrap_or_default())]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
        from: Option<String>,
    },
    #[error("blob {digest} is not in the blob store at {root}")]
    Missing { digest: Digest, root: PathBuf },
}

impl BlobStore {
    /// Opens (creating when needed) a blob store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<BlobStore, StoreError> {
        let root = root.into();
        for dir in [root.join("blobs").join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir, source })?;
        }
        Ok(BlobStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// True when the blob is in the store.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.missing(digest)),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Opens a stored blob for streaming reads.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.path(digest);
        File::open(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                self.missing(digest)
            } else {
                StoreError::Io { path, source }
            }
        })
    }

    /// Reads a whole (small) blob: a manifest or a config. Layers are streamed with
    /// [`BlobStore::open_blob`] instead.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| StoreError::Io {
                path: self.path(digest),
                source,
            })?;
        Ok(bytes)
    }

    /// Stores bytes held in memory (a manifest or config) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut writer = self.writer_expecting(digest, Some(bytes.len() as u64))?;
        writer
            .write_all(bytes)
            .map_err(|source| self.tmp_error(source))?;
        writer.commit()?;
        Ok(digest)
    }

    /// A writer for a blob whose digest is not known yet (a layer being compressed).
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        self.new_writer(None, None)
    }

    /// A writer for a blob with a known digest (a download): committing checks the digest and,
    /// when given, the size, and keeps nothing on a mismatch.
    pub fn writer_expecting(
        &self,
        digest: Digest,
        size: Option<u64>,
    ) -> Result<BlobWriter, StoreError> {
        self.new_writer(Some(digest), size)
    }

    fn new_writer(
        &self,
        expected: Option<Digest>,
        size: Option<u64>,
    ) -> Result<BlobWriter, StoreError> {
        let tmp_dir = self.root.join("tmp");
        let file = NamedTempFile::new_in(&tmp_dir).map_err(|source| StoreError::Io {
            path: tmp_dir.clone(),
            source,
        })?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file)),
            expected,
            expected_size: size,
            from: None,
        })
    }

    fn missing(&self, digest: &Digest) -> StoreError {
        StoreError::Missing {
            digest: *digest,
            root: self.root.clone(),
        }
    }

    fn tmp_error(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.root.join("tmp"),
            source,
        }
    }
}

/// Writes one blob into the store: hashes what it is given, and on [`BlobWriter::commit`] moves it
/// under its digest. Dropping it without committing discards the bytes.
pub struct BlobWriter {
    store: BlobStore,
    inner: HashingWriter<io::BufWriter<NamedTempFile>>,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    from: Option<String>,
}

impl BlobWriter {
    /// Names where the bytes come from, for error messages (a registry URL).
    pub fn set_source(&mut self, from: impl Into<String>) {
        self.from = Some(from.into());
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Verifies the content and moves it under its digest; returns the digest and size.
    pub fn commit(self) -> Result<(Digest, u64), StoreError> {
        let (buffered, digest, size) = self.inner.finish();
        let tmp = buffered.into_inner().map_err(|e| StoreError::Io {
            path: self.store.root.join("tmp"),
            source: e.into_error(),
        })?;
        if let Some(expected) = self.expected {
            if expected != digest {
                return Err(StoreError::DigestMismatch {
                    expected,
                    actual: digest,
                    from: self.from,
                });
            }
            if let Some(want) = self.expected_size
                && want != size
            {
                return Err(StoreError::SizeMismatch {
                    digest,
                    expected: want,
                    actual: size,
                    from: self.from,
                });
            }
        }
        let path = self.store.path(&digest);
        if path.is_file() {
            // Someone else committed the same content first; ours is discarded with `tmp`.
            return Ok((digest, size));
        }
        tmp.as_file().sync_data().map_err(|source| StoreError::Io {
            path: tmp.path().to_path_buf(),
            source,
        })?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_under_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"hello").unwrap();
        let (digest, size) = w.commit().unwrap();
        assert_eq!((digest, size), (Digest::of(b"hello"), 5));
        assert_eq!(store.read(&digest).unwrap(), b"hello");
        assert!(dir.path().join("blobs/sha256").join(digest.hex()).is_file());
        assert_eq!(store.put_bytes(b"hello").unwrap(), digest);
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let want = Digest::of(b"good");
        let mut w = store.writer_expecting(want, None).unwrap();
        w.set_source("http://reg/v2/app/blobs/x");
        w.write_all(b"evil").unwrap();
        let err = w.commit().unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
        assert!(err.contains("http://reg/v2/app/blobs/x"), "{err}");
        assert!(!store.contains(&want));
        assert!(!store.contains(&Digest::of(b"evil")));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_wrong_size_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer_expecting(Digest::of(b"abc"), Some(4)).unwrap();
        w.write_all(b"abc").unwrap();
        assert!(matches!(w.commit(), Err(StoreError::SizeMismatch { .. })));
    }

    #[test]
    fn two_writers_of_the_same_blob_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let a = BlobStore::open(dir.path()).unwrap();
        let b = BlobStore::open(dir.path()).unwrap();
        let mut wa = a.writer().unwrap();
        let mut wb = b.writer().unwrap();
        wa.write_all(b"same").unwrap();
        wb.write_all(b"same").unwrap();
        let da = wa.commit().unwrap();
        let db = wb.commit().unwrap();
        assert_eq!(da, db);
        assert_eq!(a.read(&da.0).unwrap(), b"same");
    }
}
