//! The seam for system calls that need privileges: creating device nodes, changing ownership and
//! setting extended attributes.
//!
//! [`RealSys`] makes the calls. Tests substitute a fake (as youki does) to check what the
//! extraction logic does when the calls are refused, without needing an unprivileged user.

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, FileType, Gid, Mode, Uid, XattrFlags};

/// Privileged system calls used by [`Root`](super::Root).
pub trait Sys: Send + Sync + std::fmt::Debug {
    /// `mknodat(dir, name, kind | mode, dev)` for character and block devices and FIFOs.
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        dev: u64,
    ) -> io::Result<()>;

    /// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`: never follows a final symlink.
    fn lchownat(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;

    /// `fchown(fd, uid, gid)` on an open file or directory.
    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()>;

    /// `fsetxattr(fd, name, value, 0)` on an open file or directory.
    fn fsetxattr(&self, fd: BorrowedFd<'_>, name: &OsStr, value: &[u8]) -> io::Result<()>;
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl Sys for RealSys {
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        dev: u64,
    ) -> io::Result<()> {
        rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(mode), dev)?;
        Ok(())
    }

    fn lchownat(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = ids(uid, gid)?;
        rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = ids(uid, gid)?;
        rustix::fs::fchown(fd, Some(uid), Some(gid))?;
        Ok(())
    }

    fn fsetxattr(&self, fd: BorrowedFd<'_>, name: &OsStr, value: &[u8]) -> io::Result<()> {
        rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty())?;
        Ok(())
    }
}

/// `-1` means "leave unchanged" to chown(2); as an owner in a layer it is nonsense.
fn ids(uid: u32, gid: u32) -> io::Result<(Uid, Gid)> {
    if uid == u32::MAX || gid == u32::MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "owner id 4294967295 (-1)",
        ));
    }
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}
