//! Layer writing: changes -> deterministic tar -> sha256 (diffID) -> gzip or zstd -> sha256
//! (digest) -> any `Write`, in one streaming pass. Memory does not grow with the layer.
//!
//! Each changed path is written with its parent directories first (so the layer also extracts on
//! its own), in path order; deletions become `.wh.<name>` entries and recreated directories get a
//! `.wh..wh..opq` entry right after their own. Files sharing an inode within the layer are written
//! once, then as hard links to the first path. Sockets are left out (they cannot be
//! meaningfully recreated). Timestamps follow [`Timestamps`].
//!
//! gzip is compressed on every core in fixed blocks (see `pargzip`), with flate2's zlib-rs
//! backend (about 3x zlib's speed here) and a fixed header (no name, no time, OS "unknown");
//! zstd uses libzstd's worker threads. Both give the same bytes for any number of threads, so
//! the digest does not depend on the machine.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use super::error::FsError;
use super::pargzip::ParGzip;
use super::root::{self, FileKind, Root};
use super::snapshot::{ChangeKind, Changes};
use super::tar_write::{Header, TarWriter, TypeFlag};
use crate::digest::{Digest, HashingWriter};

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// What happens to file timestamps in a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timestamps {
    /// Each entry's own mtime (whole seconds).
    #[default]
    Keep,
    /// Every entry gets this time (`--reproducible`: `SOURCE_DATE_EPOCH`, or 0).
    Fixed(i64),
    /// Times after this one are set to it (`SOURCE_DATE_EPOCH` without `--reproducible`).
    Clamp(i64),
}

impl Timestamps {
    /// The policy for the build flags: `--reproducible` fixes every time (to
    /// `SOURCE_DATE_EPOCH` when set, else 1970-01-01); `SOURCE_DATE_EPOCH` alone clamps.
    pub fn from_build(reproducible: bool, source_date_epoch: Option<i64>) -> Timestamps {
        match (reproducible, source_date_epoch) {
            (true, epoch) => Timestamps::Fixed(epoch.unwrap_or(0)),
            (false, Some(epoch)) => Timestamps::Clamp(epoch),
            (false, None) => Timestamps::Keep,
        }
    }

    /// Like [`Timestamps::from_build`], reading `SOURCE_DATE_EPOCH` from the environment (an
    /// unparsable value is ignored with a warning).
    pub fn from_env(reproducible: bool) -> Timestamps {
        let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| {
            let parsed = v.trim().parse::<i64>().ok();
            if parsed.is_none() {
                tracing::warn!("ignoring SOURCE_DATE_EPOCH={v:?}: not a number of seconds");
            }
            parsed
        });
        Timestamps::from_build(reproducible, epoch)
    }

    fn apply(self, mtime: i64) -> i64 {
        match self {
            Timestamps::Keep => mtime,
            Timestamps::Fixed(t) => t,
            Timestamps::Clamp(t) => mtime.min(t),
        }
    }
}

/// How to write a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    pub compression: Compression,
    /// `--compression-level`; -1 is the algorithm's default (gzip 6, zstd 3).
    pub level: i32,
    pub timestamps: Timestamps,
    /// Compression threads (gzip and zstd); 0 uses every available core. The output does not
    /// depend on it.
    pub threads: usize,
    /// Write a layer (an empty tar) even when there are no changes.
    pub allow_empty: bool,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip,
            level: -1,
            timestamps: Timestamps::Keep,
            threads: 0,
            allow_empty: false,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (the image config's `rootfs.diff_ids`, the cache's key).
    pub diff_id: Digest,
    /// sha256 of the compressed blob (the manifest's layer digest).
    pub digest: Digest,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub compression: Compression,
    pub media_type: &'static str,
    pub files_added: u64,
    pub files_changed: u64,
    pub files_deleted: u64,
    /// Tar entries written (parents, whiteouts and hard links included).
    pub entries: u64,
}

