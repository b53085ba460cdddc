//! Where cache entries live: a registry repository, or an OCI image layout on disk
//! (`--cache-repo=oci:/path`).
//!
//! [`CacheStore::probe`] looks an entry up by key and, on a hit, brings its layer into the
//! build's blob store so the executor can apply it at once (the download starts as soon as the
//! probe knows, concurrently with the steps before it). [`CacheStore::push`] stores a new entry.
//! Every failure is an error value for the caller to log and record: a cache never fails a build.
//!
//! The layout's `index.json` is updated under an exclusive `flock` on `index.json.lock`, and
//! blobs are written to a temporary name and renamed, so builds sharing a layout (a PVC) never
//! see half an entry. Registry entries need no lock: the tag moves in one manifest PUT, and two
//! builds pushing the same key push equal content apart from the creation time.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::registry::manifest::{Descriptor, ImageIndex, OCI_INDEX, OCI_MANIFEST, canonical_json};
use crate::registry::{
    BlobStore, Direction, ImageToPush, Reference, RegistryClient, RegistryError, push_image,
};

use super::entry::{Entry, EntryError, NewEntry, check_manifest};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How long a lookup (manifest and config, not the layer) may take before it counts as a miss:
/// an instruction waits for its lookup, and a cache repository that does not answer must not
/// hold the build up.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A failure of a cache store; never fatal to a build.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid --cache-repo {value:?}: {reason}\nhint: {hint}")]
    BadRepo {
        value: String,
        reason: String,
        hint: &'static str,
    },
    #[error("cache {entry}: {source}")]
    Registry {
        entry: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("cache {entry}: {source}")]
    Entry {
        entry: String,
        #[source]
        source: EntryError,
    },
    #[error("cache {entry}: no answer within {}s", after.as_secs())]
    Timeout { entry: String, after: Duration },
    #[error("cache layout {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where entries are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRepo {
    /// A registry repository; entries are tagged with the key's hex.
    Registry(Reference),
    /// An OCI image layout directory; entries are named by `org.opencontainers.image.ref.name`.
    Layout(PathBuf),
}

impl CacheRepo {
    /// Parses `--cache-repo`: `oci:/path` or a repository without tag or digest.
    pub fn parse(value: &str) -> Result<CacheRepo, CacheError> {
        if let Some(path) = value.strip_prefix("oci:") {
            if path.is_empty() {
                return Err(CacheError::BadRepo {
                    value: value.into(),
                    reason: "no directory after oci:".into(),
                    hint: "write --cache-repo=oci:/path/to/layout",
                });
            }
            return Ok(CacheRepo::Layout(PathBuf::from(path)));
        }
        let last = value.rsplit('/').next().unwrap_or(value);
        if last.contains(':') || value.contains('@') {
            return Err(CacheError::BadRepo {
                value: value.into(),
                reason:
                    "a cache repository has no tag or digest (entries are tagged with their key)"
                        .into(),
                hint: "drop the :tag, e.g. --cache-repo=registry.example/team/app/cache",
            });
        }
        let reference: Reference =
            value
                .parse()
                .map_err(
                    |e: crate::registry::reference::ReferenceError| CacheError::BadRepo {
                        value: value.into(),
                        reason: e.reason,
                        hint: "use registry/repository, or oci:/path for an OCI layout",
                    },
                )?;
        Ok(CacheRepo::Registry(reference))
    }

    /// Kaniko's default: `<first destination's repository>/cache`.
    pub fn default_for(destination: &Reference) -> CacheRepo {
        let name = format!("{}/cache", destination.name());
        match name.parse() {
            Ok(r) => CacheRepo::Registry(r),
            // A destination name is valid, and so is it with "/cache" appended.
            Err(_) => CacheRepo::Registry(destination.clone()),
        }
    }

    /// `<repo>:<hex>` (or `oci:<path>:<hex>`): how reports and logs name an entry.
    pub fn entry_name(&self, key: &Digest) -> String {
        format!("{self}:{}", key.hex())
    }

    /// The registry repository, for cross-repository mounts of cached layers.
    pub fn registry(&self) -> Option<&Reference> {
        match self {
            CacheRepo::Registry(r) => Some(r),
            CacheRepo::Layout(_) => None,
        }
    }

    fn tagged(&self, key: &Digest) -> Option<Reference> {
        match self {
            CacheRepo::Registry(r) => format!("{}:{}", r.name(), key.hex()).parse().ok(),
            CacheRepo::Layout(_) => None,
        }
    }
}

impl fmt::Display for CacheRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheRepo::Registry(r) => f.write_str(&r.name()),
            CacheRepo::Layout(p) => write!(f, "oci:{}", p.display()),
        }
    }
}

/// Why a probe did not give a usable entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// No entry under the key (or one kbuild cannot use, or the store could not be read).
    NoEntry,
    /// An entry older than `--cache-ttl`.
    Expired,
}

