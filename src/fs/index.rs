//! The stat index of a rootfs: what every path looked like at one moment, from one `lstat` walk.
//!
//! The walk opens each directory below the one it came from with `O_NOFOLLOW`, so it never
//! leaves the rootfs, and it never crosses into another filesystem (a mount point is left out
//! entirely, like an ignored path: the executor's bind mounts must not end up in layers). It runs
//! on every core: workers take directories from a shared stack, and the per-directory results
//! are stitched together in path order at the end, so the index comes out sorted without a sort.
//!
//! Paths are stored as keys: the components joined with NUL instead of `/`. NUL sorts below
//! every byte a name can hold, so byte order on keys is path-component order (`a`, `a/b`,
//! `a-b`), and comparing two keys is a `memcmp`.
//!
//! Extended attributes are not read during the walk: every change to one (`setxattr`,
//! `removexattr`) updates the inode's ctime, which the index compares, so reading them for every
//! file would double the walk's system calls to learn nothing new. The layer writer reads them
//! for the paths that changed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
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

/// Most walker threads used; more only contend on the same disk and locks.
const MAX_THREADS: usize = 8;

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

/// A path as an index key: components joined with NUL.
pub(crate) type Key = Box<[u8]>;

/// The key of a rootfs path (`..` and `.` are dropped; they never reach here from a walk).
pub(crate) fn key_of(path: &Path) -> Key {
    let mut out = Vec::new();
    for c in root::relative(path).components() {
        if !out.is_empty() {
            out.push(0);
        }
        out.extend_from_slice(c.as_os_str().as_bytes());
    }
    out.into_boxed_slice()
}

/// The rootfs path (relative) of a key.
pub(crate) fn path_of(key: &[u8]) -> PathBuf {
    let bytes: Vec<u8> = key
        .iter()
        .map(|b| if *b == 0 { b'/' } else { *b })
        .collect();
    PathBuf::from(OsString::from_vec(bytes))
}

use std::os::unix::ffi::OsStringExt;

/// Whether `key` is `prefix` or below it.
pub(crate) fn under(key: &[u8], prefix: &[u8]) -> bool {
    key.starts_with(prefix) && (key.len() == prefix.len() || key[prefix.len()] == 0)
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parent.len() + 1 + name.len());
    k.extend_from_slice(parent);
    if !parent.is_empty() {
        k.push(0);
    }
    k.extend_from_slice(name);
    k
}

/// A stat index of a rootfs, in path order (parents before children).
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub(crate) entries: Vec<(Key, Meta)>,
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

    /// The entry for a rootfs path.
    pub fn get(&self, path: &Path) -> Option<&Meta> {
        let key = key_of(path);
        self.entries
            .binary_search_by(|(k, _)| (**k).cmp(&*key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Walks `root` on up to `threads` threads (0: every core), skipping keys for which
    /// `ignored` is true. With `hash_racy`, regular files changed just before the walk get their
    /// content digest recorded.
    pub(crate) fn take(
        root: &Root,
        ignored: &(dyn Fn(&[u8]) -> bool + Sync),
        hash_racy: bool,
        threads: usize,
    ) -> Result<Index, FsError> {
        let taken = now_ns();
        let err = |key: &[u8], source: io::Error| FsError::Snapshot {
            root: root.path().to_path_buf(),
            path: path_of(key),
            source,
        };
        let top = root.resolve(Path::new(""), true).map_err(|e| err(b"", e))?;
        let dev = rustix::fs::fstat(&top)
            .map_err(|e| err(b"", e.into()))?
            .st_dev;
        let top = root::reopen_dir(&top).map_err(|e| err(b"", e))?;
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, MAX_THREADS);
        let shared = Shared {
            queue: Mutex::new(Queue {
                tasks: vec![Task {
                    dir: TaskDir::Open(top),
                    key: Vec::new(),
                }],
                active: 0,
                failed: None,
            }),
            wake: Condvar::new(),
            results: Mutex::new(HashMap::new()),
            ignored,
            dev,
            hash_racy,
            taken,
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(|| shared.work());
            }
            shared.work();
        });
        let queue = shared.queue.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some((key, e)) = queue.failed {
            return Err(err(&key, e));
        }
        let mut results = shared
            .results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let mut entries = Vec::new();
        assemble(&mut results, b"", &mut entries);
        Ok(Index { entries, taken })
    }

    /// Whether `stat` was recorded too close to this index's walk for metadata to be trusted.
    pub(crate) fn is_racy(&self, stat: &Stat) -> bool {
        racy(stat, self.taken)
    }
}