/// Writes `changes` of `root` as a layer into `sink`.
///
/// Returns `Ok(None)`, writing nothing, when there are no changes (unless
/// `options.allow_empty`): a step that changed nothing gets no layer, and the caller decides
/// what that means for the image history.
pub fn write_layer<W: Write>(
    root: &Root,
    changes: &Changes,
    options: &LayerOptions,
    sink: W,
) -> Result<Option<LayerInfo>, FsError> {
    if changes.is_empty() && !options.allow_empty {
        return Ok(None);
    }
    let started = Instant::now();
    let whole = |source: io::Error| FsError::LayerWrite { path: None, source };
    let encoder = Encoder::new(options, HashingWriter::new(sink)).map_err(whole)?;
    let tar_hash = HashingWriter::new(encoder);
    let mut w = LayerTar {
        root,
        timestamps: options.timestamps,
        tar: TarWriter::new(BufWriter::with_capacity(256 * 1024, tar_hash)),
        links: HashMap::new(),
        entries: 0,
        buf: vec![0u8; 256 * 1024],
    };

    // Every changed path and its ancestors; `None` marks an ancestor written for its metadata.
    let mut plan: BTreeMap<&Path, Option<ChangeKind>> = BTreeMap::new();
    for (path, change) in changes.iter() {
        plan.insert(path, Some(change.kind));
        for ancestor in path.ancestors().skip(1) {
            if ancestor.as_os_str().is_empty() {
                break;
            }
            plan.entry(ancestor).or_insert(None);
        }
    }
    let mut last_log = Instant::now();
    for (path, kind) in plan {
        if w.entries.is_multiple_of(1024) && last_log.elapsed() >= std::time::Duration::from_secs(5)
        {
            last_log = Instant::now();
            tracing::info!(
                "writing layer: {} entries so far, at /{}",
                w.entries,
                path.display()
            );
        }
        let result = match kind {
            Some(ChangeKind::Deleted) => w.whiteout(path),
            Some(ChangeKind::Opaque) => w.path(path).and_then(|()| w.opaque(path)),
            Some(ChangeKind::Added | ChangeKind::Changed) => w.path(path),
            None => w.ancestor(path),
        };
        result.map_err(|source| FsError::LayerWrite {
            path: Some(path.to_path_buf()),
            source,
        })?;
    }
    let entries = w.entries;
    let buffered = w.tar.finish().map_err(whole)?;
    let tar_hash = buffered.into_inner().map_err(|e| whole(e.into_error()))?;
    let (encoder, diff_id, uncompressed_size) = tar_hash.finish();
    let (mut sink, digest, compressed_size) = encoder.finish().map_err(whole)?.finish();
    sink.flush().map_err(whole)?;
    let info = LayerInfo {
        diff_id,
        digest,
        compressed_size,
        uncompressed_size,
        compression: options.compression,
        media_type: options.compression.media_type(),
        files_added: changes.count(ChangeKind::Added),
        files_changed: changes.count(ChangeKind::Changed) + changes.count(ChangeKind::Opaque),
        files_deleted: changes.count(ChangeKind::Deleted),
        entries,
    };
    tracing::info!(
        "wrote layer {digest}: {entries} entries, {:.1} MB tar, {:.1} MB {:?} in {:.2}s",
        uncompressed_size as f64 / 1e6,
        compressed_size as f64 / 1e6,
        options.compression,
        started.elapsed().as_secs_f64()
    );
    Ok(Some(info))
}

type Sink<W> = BufWriter<HashingWriter<Encoder<HashingWriter<W>>>>;

struct LayerTar<'a, W: Write> {
    root: &'a Root,
    timestamps: Timestamps,
    tar: TarWriter<Sink<W>>,
    /// First path written for each multiply-linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
    buf: Vec<u8>,
}

