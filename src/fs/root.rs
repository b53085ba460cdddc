//! [`Root`]: a directory used as `/`, with every operation resolved inside it.
//!
//! Paths given to a `Root` are rootfs paths: `/etc/passwd` and `etc/passwd` mean the same file,
//! `.` components are ignored and `..` components are refused (callers clean paths lexically,
//! as Docker does, before they get here). Symlinks met in the *parent* components are followed
//! the way a process chrooted into the rootfs would follow them, clamped to the root; the final
//! component is never followed by operations that change something (create, chown, chmod,
//! set times, remove), so a symlink there is replaced or acted on itself, not its target.
//!
//! Every operation first opens the parent directory inside the root, then acts with a `*at`
//! system call relative to that descriptor. Between those two steps nothing can move the parent
//! outside the root, because the descriptor pins the directory itself, not its path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

pub(crate) use super::at::{
    components, list_dir, read_link_at, read_xattrs, relative, remove_tree, reopen_dir,
    set_mtime_at, set_mtime_fd,
};
use super::error::FsError;
use super::resolve;
use super::sys::{RealSys, Sys};

/// How paths are resolved inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(RESOLVE_IN_ROOT)`: the kernel does it (Linux 5.6 and later).
    Openat2,
    /// A component-by-component walk over `O_PATH` descriptors, for older kernels and for
    /// seccomp profiles that refuse openat2.
    Walk,
}

/// What kind of filesystem object a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    pub(crate) fn from_mode(st_mode: u32) -> FileKind {
        match FileType::from_raw_mode(st_mode) {
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Symlink,
            FileType::CharacterDevice => FileKind::CharDevice,
            FileType::BlockDevice => FileKind::BlockDevice,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            _ => FileKind::File,
        }
    }

    pub(crate) fn file_type(self) -> FileType {
        match self {
            FileKind::File => FileType::RegularFile,
            FileKind::Dir => FileType::Directory,
            FileKind::Symlink => FileType::Symlink,
            FileKind::CharDevice => FileType::CharacterDevice,
            FileKind::BlockDevice => FileType::BlockDevice,
            FileKind::Fifo => FileType::Fifo,
            FileKind::Socket => FileType::Socket,
        }
    }
}

/// A point in time as the filesystem stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// The metadata of one filesystem object, not following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Time,
    pub ctime: Time,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    /// Device number of a character or block device.
    pub rdev: u64,
}

impl From<rustix::fs::Stat> for Stat {
    fn from(s: rustix::fs::Stat) -> Stat {
        Stat {
            kind: FileKind::from_mode(s.st_mode),
            mode: s.st_mode & 0o7777,
            uid: s.st_uid,
            gid: s.st_gid,
            size: s.st_size.max(0) as u64,
            mtime: Time {
                sec: s.st_mtime,
                nsec: s.st_mtime_nsec as u32,
            },
            ctime: Time {
                sec: s.st_ctime,
                nsec: s.st_ctime_nsec as u32,
            },
            ino: s.st_ino,
            dev: s.st_dev,
            nlink: s.st_nlink,
            rdev: s.st_rdev,
        }
    }
}

/// A directory treated as the root of a filesystem; see the module docs.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
    resolver: Resolver,
    sys: Arc<dyn Sys>,
}

impl Root {
    /// Opens an existing directory as a rootfs, with the best resolver this kernel offers.
    ///
    /// Refuses the host's `/`: kbuild never builds in it.
    pub fn open(path: impl AsRef<Path>) -> Result<Root, FsError> {
        Root::open_with(path, None, Arc::new(RealSys))
    }

