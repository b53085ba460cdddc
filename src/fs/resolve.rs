//! Resolving a path inside a root directory, as if that directory were `/`.
//!
//! Two implementations of the same rule: `openat2(RESOLVE_IN_ROOT)`, where the kernel clamps
//! every `..` and absolute symlink to the root, and [`walk`], a component-by-component walk over
//! `O_PATH|O_NOFOLLOW` descriptors that reads each symlink itself and restarts absolute ones at
//! the root. The walk keeps the descriptors of the directories it went through, so `..` returns to
//! the directory it came from rather than asking the filesystem (which a concurrent rename could
//! have moved outside the root). Both are tested against the same cases.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed in one resolution before giving up with `ELOOP` (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Opens `path` below `root` with openat2, clamped to the root. `path` must be relative.
pub(crate) fn openat2_in_root(
    root: &OwnedFd,
    path: &OsStr,
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let path: &OsStr = if path.is_empty() {
        OsStr::new(".")
    } else {
        path
    };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    // EAGAIN means a rename raced with a `..`; the kernel asks the caller to retry.
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root, path, flags | OFlags::CLOEXEC, mode, resolve) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// True when this kernel has openat2 with `RESOLVE_IN_ROOT` and lets us call it.
pub(crate) fn openat2_available(root: &OwnedFd) -> bool {
    openat2_in_root(
        root,
        OsStr::new("."),
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .is_ok()
}

/// Resolves `components` below `root` by walking, returning a descriptor of the result opened
/// with `final_flags` (`O_PATH` to only name it).
///
/// Symlinks in every component are followed inside the root; the final one only when
/// `follow_final`. `..` never climbs above the root.
pub(crate) fn walk(
    root: &OwnedFd,
    components: &[&OsStr],
    follow_final: bool,
    final_flags: OFlags,
) -> io::Result<OwnedFd> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut queue: VecDeque<OsString> = components.iter().map(|c| c.to_os_string()).collect();
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        if name.is_empty() || name == "." {
            continue;
        }
        if name == ".." {
            stack.pop();
            continue;
        }
        let cur = stack.last().unwrap_or(root);
        let fd = rustix::fs::openat(
            cur,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        let is_last = queue.iter().all(|c| c.is_empty() || c == ".");
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Symlink if !is_last || follow_final => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?.into_bytes();
                if target.first() == Some(&b'/') {
                    stack.clear();
                }
                for part in target.split(|b| *b == b'/').rev() {
                    queue.push_front(OsString::from_vec(part.to_vec()));
                }
            }
            FileType::Directory => stack.push(fd),
            _ if is_last && final_flags == OFlags::PATH => return Ok(fd),
            _ if is_last => {
                // The same name below the same directory descriptor: no other path is resolved.
                return Ok(rustix::fs::openat(
                    cur,
                    &name,
                    final_flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?);
            }
            _ => return Err(Errno::NOTDIR.into()),
        }
    }
    let dir = match stack.pop() {
        Some(fd) => fd,
        None => root.as_fd().try_clone_to_owned()?,
    };
    if final_flags == OFlags::PATH {
        return Ok(dir);
    }
    Ok(rustix::fs::openat(
        &dir,
        ".",
        final_flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Joins components with `/` into one relative path for openat2.
pub(crate) fn join(components: &[&OsStr]) -> OsString {
    let mut out = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    OsString::from_vec(out)
}
