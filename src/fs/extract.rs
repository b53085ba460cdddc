//! Applying one image layer to a rootfs, streaming.
//!
//! The layer is read once, from any `Read`: the compression (gzip, zstd or none) is recognised
//! by its magic bytes, the uncompressed stream is hashed on the way (the diffID, returned so the
//! caller can check it against the image config), and each entry is applied through [`Root`], so
//! nothing is created, changed or followed outside the rootfs.
//!
//! Semantics follow Docker's and containerd's layer application:
//! - an entry replaces whatever is at its path, except that a directory entry over an existing
//!   directory merges (updates its metadata, keeps its contents);
//! - symlinks in the parent components of an entry are followed the way the container will follow
//!   them, inside the root; missing parent directories are created (0755);
//! - `.wh.<name>` removes `<name>` from lower layers, `.wh..wh..opq` removes everything in its
//!   directory that this layer did not put there; other `.wh..wh.*` (aufs bookkeeping) are
//!   dropped; no marker ever reaches the rootfs;
//! - ownership is numeric (names in the headers are ignored); modes keep setuid, setgid and
//!   sticky bits (set after `chown`, which clears them); directories are created 0700 and get
//!   their mode and mtime once the whole layer is in, so writing their contents neither fails on a
//!   read-only directory nor disturbs the mtime;
//! - device nodes and FIFOs are created when the process may, and otherwise skipped and counted,
//!   with one warning per layer.
//!
//! Entry names that are absolute or contain `..`, hard links whose target is, or is missing, or is
//! a directory, and malformed headers are refused with an error naming the layer and the entry.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use super::error::FsError;
use super::layer::Compression;
use super::root::{self, Root, Time};
use super::tar_read::{EntryData, EntryHeader, EntryKind, ReadError, TarReader};
use crate::digest::Digest;

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    /// sha256 of the uncompressed tar stream: compare with the image config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// The compression found in the stream.
    pub compression: Compression,
    /// Entries applied, whiteouts included.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Bytes of uncompressed tar read.
    pub tar_bytes: u64,
    /// Whiteout and opaque-whiteout markers applied.
    pub whiteouts: u64,
    /// Device nodes and FIFOs not created because the process may not.
    pub skipped_special: u64,
    /// Entries whose owner could not be set because the process may not.
    pub unowned: u64,
    /// Extended attributes the filesystem or the process refused.
    pub skipped_xattrs: u64,
}

const OPAQUE: &[u8] = b".wh..wh..opq";
/// Long extractions say how far they got this often (Tekton logs show no progress bars).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const WHITEOUT: &[u8] = b".wh.";