    /// Opens a rootfs with a chosen resolver (`None`: the best available) and system-call seam.
    pub fn open_with(
        path: impl AsRef<Path>,
        resolver: Option<Resolver>,
        sys: Arc<dyn Sys>,
    ) -> Result<Root, FsError> {
        let path = path.as_ref();
        let bad = |reason: String| FsError::BadRoot {
            path: path.to_path_buf(),
            reason,
        };
        let canonical = path.canonicalize().map_err(|e| bad(e.to_string()))?;
        if canonical == Path::new("/") {
            return Err(bad("it is the host's root directory".into()));
        }
        let dir = rustix::fs::open(
            &canonical,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| bad(io::Error::from(e).to_string()))?;
        let resolver = resolver.unwrap_or_else(|| {
            if resolve::openat2_available(&dir) {
                Resolver::Openat2
            } else {
                Resolver::Walk
            }
        });
        Ok(Root {
            dir,
            path: canonical,
            resolver,
            sys,
        })
    }

    /// The rootfs directory on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How this root resolves paths.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    pub(crate) fn sys(&self) -> &dyn Sys {
        &*self.sys
    }

    fn err(&self, op: &'static str, path: &Path, source: io::Error) -> FsError {
        FsError::Path {
            op,
            root: self.path.clone(),
            path: relative(path),
            source,
        }
    }

    // ---- public operations -------------------------------------------------------------------

    /// Metadata of `path`, not following a final symlink.
    pub fn lstat(&self, path: impl AsRef<Path>) -> Result<Stat, FsError> {
        let path = path.as_ref();
        self.lstat_io(path).map_err(|e| self.err("stat", path, e))
    }

    /// Metadata of `path`, or `None` when nothing is there.
    pub fn try_lstat(&self, path: impl AsRef<Path>) -> Result<Option<Stat>, FsError> {
        let path = path.as_ref();
        match self.lstat_io(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }

    /// Metadata of what `path` leads to, following symlinks inside the root.
    pub fn stat(&self, path: impl AsRef<Path>) -> Result<Stat, FsError> {
        let path = path.as_ref();
        self.resolve(path, true)
            .and_then(|fd| Ok(rustix::fs::fstat(&fd)?.into()))
            .map_err(|e| self.err("stat", path, e))
    }

    /// Opens a file for reading, following symlinks inside the root (as `COPY --from` reads a
    /// source path).
    pub fn open_file(&self, path: impl AsRef<Path>) -> Result<File, FsError> {
        let path = path.as_ref();
        self.open_read(path, true)
            .map_err(|e| self.err("open", path, e))
    }

    /// Opens a file for reading; a symlink as the final component is an error (`ELOOP`).
    pub fn open_file_nofollow(&self, path: impl AsRef<Path>) -> Result<File, FsError> {
        let path = path.as_ref();
        self.open_read(path, false)
            .map_err(|e| self.err("open", path, e))
    }

    /// The names in a directory (following symlinks inside the root), sorted by bytes.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<Vec<OsString>, FsError> {
        let path = path.as_ref();
        self.read_dir_io(path)
            .map_err(|e| self.err("list directory", path, e))
    }

    /// The target of a symlink, verbatim.
    pub fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf, FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent(path)?;
            read_link_at(dir.as_fd(), &name)
        })()
        .map_err(|e| self.err("read symlink", path, e))
    }

    /// Creates a directory and its missing parents with `mode`; existing ones are left alone.
    pub fn create_dir_all(&self, path: impl AsRef<Path>, mode: u32) -> Result<(), FsError> {
        let path = path.as_ref();
        components(path)
            .and_then(|c| self.mkdir_all(&c, mode))
            .map(drop)
            .map_err(|e| self.err("create directory", path, e))
    }

    /// Creates (or truncates) a regular file for writing with exactly `mode`, creating missing
    /// parent directories (0755). A symlink or other non-directory already there is replaced,
    /// never followed; a directory there is an error.
    pub fn create_file(&self, path: impl AsRef<Path>, mode: u32) -> Result<File, FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent_creating(path)?;
            self.clear(dir.as_fd(), &name, false, false)?;
            self.create_file_at(dir.as_fd(), &name, mode)
        })()
        .map_err(|e| self.err("create file", path, e))
    }

    /// Writes a whole file; see [`Root::create_file`].
    pub fn write_file(
        &self,
        path: impl AsRef<Path>,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), FsError> {
        let path = path.as_ref();
        let mut file = self.create_file(path, mode)?;
        file.write_all(contents)
            .map_err(|e| self.err("write file", path, e))
    }

    /// Creates a symlink at `path` pointing to `target` (stored verbatim), replacing a
    /// non-directory already there; creates missing parents.
    pub fn symlink(&self, target: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent_creating(path)?;
            self.clear(dir.as_fd(), &name, false, false)?;
            rustix::fs::symlinkat(target.as_ref(), &dir, &name)?;
            Ok(())
        })()
        .map_err(|e| self.err("create symlink", path, e))
    }

    /// Creates `path` as a hard link to `existing` (both inside the root; a symlink at
    /// `existing` is linked itself, not followed), replacing a non-directory at `path`.
    pub fn hardlink(
        &self,
        existing: impl AsRef<Path>,
        path: impl AsRef<Path>,
    ) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let (odir, oname) = self.parent(existing.as_ref())?;
            let (dir, name) = self.parent_creating(path)?;
            self.link_at(odir.as_fd(), &oname, dir.as_fd(), &name)
        })()
        .map_err(|e| self.err("create hard link", path, e))
    }

    /// Creates a device node or FIFO (privileged for devices; see [`Sys`]).
    pub fn mknod(
        &self,
        path: impl AsRef<Path>,
        kind: FileKind,
        mode: u32,
        dev: u64,
    ) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent_creating(path)?;
            self.clear(dir.as_fd(), &name, false, false)?;
            self.sys
                .mknodat(dir.as_fd(), &name, kind.file_type(), mode & 0o7777, dev)?;
            self.chmod_at(dir.as_fd(), &name, mode)
        })()
        .map_err(|e| self.err("create device node", path, e))
    }

    /// Changes the owner of `path` itself (a final symlink is not followed).
    pub fn chown(&self, path: impl AsRef<Path>, uid: u32, gid: u32) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent(path)?;
            self.sys.lchownat(dir.as_fd(), &name, uid, gid)
        })()
        .map_err(|e| self.err("change owner of", path, e))
    }

    /// Sets the permission bits (`0o7777`) of `path` itself; on a symlink this is an error
    /// (Linux symlinks have no mode of their own).
    pub fn chmod(&self, path: impl AsRef<Path>, mode: u32) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent(path)?;
            self.chmod_at(dir.as_fd(), &name, mode)
        })()
        .map_err(|e| self.err("change mode of", path, e))
    }

    /// Sets the modification (and access) time of `path` itself.
    pub fn set_mtime(&self, path: impl AsRef<Path>, mtime: Time) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent(path)?;
            set_mtime_at(dir.as_fd(), &name, mtime)
        })()
        .map_err(|e| self.err("set times of", path, e))
    }

    /// Sets an extended attribute on a regular file or directory.
    pub fn set_xattr(
        &self,
        path: impl AsRef<Path>,
        name: impl AsRef<OsStr>,
        value: &[u8],
    ) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let fd = self.open_nofollow_rdonly(path)?;
            self.sys.fsetxattr(fd.as_fd(), name.as_ref(), value)
        })()
        .map_err(|e| self.err("set extended attribute on", path, e))
    }

    /// The extended attributes of a regular file or directory, sorted by name; other kinds
    /// report none.
    pub fn xattrs(&self, path: impl AsRef<Path>) -> Result<Vec<(OsString, Vec<u8>)>, FsError> {
        let path = path.as_ref();
        (|| {
            let kind = self.lstat_io(path)?.kind;
            if !matches!(kind, FileKind::File | FileKind::Dir) {
                return Ok(Vec::new());
            }
            let fd = self.open_nofollow_rdonly(path)?;
            read_xattrs(fd.as_fd())
        })()
        .map_err(|e| self.err("read extended attributes of", path, e))
    }

    /// Removes a file, symlink, device or empty directory (not following a final symlink).
    pub fn remove(&self, path: impl AsRef<Path>) -> Result<(), FsError> {
        let path = path.as_ref();
        (|| {
            let (dir, name) = self.parent(path)?;
            let stat = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
            let flags = if FileKind::from_mode(stat.st_mode) == FileKind::Dir {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            Ok(rustix::fs::unlinkat(&dir, &name, flags)?)
        })()
        .map_err(|e| self.err("remove", path, e))
    }

    /// Removes `path` and everything below it; nothing there is not an error. Symlinks inside
    /// are removed, never followed.
    pub fn remove_all(&self, path: impl AsRef<Path>) -> Result<(), FsError> {
        let path = path.as_ref();
        let result = match self.parent(path) {
            Ok((dir, name)) => remove_tree(dir.as_fd(), &name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.err("remove", path, e))
    }

    // ---- building blocks shared with extraction and snapshots ---------------------------------

    /// An `O_PATH` descriptor of what `path` names; symlinks in parents are followed inside the
    /// root, the final one only with `follow_final`.
    pub(crate) fn resolve(&self, path: &Path, follow_final: bool) -> io::Result<OwnedFd> {
        self.open_final(path, follow_final, OFlags::PATH)
    }

    /// Opens what `path` names with `flags`, resolving inside the root.
    fn open_final(&self, path: &Path, follow_final: bool, flags: OFlags) -> io::Result<OwnedFd> {
        let comps = components(path)?;
        match self.resolver {
            Resolver::Openat2 => {
                let mut flags = flags;
                if !follow_final {
                    flags |= OFlags::NOFOLLOW;
                }
                resolve::openat2_in_root(&self.dir, &resolve::join(&comps), flags, Mode::empty())
            }
            Resolver::Walk => resolve::walk(&self.dir, &comps, follow_final, flags),
        }
    }

    /// Opens `path` for reading only when it is one of `kinds`: an `O_PATH` probe first, so a
    /// device or FIFO is never opened (opening one can block or have side effects).
    fn open_checked(
        &self,
        path: &Path,
        follow_final: bool,
        kinds: &[FileKind],
    ) -> io::Result<OwnedFd> {
        let probe = rustix::fs::fstat(self.resolve(path, follow_final)?)?;
        let kind = FileKind::from_mode(probe.st_mode);
        if !kinds.contains(&kind) {
            return Err(match kind {
                FileKind::Symlink => Errno::LOOP.into(),
                FileKind::Dir => Errno::ISDIR.into(),
                _ => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{kind:?} is not readable here"),
                ),
            });
        }
        let fd = self.open_final(path, follow_final, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd)?;
        if (st.st_ino, st.st_dev) != (probe.st_ino, probe.st_dev) {
            return Err(io::Error::other("the file was replaced while being opened"));
        }
        Ok(fd)
    }

    /// An `O_PATH` descriptor of the directory `comps` leads to (following symlinks).
    fn open_dir_comps(&self, comps: &[&OsStr]) -> io::Result<OwnedFd> {
        match self.resolver {
            Resolver::Openat2 => resolve::openat2_in_root(
                &self.dir,
                &resolve::join(comps),
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
            ),
            Resolver::Walk => {
                let fd = resolve::walk(&self.dir, comps, true, OFlags::PATH)?;
                if FileKind::from_mode(rustix::fs::fstat(&fd)?.st_mode) != FileKind::Dir {
                    return Err(Errno::NOTDIR.into());
                }
                Ok(fd)
            }
        }
    }

    /// The parent directory of `path` (opened inside the root) and the final name.
    pub(crate) fn parent(&self, path: &Path) -> io::Result<(OwnedFd, OsString)> {
        let comps = components(path)?;
        let (name, parent) = comps.split_last().ok_or_else(root_itself)?;
        Ok((self.open_dir_comps(parent)?, name.to_os_string()))
    }

    /// Like [`Root::parent`], creating missing parent directories with mode 0755.
    pub(crate) fn parent_creating(&self, path: &Path) -> io::Result<(OwnedFd, OsString)> {
        let comps = components(path)?;
        let (name, parent) = comps.split_last().ok_or_else(root_itself)?;
        Ok((self.mkdir_all(parent, 0o755)?, name.to_os_string()))
    }

    fn mkdir_all(&self, comps: &[&OsStr], mode: u32) -> io::Result<OwnedFd> {
        match self.open_dir_comps(comps) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !comps.is_empty() => {}
            Err(e) => return Err(e),
        }
        let (name, parent) = comps.split_last().ok_or_else(root_itself)?;
        let dir = self.mkdir_all(parent, mode)?;
        match rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(mode & 0o7777)) {
            Ok(()) => rustix::fs::chmodat(
                &dir,
                *name,
                Mode::from_raw_mode(mode & 0o7777),
                AtFlags::empty(),
            )?,
            // Something is there yet did not resolve to a directory: a dangling symlink or a
            // race. Opening it without following tells which, with the right error.
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = rustix::fs::openat(
            &dir,
            *name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        match FileKind::from_mode(rustix::fs::fstat(&fd)?.st_mode) {
            FileKind::Dir => Ok(fd),
            FileKind::Symlink => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is a symlink to a directory that does not exist",
                    name.display()
                ),
            )),
            _ => Err(Errno::NOTDIR.into()),
        }
    }

    /// Makes room for a new entry at `dir/name`: a directory stays when `keep_dir` (merging, as
    /// layers do), is removed recursively when `remove_dir`, and is an error otherwise; anything
    /// else there is removed. Returns what stays.
    pub(crate) fn clear(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        keep_dir: bool,
        remove_dir: bool,
    ) -> io::Result<Option<Stat>> {
        let stat: Stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s.into(),
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if stat.kind == FileKind::Dir {
            if keep_dir {
                return Ok(Some(stat));
            }
            if !remove_dir {
                return Err(Errno::ISDIR.into());
            }
            remove_tree(dir, name)?;
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
        Ok(None)
    }

    /// Creates a new regular file at `dir/name` (which must not exist) with exactly `mode`.
    pub(crate) fn create_file_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        mode: u32,
    ) -> io::Result<File> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(File::from(fd))
    }

    /// Hard-links `odir/oname` (not following a symlink there) as `dir/name`, replacing a
    /// non-directory at the new name unless it already is the same file.
    pub(crate) fn link_at(
        &self,
        odir: BorrowedFd<'_>,
        oname: &OsStr,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> io::Result<()> {
        let target = rustix::fs::statat(odir, oname, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileKind::from_mode(target.st_mode) == FileKind::Dir {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the link target is a directory",
            ));
        }
        if let Ok(existing) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            && existing.st_ino == target.st_ino
            && existing.st_dev == target.st_dev
        {
            return Ok(());
        }
        self.clear(dir, name, false, true)?;
        rustix::fs::linkat(odir, oname, dir, name, AtFlags::empty())?;
        Ok(())
    }

    /// Sets the mode of `dir/name`, refusing to act through a symlink.
    pub(crate) fn chmod_at(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
        let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileKind::from_mode(stat.st_mode) == FileKind::Symlink {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a symlink has no mode of its own",
            ));
        }
        // fchmodat follows a final symlink, but we just checked nothing is one there, and the
        // parent descriptor pins the directory.
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )?;
        Ok(())
    }

    fn lstat_io(&self, path: &Path) -> io::Result<Stat> {
        let comps = components(path)?;
        match comps.split_last() {
            None => Ok(rustix::fs::fstat(&self.dir)?.into()),
            Some((name, parent)) => {
                let dir = self.open_dir_comps(parent)?;
                Ok(rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW)?.into())
            }
        }
    }

    fn open_read(&self, path: &Path, follow: bool) -> io::Result<File> {
        Ok(File::from(self.open_checked(
            path,
            follow,
            &[FileKind::File],
        )?))
    }

    fn open_nofollow_rdonly(&self, path: &Path) -> io::Result<OwnedFd> {
        self.open_checked(path, false, &[FileKind::File, FileKind::Dir])
    }

    fn read_dir_io(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let comps = components(path)?;
        let dir = self.open_dir_comps(&comps)?;
        list_dir(reopen_dir(&dir)?)
    }
}

fn root_itself() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "the operation needs a path below the root, not the root itself",
    )
}
