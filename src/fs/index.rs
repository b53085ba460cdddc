//! The stat index of a rootfs: what every path looked like at one moment, from one `lstat` walk.
//!
//! The walk opens each directory below the one it came from with `O_NOFOLLOW`, so it never
//! leaves the rootfs, and it never crosses into another filesystem (a mount point is left out
//! entirely, like an ignored path: the executor's bind mounts must not end up in layers).
//!
//! Extended attributes are not read during the walk: every change to one (`setxattr`,
//! `removexattr`) updates the inode's ctime, which the index compares, so reading them for every
//! file would double the walk's system calls to learn nothing new. The layer writer reads them
//! for the paths that changed.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use super::error::FsError;
use super::root::{self, FileKind, Root, Stat, Time};
use crate::digest::Digest;

/// A timestamp this close to the start of a walk may share its clock tick with a later change,
/// so metadata alone cannot prove the file unchanged ("racy", as git calls it).
const RACY_WINDOW_NS: i128 = 100_000_000;

/// What the index knows about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub stat: Stat,
    /// A symlink's target.
    pub link: Option<PathBuf>,
    /// Content digest, recorded in `full` mode for regular files whose ctime is too close to the
    /// walk to be trusted; compared when their metadata looks unchanged.
    pub content: Option<Digest>,
}

/// A stat index of a rootfs, in path order (parents before children).
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub(crate) entries: BTreeMap<PathBuf, Meta>,
    /// When the walk started.
    pub(crate) taken: i128,
}

impl Index {
    /// Number of paths indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the rootfs was empty (or entirely ignored).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for a rootfs path (relative, without a leading `/`).
    pub fn get(&self, path: &Path) -> Option<&Meta> {
        self.entries.get(path)
    }

    /// Walks `root`, skipping paths for which `ignored` is true. With `hash_racy`, regular files
    /// changed just before the walk get their content digest recorded.
    pub(crate) fn take(
        root: &Root,
        ignored: &dyn Fn(&Path) -> bool,
        hash_racy: bool,
    ) -> Result<Index, FsError> {
        let taken = now_ns();
        let mut entries = Vec::new();
        let err = |path: &Path, source: io::Error| FsError::Snapshot {
            root: root.path().to_path_buf(),
            path: path.to_path_buf(),
            source,
        };
        let top = root
            .resolve(Path::new(""), true)
            .map_err(|e| err(Path::new(""), e))?;
        let dev = rustix::fs::fstat(&top)
            .map_err(|e| err(Path::new(""), e.into()))?
            .st_dev;
        let top = root::reopen_dir(&top).map_err(|e| err(Path::new(""), e))?;
        let mut walker = Walker {
            ignored,
            dev,
            hash_racy,
            taken,
            out: &mut entries,
        };
        walker
            .visit(top, Path::new(""))
            .map_err(|(p, e)| err(&p, e))?;
        Ok(Index {
            entries: entries.into_iter().collect(),
            taken,
        })
    }

    /// Whether `meta` was recorded too close to this index's walk for metadata to be trusted.
    pub(crate) fn is_racy(&self, meta: &Stat) -> bool {
        racy(meta, self.taken)
    }
}

fn racy(stat: &Stat, taken: i128) -> bool {
    let ns = |t: Time| i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec);
    // ctime only: user space cannot set it, while an mtime can be anywhere.
    ns(stat.ctime) + RACY_WINDOW_NS >= taken
}

pub(crate) fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

struct Walker<'a> {
    ignored: &'a dyn Fn(&Path) -> bool,
    dev: u64,
    hash_racy: bool,
    taken: i128,
    out: &'a mut Vec<(PathBuf, Meta)>,
}

impl Walker<'_> {
    fn visit(&mut self, dir: OwnedFd, rel: &Path) -> Result<(), (PathBuf, io::Error)> {
        let names = root::list_dir(
            dir.as_fd()
                .try_clone_to_owned()
                .map_err(|e| (rel.to_path_buf(), e))?,
        )
        .map_err(|e| (rel.to_path_buf(), e))?;
        for name in names {
            let path = rel.join(&name);
            if (self.ignored)(&path) {
                continue;
            }
            let fail = |e: io::Error| (path.clone(), e);
            let stat: Stat = match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => s.into(),
                // Gone since the directory was listed: it is not part of this tree.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(fail(e.into())),
            };
            if stat.dev != self.dev {
                continue;
            }
            let link = match stat.kind {
                FileKind::Symlink => Some(root::read_link_at(dir.as_fd(), &name).map_err(fail)?),
                _ => None,
            };
            let content =
                if self.hash_racy && stat.kind == FileKind::File && racy(&stat, self.taken) {
                    Some(hash_at(&dir, &name).map_err(fail)?)
                } else {
                    None
                };
            self.out.push((
                path.clone(),
                Meta {
                    stat,
                    link,
                    content,
                },
            ));
            if stat.kind == FileKind::Dir {
                let sub = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail(e.into()))?;
                self.visit(sub, &path)?;
            }
        }
        Ok(())
    }
}

/// sha256 of a regular file below an open directory, never following a symlink.
pub(crate) fn hash_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<Digest> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    hash_reader(std::fs::File::from(fd))
}

pub(crate) fn hash_reader(mut r: impl Read) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Digest::from_bytes(hasher.finalize().into()))
}