/// What a probe found.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A usable entry; its layer blob (if any) is in the build's blob store.
    Hit(Box<Entry>),
    /// No usable entry; `detail` says what went wrong when it was not simply absent.
    Miss {
        reason: MissReason,
        detail: Option<String>,
        /// When the entry that was found (but not used) was made.
        created: Option<String>,
    },
}

/// A cache store shared by a build's probes and pushes. Cheap to clone.
#[derive(Clone)]
pub struct CacheStore {
    inner: Arc<Inner>,
}

struct Inner {
    repo: CacheRepo,
    client: RegistryClient,
    blobs: BlobStore,
    ttl: Duration,
}

impl CacheStore {
    /// A store for `repo`; hits bring their layers into `blobs`.
    pub fn new(
        repo: CacheRepo,
        client: RegistryClient,
        blobs: BlobStore,
        ttl: Duration,
    ) -> CacheStore {
        CacheStore {
            inner: Arc::new(Inner {
                repo,
                client,
                blobs,
                ttl,
            }),
        }
    }

    /// The repository or layout.
    pub fn repo(&self) -> &CacheRepo {
        &self.inner.repo
    }

    /// Looks up `key`. A hit's layer is in the blob store when this returns.
    pub async fn probe(&self, key: &Digest) -> Probe {
        let entry = self.repo().entry_name(key);
        let found = match self.repo() {
            CacheRepo::Registry(_) => {
                match tokio::time::timeout(LOOKUP_TIMEOUT, self.read_registry(key)).await {
                    Ok(found) => found,
                    Err(_) => Err(CacheError::Timeout {
                        entry: entry.clone(),
                        after: LOOKUP_TIMEOUT,
                    }),
                }
            }
            CacheRepo::Layout(dir) => self.read_layout(dir, key),
        };
        let entry_value = match found {
            Ok(Some(e)) => e,
            Ok(None) => {
                return Probe::Miss {
                    reason: MissReason::NoEntry,
                    detail: None,
                    created: None,
                };
            }
            Err(e) => {
                return Probe::Miss {
                    reason: MissReason::NoEntry,
                    detail: Some(e.to_string()),
                    created: None,
                };
            }
        };
        if entry_value.expired(self.inner.ttl, SystemTime::now()) {
            return Probe::Miss {
                reason: MissReason::Expired,
                detail: Some(format!(
                    "{entry} was created {}, longer ago than --cache-ttl",
                    entry_value.created
                )),
                created: Some(entry_value.created.clone()),
            };
        }
        if let Some(layer) = &entry_value.layer
            && let Err(e) = self.fetch_layer(key, &layer.descriptor).await
        {
            return Probe::Miss {
                reason: MissReason::NoEntry,
                detail: Some(format!("its layer could not be fetched: {e}")),
                created: Some(entry_value.created.clone()),
            };
        }
        Probe::Hit(Box::new(entry_value))
    }

    /// Stores `entry`, whose layer blob (if any) is in the blob store.
    pub async fn push(&self, entry: &NewEntry) -> Result<(), CacheError> {
        let name = self.repo().entry_name(&entry.key);
        let entry_err = |source| CacheError::Entry {
            entry: name.clone(),
            source,
        };
        let (config, manifest) = entry.encode().map_err(entry_err)?;
        let blobs = &self.inner.blobs;
        let registry_err = |source| CacheError::Registry {
            entry: name.clone(),
            source: Box::new(source),
        };
        let config_digest = blobs
            .put_bytes(&config)
            .map_err(|e| registry_err(e.into()))?;
        let mut digests = vec![config_digest];
        digests.extend(entry.layer.iter().map(|l| l.descriptor.digest));
        match self.repo() {
            CacheRepo::Registry(_) => {
                let Some(reference) = self.repo().tagged(&entry.key) else {
                    return Ok(());
                };
                let image = ImageToPush {
                    manifest,
                    media_type: OCI_MANIFEST.into(),
                    blobs: digests,
                    mount_sources: Vec::new(),
                };
                push_image(&self.inner.client, &image, &[reference], blobs)
                    .await
                    .map_err(registry_err)?;
                Ok(())
            }
            CacheRepo::Layout(dir) => {
                let manifest_digest = blobs
                    .put_bytes(&manifest)
                    .map_err(|e| registry_err(e.into()))?;
                digests.push(manifest_digest);
                write_layout_entry(dir, blobs, &digests, &entry.key, manifest_digest, &manifest)
            }
        }
    }