/// Appends `dir`'s children (and theirs) to `out` in path order.
fn assemble(results: &mut HashMap<Vec<u8>, Vec<Child>>, dir: &[u8], out: &mut Vec<(Key, Meta)>) {
    let Some(children) = results.remove(dir) else {
        return;
    };
    for child in children {
        let key = join(dir, &child.name);
        if child.meta.stat.kind == FileKind::Dir {
            out.push((key.clone().into_boxed_slice(), child.meta));
            assemble(results, &key, out);
        } else {
            out.push((key.into_boxed_slice(), child.meta));
        }
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

enum TaskDir {
    Open(OwnedFd),
    /// A subdirectory by name below its parent's descriptor (opened when the task runs, so the
    /// number of open descriptors follows the walk's depth, not its width).
    At(Arc<OwnedFd>, OsString),
}

struct Task {
    dir: TaskDir,
    key: Vec<u8>,
}

struct Child {
    name: Box<[u8]>,
    meta: Meta,
}

struct Queue {
    tasks: Vec<Task>,
    active: usize,
    failed: Option<(Vec<u8>, io::Error)>,
}

struct Shared<'a> {
    queue: Mutex<Queue>,
    wake: Condvar,
    results: Mutex<HashMap<Vec<u8>, Vec<Child>>>,
    ignored: &'a (dyn Fn(&[u8]) -> bool + Sync),
    dev: u64,
    hash_racy: bool,
    taken: i128,
}

impl Shared<'_> {
    fn work(&self) {
        loop {
            let task = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if q.failed.is_some() {
                        return;
                    }
                    if let Some(task) = q.tasks.pop() {
                        q.active += 1;
                        break task;
                    }
                    if q.active == 0 {
                        return;
                    }
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let key = task.key.clone();
            let outcome = self.visit(task);
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.active -= 1;
            match outcome {
                Ok((children, subtasks)) => {
                    q.tasks.extend(subtasks.into_iter().rev());
                    drop(q);
                    self.results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, children);
                }
                Err((key, e)) => {
                    q.failed.get_or_insert((key, e));
                }
            }
            self.wake.notify_all();
        }
    }

    #[allow(clippy::type_complexity)]
    fn visit(&self, task: Task) -> Result<(Vec<Child>, Vec<Task>), (Vec<u8>, io::Error)> {
        let dir = match task.dir {
            TaskDir::Open(fd) => fd,
            TaskDir::At(parent, name) => match rustix::fs::openat(
                &*parent,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Removed or replaced since its parent was listed: not part of this tree.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {
                    return Ok((Vec::new(), Vec::new()));
                }
                Err(e) => return Err((task.key, e.into())),
            },
        };
        let fail = |key: &[u8], e: io::Error| (key.to_vec(), e);
        let names = dir
            .as_fd()
            .try_clone_to_owned()
            .and_then(root::list_dir)
            .map_err(|e| fail(&task.key, e))?;
        let dir = Arc::new(dir);
        let mut children = Vec::with_capacity(names.len());
        let mut subtasks = Vec::new();
        for name in names {
            let key = join(&task.key, name.as_bytes());
            if (self.ignored)(&key) {
                continue;
            }
            let stat: Stat = match rustix::fs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => s.into(),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(fail(&key, e.into())),
            };
            if stat.dev != self.dev {
                continue;
            }
            let link = match stat.kind {
                FileKind::Symlink => {
                    Some(root::read_link_at(dir.as_fd(), &name).map_err(|e| fail(&key, e))?)
                }
                _ => None,
            };
            let content =
                if self.hash_racy && stat.kind == FileKind::File && racy(&stat, self.taken) {
                    Some(hash_at(&dir, &name).map_err(|e| fail(&key, e))?)
                } else {
                    None
                };
            if stat.kind == FileKind::Dir {
                subtasks.push(Task {
                    dir: TaskDir::At(Arc::clone(&dir), name.clone()),
                    key,
                });
            }
            children.push(Child {
                name: name.into_vec().into_boxed_slice(),
                meta: Meta {
                    stat,
                    link,
                    content,
                },
            });
        }
        Ok((children, subtasks))
    }
}

/// sha256 of a regular file below an open directory, never following a symlink.
pub(crate) fn hash_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Digest> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_path_component_order() {
        let mut keys: Vec<Key> = ["a-b", "a/b", "a", "a/b/c", "ab", "a/c"]
            .iter()
            .map(|p| key_of(Path::new(p)))
            .collect();
        keys.sort();
        let paths: Vec<PathBuf> = keys.iter().map(|k| path_of(k)).collect();
        let mut expected: Vec<PathBuf> = ["a-b", "a/b", "a", "a/b/c", "ab", "a/c"]
            .iter()
            .map(PathBuf::from)
            .collect();
        expected.sort();
        assert_eq!(paths, expected);
        assert!(under(&key_of(Path::new("a/b")), &key_of(Path::new("a"))));
        assert!(!under(&key_of(Path::new("ab")), &key_of(Path::new("a"))));
    }
}