/// Applies the layer read from `reader` (gzip, zstd or uncompressed tar) to `root`.
///
/// `layer` names the layer in errors and logs (its digest). The reader is read to its end, so a
/// digest-checking reader around a registry stream completes its check.
pub fn extract_layer<R: Read>(
    root: &Root,
    layer: &str,
    reader: R,
) -> Result<ExtractReport, FsError> {
    let started = Instant::now();
    tracing::info!("extracting layer {layer}");
    let archive_err = |what: &str, source: io::Error| FsError::Archive {
        layer: layer.to_string(),
        what: what.to_string(),
        source,
    };
    let mut reader = reader;
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match reader.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(archive_err("reading the layer", e)),
        }
    }
    let compression = match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    };
    let source =
        BufReader::with_capacity(256 * 1024, Cursor::new(magic[..n].to_vec()).chain(reader));
    let decoded: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(source)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(source)
                .map_err(|e| archive_err("starting zstd decompression", e))?,
        ),
        Compression::None => Box::new(source),
    };
    let hashing = HashingReader {
        inner: decoded,
        hasher: Sha256::new(),
        len: 0,
    };
    let mut tar = TarReader::new(BufReader::with_capacity(128 * 1024, hashing));
    let mut ex = Extractor {
        root,
        layer,
        report: ExtractReport {
            diff_id: Digest::from_bytes([0; 32]),
            compression,
            entries: 0,
            files: 0,
            bytes: 0,
            tar_bytes: 0,
            whiteouts: 0,
            skipped_special: 0,
            unowned: 0,
            skipped_xattrs: 0,
        },
        unpacked: HashSet::new(),
        dirs: Vec::new(),
        dir_index: HashMap::new(),
        buf: vec![0u8; 128 * 1024],
    };
    let mut last_log = Instant::now();
    loop {
        let header = match tar.next_entry() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => return Err(ex.read_error(e)),
        };
        ex.apply(&header, &mut tar)?;
        ex.report.entries += 1;
        if ex.report.entries.is_multiple_of(1024) && last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            tracing::info!(
                "extracting layer {layer}: {} entries, {:.1} MB so far",
                ex.report.entries,
                ex.report.bytes as f64 / 1e6
            );
        }
    }
    ex.finish_dirs()?;
    // Read what follows the end-of-archive blocks, so the diffID covers the whole stream and the
    // compressed source is consumed to its end.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| archive_err("reading the end", e))?;
    let hashing = rest.into_inner();
    let mut report = ex.report;
    report.diff_id = Digest::from_bytes(hashing.hasher.finalize().into());
    report.tar_bytes = hashing.len;
    if report.skipped_special > 0 {
        tracing::warn!(
            "layer {layer}: skipped {} device nodes and FIFOs: this process may not create them",
            report.skipped_special
        );
    }
    if report.unowned > 0 {
        tracing::warn!(
            "layer {layer}: could not set the owner of {} entries: this process may not chown",
            report.unowned
        );
    }
    if report.skipped_xattrs > 0 {
        tracing::warn!(
            "layer {layer}: {} extended attributes were refused by the filesystem or kernel",
            report.skipped_xattrs
        );
    }
    tracing::info!(
        "extracted layer {layer}: {} entries, {} files, {:.1} MB in {:.2}s",
        report.entries,
        report.files,
        report.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

struct Extractor<'a> {
    root: &'a Root,
    layer: &'a str,
    report: ExtractReport,
    /// Paths this layer made, and their ancestors: what an opaque whiteout keeps.
    unpacked: HashSet<Vec<u8>>,
    /// Directories whose mode and mtime are set once the layer is in.
    dirs: Vec<(PathBuf, u32, Time)>,
    /// Where each directory sits in `dirs`: a directory listed twice keeps its last entry.
    dir_index: HashMap<PathBuf, usize>,
    buf: Vec<u8>,
}

/// An entry name as a relative rootfs path; `None` for the root itself (`./`).
pub(crate) fn entry_path(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte".into());
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut out = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("the path contains `..`".into()),
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn permission_denied(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == Errno::PERM.raw_os_error() || code == Errno::ACCESS.raw_os_error()
    )
}