    async fn read_registry(&self, key: &Digest) -> Result<Option<Entry>, CacheError> {
        let Some(reference) = self.repo().tagged(key) else {
            return Ok(None);
        };
        let name = self.repo().entry_name(key);
        let registry_err = |source| CacheError::Registry {
            entry: name.clone(),
            source: Box::new(source),
        };
        let client = &self.inner.client;
        let manifest = match client.get_manifest(&reference, Direction::Pull).await {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(registry_err(e)),
        };
        let parsed = check_manifest(&manifest.bytes, key).map_err(|source| CacheError::Entry {
            entry: name.clone(),
            source,
        })?;
        let blobs = &self.inner.blobs;
        client
            .fetch_blob(
                &reference,
                &parsed.config.digest,
                Some(parsed.config.size),
                blobs,
            )
            .await
            .map_err(registry_err)?;
        let config = blobs
            .read(&parsed.config.digest)
            .map_err(|e| registry_err(e.into()))?;
        Entry::decode(&manifest.bytes, &config, key)
            .map(Some)
            .map_err(|source| CacheError::Entry {
                entry: name.clone(),
                source,
            })
    }

    fn read_layout(&self, dir: &Path, key: &Digest) -> Result<Option<Entry>, CacheError> {
        let name = self.repo().entry_name(key);
        let index_path = dir.join("index.json");
        let index = match fs::read(&index_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CacheError::Io {
                    path: index_path,
                    source,
                });
            }
        };
        let index: ImageIndex = serde_json::from_slice(&index).map_err(|e| CacheError::Io {
            path: index_path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        let hex = key.hex();
        let Some(found) = index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME) == Some(&hex))
        else {
            return Ok(None);
        };
        let read = |digest: &Digest| {
            let path = layout_blob(dir, digest);
            fs::read(&path).map_err(|source| CacheError::Io { path, source })
        };
        let manifest = read(&found.digest)?;
        let parsed = check_manifest(&manifest, key).map_err(|source| CacheError::Entry {
            entry: name.clone(),
            source,
        })?;
        let config = read(&parsed.config.digest)?;
        Entry::decode(&manifest, &config, key)
            .map(Some)
            .map_err(|source| CacheError::Entry {
                entry: name,
                source,
            })
    }

    /// Brings a hit's layer into the blob store (a no-op when it is already there, as with a
    /// persistent `--cache-dir`).
    async fn fetch_layer(&self, key: &Digest, layer: &Descriptor) -> Result<(), CacheError> {
        let blobs = &self.inner.blobs;
        if blobs.contains(&layer.digest) {
            return Ok(());
        }
        match self.repo() {
            CacheRepo::Registry(_) => {
                let Some(reference) = self.repo().tagged(key) else {
                    return Ok(());
                };
                self.inner
                    .client
                    .fetch_blob(&reference, &layer.digest, Some(layer.size), blobs)
                    .await
                    .map_err(|source| CacheError::Registry {
                        entry: self.repo().entry_name(key),
                        source: Box::new(source),
                    })
            }
            CacheRepo::Layout(dir) => {
                let path = layout_blob(dir, &layer.digest);
                let mut from =
                    fs::File::open(&path).map_err(|source| CacheError::Io { path, source })?;
                let registry_err = |e: crate::registry::StoreError| CacheError::Registry {
                    entry: self.repo().entry_name(key),
                    source: Box::new(e.into()),
                };
                let mut writer = blobs
                    .writer_expecting(layer.digest, Some(layer.size))
                    .map_err(registry_err)?;
                io::copy(&mut from, &mut writer).map_err(|source| CacheError::Io {
                    path: layout_blob(dir, &layer.digest),
                    source,
                })?;
                writer.commit().map_err(registry_err)?;
                Ok(())
            }
        }
    }
}