fn io_err(e: FsError) -> io::Error {
    match e {
        FsError::Path { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write> LayerTar<'_, W> {
    fn empty_header<'h>(&self, path: &'h [u8], flag: TypeFlag) -> Header<'h> {
        Header {
            path,
            flag,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: self.timestamps.apply(0),
            link: b"",
            major: 0,
            minor: 0,
            xattrs: &[],
        }
    }

    fn whiteout(&mut self, path: &Path) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().as_bytes();
        let mut marker = parent_prefix(path);
        marker.extend_from_slice(b".wh.");
        marker.extend_from_slice(name);
        let h = self.empty_header(&marker, TypeFlag::File);
        self.tar.header(&h)?;
        self.entries += 1;
        Ok(())
    }

    fn opaque(&mut self, path: &Path) -> io::Result<()> {
        let mut marker = path.as_os_str().as_bytes().to_vec();
        marker.extend_from_slice(b"/.wh..wh..opq");
        let h = self.empty_header(&marker, TypeFlag::File);
        self.tar.header(&h)?;
        self.entries += 1;
        Ok(())
    }

    fn ancestor(&mut self, path: &Path) -> io::Result<()> {
        let st = self.root.lstat(path).map_err(io_err)?;
        if st.kind != FileKind::Dir {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a parent of a changed path is not a directory",
            ));
        }
        self.path(path)
    }

    fn path(&mut self, path: &Path) -> io::Result<()> {
        let st = self.root.lstat(path).map_err(io_err)?;
        let mut name = path.as_os_str().as_bytes().to_vec();
        let mtime = self.timestamps.apply(st.mtime.sec);
        let mut h = Header {
            path: b"",
            flag: TypeFlag::File,
            mode: st.mode,
            uid: st.uid.into(),
            gid: st.gid.into(),
            size: 0,
            mtime,
            link: b"",
            major: 0,
            minor: 0,
            xattrs: &[],
        };
        let link;
        let xattrs: Vec<(Vec<u8>, Vec<u8>)>;
        match st.kind {
            FileKind::Dir => {
                name.push(b'/');
                h.flag = TypeFlag::Dir;
                xattrs = to_bytes(self.root.xattrs(path).map_err(io_err)?);
                h.xattrs = &xattrs;
            }
            FileKind::Symlink => {
                link = self.root.read_link(path).map_err(io_err)?;
                h.flag = TypeFlag::Symlink;
                h.link = link.as_os_str().as_bytes();
            }
            FileKind::CharDevice | FileKind::BlockDevice => {
                h.flag = if st.kind == FileKind::CharDevice {
                    TypeFlag::Char
                } else {
                    TypeFlag::Block
                };
                h.major = rustix::fs::major(st.rdev);
                h.minor = rustix::fs::minor(st.rdev);
            }
            FileKind::Fifo => h.flag = TypeFlag::Fifo,
            FileKind::Socket => {
                tracing::debug!("leaving socket /{} out of the layer", path.display());
                return Ok(());
            }
            FileKind::File => {
                if st.nlink > 1 {
                    if let Some(first) = self.links.get(&(st.dev, st.ino)) {
                        let first = first.clone();
                        h.flag = TypeFlag::Hardlink;
                        h.link = &first;
                        h.path = &name;
                        h.mode = st.mode;
                        self.tar.header(&h)?;
                        self.entries += 1;
                        return Ok(());
                    }
                    self.links.insert((st.dev, st.ino), name.clone());
                }
                let file = self.root.open_file_nofollow(path).map_err(io_err)?;
                let fst: root::Stat = rustix::fs::fstat(&file)?.into();
                xattrs = to_bytes(root::read_xattrs(file.as_fd())?);
                h.xattrs = &xattrs;
                h.size = fst.size;
                h.path = &name;
                self.tar.header(&h)?;
                let mut left = fst.size;
                let mut file = file;
                while left > 0 {
                    let want = self.buf.len().min(left as usize);
                    let n = file.read(&mut self.buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::other(
                            "the file shrank while the layer was being written",
                        ));
                    }
                    self.tar.data(&self.buf[..n])?;
                    left -= n as u64;
                }
                self.tar.pad(fst.size)?;
                self.entries += 1;
                return Ok(());
            }
        }
        h.path = &name;
        self.tar.header(&h)?;
        self.entries += 1;
        Ok(())
    }
}

fn to_bytes(xattrs: Vec<(std::ffi::OsString, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    xattrs
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v))
        .collect()
}

/// `a/b/` for `a/b/c`, empty for a top-level name.
fn parent_prefix(path: &Path) -> Vec<u8> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => {
            let mut v = p.as_os_str().as_bytes().to_vec();
            v.push(b'/');
            v
        }
        _ => Vec::new(),
    }
}

/// The compressor stage of the pipeline.
enum Encoder<W: Write> {
    None(W),
    Gzip(ParGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(options: &LayerOptions, inner: W) -> io::Result<Encoder<W>> {
        Ok(match options.compression {
            Compression::None => Encoder::None(inner),
            Compression::Gzip => {
                let level = if options.level < 0 {
                    6
                } else {
                    options.level.min(9)
                };
                Encoder::Gzip(ParGzip::new(inner, level as u32, threads(options))?)
            }
            Compression::Zstd => {
                let level = if options.level == -1 {
                    3
                } else {
                    options.level
                };
                let mut e = zstd::stream::write::Encoder::new(inner, level)?;
                // Always at least one worker: libzstd's multi-threaded format differs from its
                // single-threaded one, and must not depend on the core count.
                e.multithread(threads(options) as u32)?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

fn threads(options: &LayerOptions) -> usize {
    match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}