impl Extractor<'_> {
    fn bad(&self, entry: &[u8], reason: impl Into<String>) -> FsError {
        FsError::BadEntry {
            layer: self.layer.to_string(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    fn entry_err(&self, entry: &[u8], source: io::Error) -> FsError {
        FsError::Entry {
            layer: self.layer.to_string(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            source,
        }
    }

    fn read_error(&self, e: ReadError) -> FsError {
        match (e.entry, e.bad_entry) {
            (Some(entry), true) => FsError::BadEntry {
                layer: self.layer.to_string(),
                entry,
                reason: e.source.to_string(),
            },
            (entry, _) => FsError::Archive {
                layer: self.layer.to_string(),
                what: match entry {
                    Some(entry) if e.after => format!("reading past entry {entry:?}"),
                    Some(entry) => format!("reading entry {entry:?}"),
                    None => "reading the archive".into(),
                },
                source: e.source,
            },
        }
    }

    fn mark(&mut self, rel: &Path) {
        let mut p = Some(rel);
        while let Some(path) = p {
            if path.as_os_str().is_empty()
                || !self.unpacked.insert(path.as_os_str().as_bytes().to_vec())
            {
                break;
            }
            p = path.parent();
        }
    }

    fn apply<R: Read>(&mut self, h: &EntryHeader, tar: &mut TarReader<R>) -> Result<(), FsError> {
        let rel = match entry_path(&h.path) {
            Ok(Some(rel)) => rel,
            // The root directory's own entry: the stage directory keeps its metadata.
            Ok(None) => return Ok(()),
            Err(reason) => return Err(self.bad(&h.path, reason)),
        };
        let name = rel.file_name().unwrap_or_default().as_bytes();
        if name.starts_with(WHITEOUT) {
            self.report.whiteouts += 1;
            return self.whiteout(h, &rel);
        }
        let result = match h.kind {
            EntryKind::File => self.file(h, &rel, tar),
            EntryKind::Dir => self.dir(h, &rel),
            EntryKind::Symlink => self.symlink(h, &rel),
            EntryKind::Hardlink => self.hardlink(h, &rel),
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                self.special(h, &rel)
            }
        };
        match result {
            Ok(()) => {
                self.mark(&rel);
                Ok(())
            }
            Err(Failure::Io(e)) => Err(self.entry_err(&h.path, e)),
            Err(Failure::Read(e)) => Err(self.read_error(e)),
            Err(Failure::Bad(reason)) => Err(self.bad(&h.path, reason)),
        }
    }

    fn owner(&mut self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(e) if permission_denied(&e) => {
                self.report.unowned += 1;
                Ok(())
            }
            other => other,
        }
    }

    fn xattrs(&mut self, fd: std::os::fd::BorrowedFd<'_>, h: &EntryHeader) -> io::Result<()> {
        for (name, value) in &h.xattrs {
            match self
                .root
                .sys()
                .fsetxattr(fd, OsStr::from_bytes(name), value)
            {
                Ok(()) => {}
                Err(e)
                    if permission_denied(&e)
                        || e.raw_os_error() == Some(Errno::NOTSUP.raw_os_error()) =>
                {
                    self.report.skipped_xattrs += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        h: &EntryHeader,
        rel: &Path,
        tar: &mut TarReader<R>,
    ) -> Result<(), Failure> {
        let (dir, name) = self.root.parent_creating(rel)?;
        self.root.clear(dir.as_fd(), &name, false, true)?;
        let mut file = self.root.create_file_at(dir.as_fd(), &name, 0o600)?;
        let mut data = EntryData(tar);
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Failure::Read(ReadError {
                        entry: Some(String::from_utf8_lossy(&h.path).into_owned()),
                        after: false,
                        bad_entry: false,
                        source: e,
                    }));
                }
            };
            file.write_all(&self.buf[..n])?;
        }
        let r = self.root.sys().fchown(file.as_fd(), h.uid, h.gid);
        self.owner(r)?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(h.mode))?;
        self.xattrs(file.as_fd(), h)?;
        root::set_mtime_fd(file.as_fd(), mtime(h))?;
        self.report.files += 1;
        self.report.bytes += h.size;
        Ok(())
    }

    fn dir(&mut self, h: &EntryHeader, rel: &Path) -> Result<(), Failure> {
        let (dir, name) = self.root.parent_creating(rel)?;
        if self.root.clear(dir.as_fd(), &name, true, true)?.is_none() {
            rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o700))?;
        }
        let fd = rustix::fs::openat(
            &dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        let r = self.root.sys().fchown(fd.as_fd(), h.uid, h.gid);
        self.owner(r)?;
        self.xattrs(fd.as_fd(), h)?;
        let entry = (rel.to_path_buf(), h.mode, mtime(h));
        match self.dir_index.get(rel) {
            Some(&i) => self.dirs[i] = entry,
            None => {
                self.dir_index.insert(rel.to_path_buf(), self.dirs.len());
                self.dirs.push(entry);
            }
        }
        Ok(())
    }

    fn symlink(&mut self, h: &EntryHeader, rel: &Path) -> Result<(), Failure> {
        if h.link.is_empty() || h.link.contains(&0) {
            return Err(Failure::Bad(
                "the symlink target is empty or has a NUL byte".into(),
            ));
        }
        let (dir, name) = self.root.parent_creating(rel)?;
        self.root.clear(dir.as_fd(), &name, false, true)?;
        rustix::fs::symlinkat(OsStr::from_bytes(&h.link), &dir, &name).map_err(io::Error::from)?;
        let r = self.root.sys().lchownat(dir.as_fd(), &name, h.uid, h.gid);
        self.owner(r)?;
        root::set_mtime_at(dir.as_fd(), &name, mtime(h))?;
        Ok(())
    }

    fn hardlink(&mut self, h: &EntryHeader, rel: &Path) -> Result<(), Failure> {
        let target = match entry_path(&h.link) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(Failure::Bad("the hard link points at the root".into())),
            Err(reason) => return Err(Failure::Bad(format!("hard link target: {reason}"))),
        };
        let (odir, oname) = self.root.parent(&target).map_err(|e| {
            Failure::Bad(format!(
                "hard link target {:?}: {e}",
                String::from_utf8_lossy(&h.link)
            ))
        })?;
        match rustix::fs::statat(&odir, &oname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(Errno::NOENT) => {
                return Err(Failure::Bad(format!(
                    "hard link target {:?} does not exist",
                    String::from_utf8_lossy(&h.link)
                )));
            }
            Err(e) => return Err(Failure::Io(e.into())),
        }
        let (dir, name) = self.root.parent_creating(rel)?;
        self.root
            .link_at(odir.as_fd(), &oname, dir.as_fd(), &name)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidInput {
                    Failure::Bad(format!("hard link target: {e}"))
                } else {
                    Failure::Io(e)
                }
            })
    }

    fn special(&mut self, h: &EntryHeader, rel: &Path) -> Result<(), Failure> {
        let (dir, name) = self.root.parent_creating(rel)?;
        self.root.clear(dir.as_fd(), &name, false, true)?;
        let (ty, dev) = match h.kind {
            EntryKind::CharDevice => (
                FileType::CharacterDevice,
                rustix::fs::makedev(h.major, h.minor),
            ),
            EntryKind::BlockDevice => {
                (FileType::BlockDevice, rustix::fs::makedev(h.major, h.minor))
            }
            _ => (FileType::Fifo, 0),
        };
        match self
            .root
            .sys()
            .mknodat(dir.as_fd(), &name, ty, h.mode & 0o777, dev)
        {
            Ok(()) => {}
            Err(e) if permission_denied(&e) => {
                self.report.skipped_special += 1;
                return Ok(());
            }
            Err(e) => return Err(Failure::Io(e)),
        }
        let r = self.root.sys().lchownat(dir.as_fd(), &name, h.uid, h.gid);
        self.owner(r)?;
        self.root.chmod_at(dir.as_fd(), &name, h.mode)?;
        root::set_mtime_at(dir.as_fd(), &name, mtime(h))?;
        Ok(())
    }

    fn whiteout(&mut self, h: &EntryHeader, rel: &Path) -> Result<(), FsError> {
        let name = rel.file_name().unwrap_or_default().as_bytes();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let result = if name == OPAQUE {
            self.opaque(parent)
        } else if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless outside aufs.
            Ok(())
        } else {
            let target = &name[WHITEOUT.len()..];
            if target.is_empty() || target == b"." || target == b".." {
                return Err(self.bad(&h.path, "a whiteout must name a file"));
            }
            match self.root.parent(&parent.join(OsStr::from_bytes(target))) {
                Ok((dir, target)) => root::remove_tree(dir.as_fd(), &target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        };
        result.map_err(|e| self.entry_err(&h.path, e))
    }

    /// Removes everything below `dir` that this layer did not make.
    fn opaque(&self, dir: &Path) -> io::Result<()> {
        let fd = match self.root.resolve(dir, true) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let fd = root::reopen_dir(&fd)?;
        for name in root::list_dir(fd.as_fd().try_clone_to_owned()?)? {
            let child = dir.join(&name);
            if self.unpacked.contains(child.as_os_str().as_bytes()) {
                let st = rustix::fs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    self.opaque(&child)?;
                }
            } else {
                root::remove_tree(fd.as_fd(), &name)?;
            }
        }
        Ok(())
    }

    /// Sets the mode and mtime of every directory of the layer, now that nothing more is
    /// written into them.
    fn finish_dirs(&mut self) -> Result<(), FsError> {
        for (rel, mode, mtime) in self.dirs.iter().rev() {
            let result = (|| {
                let (dir, name) = self.root.parent(rel)?;
                let fd = match rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Replaced or removed by a later entry of the same layer.
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(*mode))?;
                root::set_mtime_fd(fd.as_fd(), *mtime)
            })();
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.entry_err(rel.as_os_str().as_bytes(), e)),
            }
        }
        Ok(())
    }
}

fn mtime(h: &EntryHeader) -> Time {
    Time {
        sec: h.mtime,
        nsec: h.mtime_nsec,
    }
}

/// Why an entry failed: a system call, the archive, or the entry itself.
enum Failure {
    Io(io::Error),
    Read(ReadError),
    Bad(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Failure {
        Failure::Io(e.into())
    }
}