fn layout_blob(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Copies blobs into the layout and names the manifest `key` in `index.json`, under the lock.
fn write_layout_entry(
    dir: &Path,
    blobs: &BlobStore,
    digests: &[Digest],
    key: &Digest,
    manifest_digest: Digest,
    manifest: &[u8],
) -> Result<(), CacheError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError::Io { path, source }
    };
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(io_err(&blob_dir))?;
    for digest in digests {
        let target = blob_dir.join(digest.hex());
        if target.is_file() {
            continue;
        }
        let tmp = tempfile::NamedTempFile::new_in(&blob_dir).map_err(io_err(&blob_dir))?;
        let mut from = blobs.open_blob(digest).map_err(|e| CacheError::Registry {
            entry: format!("oci:{}", dir.display()),
            source: Box::new(e.into()),
        })?;
        io::copy(&mut from, &mut tmp.as_file()).map_err(io_err(tmp.path()))?;
        tmp.persist(&target).map_err(|e| CacheError::Io {
            path: target.clone(),
            source: e.error,
        })?;
    }
    let layout_file = dir.join("oci-layout");
    if !layout_file.is_file() {
        fs::write(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io_err(&layout_file))?;
    }
    let lock_path = dir.join("index.json.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        CacheError::Io {
            path: lock_path.clone(),
            source: e.into(),
        }
    })?;
    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice::<ImageIndex>(&bytes).map_err(|e| CacheError::Io {
            path: index_path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?,
        Err(_) => ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: Default::default(),
            extra: Default::default(),
        },
    };
    let hex = key.hex();
    index
        .manifests
        .retain(|d| d.annotations.get(REF_NAME) != Some(&hex));
    let mut entry = Descriptor::new(OCI_MANIFEST, manifest_digest, manifest.len() as u64);
    entry.annotations.insert(REF_NAME.into(), hex);
    index.manifests.push(entry);
    let bytes = canonical_json(&index).map_err(|e| CacheError::Io {
        path: index_path.clone(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    fs::write(tmp.path(), &bytes).map_err(io_err(tmp.path()))?;
    tmp.persist(&index_path).map_err(|e| CacheError::Io {
        path: index_path.clone(),
        source: e.error,
    })?;
    // The lock is released when `lock` is dropped.
    drop(lock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_repos_parse_and_default() {
        assert_eq!(
            CacheRepo::parse("oci:/tmp/layout").unwrap(),
            CacheRepo::Layout("/tmp/layout".into())
        );
        let repo = CacheRepo::parse("reg.local:5000/team/app/cache").unwrap();
        assert_eq!(repo.to_string(), "reg.local:5000/team/app/cache");
        let key = Digest::of(b"k");
        assert_eq!(
            repo.entry_name(&key),
            format!("reg.local:5000/team/app/cache:{}", key.hex())
        );
        let err = CacheRepo::parse("reg.local/app:cache")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no tag or digest"), "{err}");
        assert!(CacheRepo::parse("oci:").is_err());
        let dest: Reference = "reg.local/team/app:1.0".parse().unwrap();
        assert_eq!(
            CacheRepo::default_for(&dest).to_string(),
            "reg.local/team/app/cache"
        );
    }

    fn new_entry(layer: Option<(Digest, u64)>) -> NewEntry {
        use crate::cache::entry::{EntryLayer, FileCounts};
        use crate::cache::key::{ParentKind, Part, Preimage};
        let mut preimage = Preimage::new(ParentKind::Scratch, "scratch");
        preimage.push(Part::Instruction {
            name: "RUN".into(),
            text: format!("RUN make {}", layer.is_some()),
        });
        NewEntry {
            key: preimage.key(),
            preimage,
            instruction: "RUN make".into(),
            platform: "linux/amd64".parse().unwrap(),
            layer: layer.map(|(digest, size)| EntryLayer {
                descriptor: Descriptor::new(
                    crate::registry::manifest::OCI_LAYER_GZIP,
                    digest,
                    size,
                ),
                diff_id: Digest::of(b"tar"),
            }),
            files: Some(FileCounts::default()),
            created: SystemTime::now(),
        }
    }

    #[test]
    fn layout_entries_round_trip_expire_and_bring_their_layer() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path().join("blobs")).unwrap();
        let layer = blobs.put_bytes(b"layer bytes").unwrap();
        let layout = dir.path().join("layout");
        let repo = CacheRepo::Layout(layout.clone());
        let client = RegistryClient::new(
            crate::registry::RegistryOptions::default(),
            crate::registry::Keychain::anonymous(),
        );
        let store = CacheStore::new(repo.clone(), client.clone(), blobs, Duration::from_secs(60));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let with_layer = new_entry(Some((layer, 11)));
        let empty = new_entry(None);
        runtime.block_on(store.push(&with_layer)).unwrap();
        runtime.block_on(store.push(&empty)).unwrap();
        runtime.block_on(store.push(&empty)).unwrap();
        let index: ImageIndex =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index.manifests.len(),
            2,
            "pushing a key again replaces its entry"
        );

        // A build with an empty blob store gets the layer from the layout.
        let fresh = BlobStore::open(dir.path().join("fresh")).unwrap();
        let reader = CacheStore::new(
            repo.clone(),
            client.clone(),
            fresh.clone(),
            Duration::from_secs(60),
        );
        match runtime.block_on(reader.probe(&with_layer.key)) {
            Probe::Hit(entry) => {
                assert_eq!(entry.layer.unwrap().descriptor.digest, layer);
                assert!(fresh.contains(&layer));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            runtime.block_on(reader.probe(&empty.key)),
            Probe::Hit(e) if e.layer.is_none()
        ));
        assert!(matches!(
            runtime.block_on(reader.probe(&Digest::of(b"other"))),
            Probe::Miss {
                reason: MissReason::NoEntry,
                detail: None,
                ..
            }
        ));
        let strict = CacheStore::new(repo, client, fresh, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(10));
        assert!(matches!(
            runtime.block_on(strict.probe(&empty.key)),
            Probe::Miss {
                reason: MissReason::Expired,
                ..
            }
        ));
    }
}
