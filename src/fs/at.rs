//! Helpers acting on directory descriptors (`*at` system calls), shared by [`Root`], extraction,
//! the index walk and the layer writer. None of them resolves a path with more than one
//! component: callers hold the directory, these act on one name inside it.
//!
//! [`Root`]: super::Root

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::root::{FileKind, Time};

/// A readable descriptor of the directory an `O_PATH` descriptor names (no path resolved again).
pub(crate) fn reopen_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in an open directory, sorted by bytes, without `.` and `..`.
pub(crate) fn list_dir(fd: OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Removes `dir/name` and everything below it without following any symlink.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileKind::from_mode(stat.st_mode) != FileKind::Dir {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let names = list_dir(sub.as_fd().try_clone_to_owned()?)?;
    for child in names {
        remove_tree(sub.as_fd(), &child)?;
    }
    drop(sub);
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<PathBuf> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
}

pub(crate) fn set_mtime_at(dir: BorrowedFd<'_>, name: &OsStr, mtime: Time) -> io::Result<()> {
    let t = Timespec {
        tv_sec: mtime.sec,
        tv_nsec: mtime.nsec.into(),
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

pub(crate) fn set_mtime_fd(fd: BorrowedFd<'_>, mtime: Time) -> io::Result<()> {
    let t = Timespec {
        tv_sec: mtime.sec,
        tv_nsec: mtime.nsec.into(),
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?;
    Ok(())
}

/// All extended attributes of an open file, sorted by name.
pub(crate) fn read_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let size = match rustix::fs::flistxattr_query(fd) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut list = vec![0u8; size];
    let n = rustix::fs::flistxattr(fd, &mut list[..])?;
    list.truncate(n);
    let mut out = Vec::new();
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let len = match rustix::fs::fgetxattr_query(fd, name) {
            Ok(n) => n,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; len];
        let n = rustix::fs::fgetxattr(fd, name, &mut value[..])?;
        value.truncate(n);
        out.push((name.to_os_string(), value));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

/// The normal components of a rootfs path: `/` and `.` dropped, `..` refused.
pub(crate) fn components(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a rootfs path must not contain `..`",
                ));
            }
        }
    }
    Ok(out)
}

/// `path` without a leading `/`, for messages and keys.
pub(crate) fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}
