//! Snapshots: what a build step changed in a rootfs, at the cost of one `lstat` walk.
//!
//! A [`Snapshotter`] holds the [`Index`] of the rootfs as the last step left it. After the next
//! step, [`Snapshotter::snapshot`] walks again and compares path by path (both walks come out in
//! path order, so the comparison is a merge, not a lookup per path); the new walk becomes the
//! index for the step after. A path counts as changed when any of its inode, ctime (not for
//! directories, whose ctime moves with every entry added or removed, entries that are compared
//! themselves), mtime, size, mode, owner, device number, kind or link target differs. ctime
//! cannot be set from user
//! space, so a step that rewrites a file and restores its mtime is still caught; extended
//! attribute changes update ctime too.
//!
//! Snapshot modes (Kaniko's `--snapshot-mode`):
//! - `full` (the default): the metadata comparison, plus a content comparison where metadata
//!   cannot decide: a regular file whose ctime fell within 100 ms of the previous walk may have
//!   been rewritten within the same clock tick; its content digest is recorded at index time and
//!   compared afterwards. Kaniko's `full` hashes every file instead; kbuild gets the same answer
//!   for the cost of the files that actually changed.
//! - `redo` and `time`: the metadata comparison only. Kaniko's `time` looks at mtime alone and
//!   misses `chmod`/`chown`; kbuild does not offer that weaker comparison, since the full
//!   metadata costs nothing more.
//!
//! Deleted paths become whiteouts (only the topmost: deleting a directory covers its contents);
//! a path whose kind changed (a directory replaced by a file or the reverse) is written anew;
//! a directory removed and recreated (a new inode) is written with an opaque whiteout and all its
//! current contents, so nothing of the lower directory survives.
//!
//! Ignored paths (`--ignore-path`, `/var/run` under `--ignore-var-run`, and whatever the
//! executor adds, such as the mount points it provides during a RUN) are left out of the walk:
//! they never appear in a layer, as added, changed or deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::FsError;
use super::index::{self, Index, Key, Meta, key_of, path_of, under};
use super::root::{self, FileKind, Root};

/// Kaniko's `--snapshot-mode` values; see the module docs for what each does in kbuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    #[default]
    Full,
    Redo,
    Time,
}

/// Rootfs paths left out of snapshots, with everything below them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreList {
    paths: Vec<PathBuf>,
    keys: Vec<Key>,
}

impl IgnoreList {
    /// An empty list.
    pub fn new() -> IgnoreList {
        IgnoreList::default()
    }

    /// The list the build flags describe: `/var/run` when `ignore_var_run`, plus every
    /// `--ignore-path`.
    pub fn from_flags<S: AsRef<str>>(ignore_var_run: bool, ignore_paths: &[S]) -> IgnoreList {
        let mut list = IgnoreList::new();
        if ignore_var_run {
            list.add("/var/run");
        }
        for p in ignore_paths {
            list.add(p.as_ref());
        }
        list
    }

    /// Adds a rootfs path (absolute or relative to the root; `..` is dropped).
    pub fn add(&mut self, path: impl AsRef<Path>) -> &mut Self {
        let rel = root::relative(path.as_ref());
        if !rel.as_os_str().is_empty() && !self.paths.contains(&rel) {
            self.keys.push(key_of(&rel));
            self.paths.push(rel);
        }
        self
    }

    /// Whether a relative rootfs path is ignored.
    pub fn contains(&self, rel: &Path) -> bool {
        self.paths.iter().any(|p| rel.starts_with(p))
    }

    fn contains_key(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|p| under(key, p))
    }

    /// The ignored paths, relative to the root.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

/// How a path differs from the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// New path: written in full.
    Added,
    /// Existing path with new metadata or content (or a new kind): written in full.
    Changed,
    /// Removed path: written as a whiteout.
    Deleted,
    /// A directory removed and recreated: written with an opaque whiteout, followed by all of
    /// its current contents.
    Opaque,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// What the path looks like now (`None` for deletions).
    pub meta: Option<Meta>,
}

/// The paths a step changed, in path order (parents before children), relative to the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    entries: BTreeMap<PathBuf, Change>,
}

impl Changes {
    /// No changes.
    pub fn new() -> Changes {
        Changes::default()
    }

    /// True when the step changed nothing: there is no layer to write.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of changed paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The changes in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Change)> {
        self.entries.iter().map(|(p, c)| (p.as_path(), c))
    }

    /// The change recorded for a path (relative, no leading `/`).
    pub fn get(&self, path: &Path) -> Option<&Change> {
        self.entries.get(path)
    }

    /// How many changes are of `kind`.
    pub fn count(&self, kind: ChangeKind) -> u64 {
        self.entries.values().filter(|c| c.kind == kind).count() as u64
    }

    /// Records a change (replacing an earlier one for the same path).
    pub fn insert(&mut self, path: impl AsRef<Path>, change: Change) {
        self.entries.insert(root::relative(path.as_ref()), change);
    }

    /// Changes for paths the caller wrote itself (COPY, ADD, WORKDIR), at a cost proportional to
    /// those paths: each is looked up with `lstat`, and a directory brings its whole subtree
    /// when `recursive`. Paths that no longer exist become deletions.
    pub fn from_paths<P: AsRef<Path>>(
        root: &Root,
        paths: impl IntoIterator<Item = P>,
        recursive: bool,
    ) -> Result<Changes, FsError> {
        let mut changes = Changes::new();
        for p in paths {
            changes.add_path(root, p.as_ref(), recursive, ChangeKind::Added, &|_| false)?;
        }
        Ok(changes)
    }

    fn add_path(
        &mut self,
        root: &Root,
        path: &Path,
        recursive: bool,
        kind: ChangeKind,
        ignored: &dyn Fn(&Path) -> bool,
    ) -> Result<(), FsError> {
        let rel = root::relative(path);
        if rel.as_os_str().is_empty() || ignored(&rel) {
            return Ok(());
        }
        let Some(stat) = root.try_lstat(&rel)? else {
            self.entries.insert(
                rel,
                Change {
                    kind: ChangeKind::Deleted,
                    meta: None,
                },
            );
            return Ok(());
        };
        let link = match stat.kind {
            FileKind::Symlink => Some(root.read_link(&rel)?),
            _ => None,
        };
        let meta = Meta {
            stat,
            link,
            content: None,
        };
        self.entries.insert(
            rel.clone(),
            Change {
                kind,
                meta: Some(meta),
            },
        );
        if recursive && stat.kind == FileKind::Dir {
            for name in root.read_dir(&rel)? {
                self.add_path(root, &rel.join(name), true, kind, ignored)?;
            }
        }
        Ok(())
    }
}

/// Finds what each build step changed; see the module docs.
#[derive(Debug)]
pub struct Snapshotter {
    mode: SnapshotMode,
    ignore: IgnoreList,
    index: Index,
}

impl Snapshotter {
    /// Indexes the rootfs as it is now (before the first step).
    pub fn new(
        root: &Root,
        mode: SnapshotMode,
        ignore: IgnoreList,
    ) -> Result<Snapshotter, FsError> {
        let started = std::time::Instant::now();
        let full = mode == SnapshotMode::Full;
        let index = Index::take(root, &|k| ignore.contains_key(k), full, 0)?;
        tracing::info!(
            "indexed {} paths of {} in {:.2}s",
            index.len(),
            root.path().display(),
            started.elapsed().as_secs_f64()
        );
        Ok(Snapshotter {
            mode,
            ignore,
            index,
        })
    }

    /// The index of the rootfs as of the last snapshot.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The ignore list in force.
    pub fn ignore_list(&self) -> &IgnoreList {
        &self.ignore
    }

    /// Changes the ignore list, for example to add a mount point one RUN gets. Paths ignored
    /// now but indexed before are neither reported nor whited out; they are dropped from the
    /// index at the next snapshot.
    pub fn ignore_list_mut(&mut self) -> &mut IgnoreList {
        &mut self.ignore
    }

    /// Walks the rootfs, returns what changed since the last snapshot, and makes the new walk
    /// the index for the next one.
    pub fn snapshot(&mut self, root: &Root) -> Result<Changes, FsError> {
        let started = std::time::Instant::now();
        let full = self.mode == SnapshotMode::Full;
        let ignore = &self.ignore;
        let new = Index::take(root, &|k| ignore.contains_key(k), full, 0)?;
        let changes = diff(root, &self.index, &new, full, &|k| ignore.contains_key(k))?;
        tracing::info!(
            "snapshot of {} paths: {} added, {} changed, {} deleted in {:.2}s",
            new.len(),
            changes.count(ChangeKind::Added),
            changes.count(ChangeKind::Changed) + changes.count(ChangeKind::Opaque),
            changes.count(ChangeKind::Deleted),
            started.elapsed().as_secs_f64()
        );
        self.index = new;
        Ok(changes)
    }

    /// The changes for paths the caller wrote itself (see [`Changes::from_paths`]), classified
    /// against the index (added or changed), which is updated for those paths so the next
    /// [`Snapshotter::snapshot`] does not report them again. Costs what the paths cost.
    pub fn record<P: AsRef<Path>>(
        &mut self,
        root: &Root,
        paths: impl IntoIterator<Item = P>,
        recursive: bool,
    ) -> Result<Changes, FsError> {
        let mut changes = Changes::new();
        let ignore = &self.ignore;
        for p in paths {
            changes.add_path(root, p.as_ref(), recursive, ChangeKind::Added, &|r| {
                ignore.contains(r)
            })?;
        }
        // Applied through a map: a COPY records a handful of paths, and rebuilding the sorted
        // index once per call costs a few milliseconds even for 100k paths.
        let mut map: BTreeMap<Key, Meta> = std::mem::take(&mut self.index.entries)
            .into_iter()
            .collect();
        for (path, change) in changes.entries.iter_mut() {
            let key = key_of(path);
            let existed = map.contains_key(&key);
            // What the index holds below a path that is gone or no longer a directory is gone.
            if change
                .meta
                .as_ref()
                .is_none_or(|m| m.stat.kind != FileKind::Dir)
            {
                let below: Vec<Key> = map
                    .range(key.clone()..)
                    .take_while(|(k, _)| under(k, &key))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in below {
                    map.remove(&k);
                }
            }
            if let Some(meta) = &change.meta {
                if existed {
                    change.kind = ChangeKind::Changed;
                }
                map.insert(key, meta.clone());
            }
        }
        // The layer carries the parent directories with their current metadata, so the index
        // takes that metadata too: their new mtimes are not a change for the next snapshot.
        for path in changes.entries.keys() {
            for p in path.ancestors().skip(1) {
                if p.as_os_str().is_empty() || changes.entries.contains_key(p) {
                    break;
                }
                if let Some(stat) = root.try_lstat(p)? {
                    let meta = Meta {
                        stat,
                        link: None,
                        content: None,
                    };
                    map.insert(key_of(p), meta);
                }
            }
        }
        self.index.entries = map.into_iter().collect();
        Ok(changes)
    }
}

/// Compares two indexes of the same rootfs, in one ordered pass.
fn diff(
    root: &Root,
    old: &Index,
    new: &Index,
    full: bool,
    ignored: &dyn Fn(&[u8]) -> bool,
) -> Result<Changes, FsError> {
    use std::cmp::Ordering;
    let mut out = BTreeMap::new();
    let (mut i, mut j) = (0, 0);
    // Below this key, old-only entries are covered by a whiteout or a replacement.
    let mut covered: Option<&[u8]> = None;
    // Below this key (a recreated directory), every current entry is written.
    let mut opaque: Option<&[u8]> = None;
    let below = |k: &[u8], prefix: Option<&[u8]>| prefix.is_some_and(|p| under(k, p));
    let change = |kind, meta: Option<&Meta>| Change {
        kind,
        meta: meta.cloned(),
    };
    loop {
        let order = match (old.entries.get(i), new.entries.get(j)) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => {
                let (key, meta) = &old.entries[i];
                i += 1;
                if below(key, covered) || below(key, opaque) || ignored(key) {
                    continue;
                }
                out.insert(path_of(key), change(ChangeKind::Deleted, None));
                if meta.stat.kind == FileKind::Dir {
                    covered = Some(key);
                }
            }
            Ordering::Greater => {
                let (key, meta) = &new.entries[j];
                j += 1;
                out.insert(path_of(key), change(ChangeKind::Added, Some(meta)));
            }
            Ordering::Equal => {
                let (key, was) = &old.entries[i];
                let (_, now) = &new.entries[j];
                i += 1;
                j += 1;
                let (a, b) = (&was.stat, &now.stat);
                if a.kind != b.kind {
                    out.insert(path_of(key), change(ChangeKind::Changed, Some(now)));
                    if a.kind == FileKind::Dir {
                        covered = Some(key);
                    }
                } else if a.kind == FileKind::Dir && (a.ino, a.dev) != (b.ino, b.dev) {
                    out.insert(path_of(key), change(ChangeKind::Opaque, Some(now)));
                    opaque = Some(key);
                } else if below(key, opaque) {
                    out.insert(path_of(key), change(ChangeKind::Added, Some(now)));
                } else if metadata_differs(was, now)
                    || (full
                        && b.kind == FileKind::File
                        && old.is_racy(a)
                        && content_differs(root, &path_of(key), was)?)
                {
                    out.insert(path_of(key), change(ChangeKind::Changed, Some(now)));
                }
            }
        }
    }
    Ok(Changes { entries: out })
}

fn metadata_differs(was: &Meta, now: &Meta) -> bool {
    let (a, b) = (&was.stat, &now.stat);
    // A directory's ctime moves whenever an entry is added or removed, including the mount
    // points the RUN sandbox creates and removes again; the entries themselves are compared one
    // by one, so for directories ctime would only report kbuild's own bookkeeping.
    let ctime_differs = a.ctime != b.ctime && b.kind != FileKind::Dir;
    ctime_differs
        || (a.ino, a.dev, a.mtime, a.size) != (b.ino, b.dev, b.mtime, b.size)
        || (a.mode, a.uid, a.gid, a.rdev, a.nlink) != (b.mode, b.uid, b.gid, b.rdev, b.nlink)
        || was.link != now.link
}

fn content_differs(root: &Root, path: &Path, was: &Meta) -> Result<bool, FsError> {
    let Some(before) = was.content else {
        return Ok(false);
    };
    let now = root.open_file_nofollow(path).and_then(|f| {
        index::hash_reader(f).map_err(|source| FsError::Snapshot {
            root: root.path().to_path_buf(),
            path: path.to_path_buf(),
            source,
        })
    })?;
    Ok(now != before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn full_mode_compares_content_when_metadata_cannot_decide() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"same size A").unwrap();
        let root = Root::open(dir.path()).unwrap();
        // Indexed right after the write: too close to trust, so the digest is recorded.
        let old = Index::take(&root, &|_| false, true, 0).unwrap();
        assert!(old.get(Path::new("f")).unwrap().content.is_some());
        // A rewrite within the same clock tick looks like this: same stat, other content.
        let mut tampered = old.clone();
        tampered.entries[0].1.content = Some(Digest::of(b"other"));
        let now = Index::take(&root, &|_| false, true, 0).unwrap();
        assert!(
            diff(&root, &old, &now, true, &|_| false)
                .unwrap()
                .is_empty()
        );
        let found = diff(&root, &tampered, &now, true, &|_| false).unwrap();
        assert_eq!(found.get(Path::new("f")).unwrap().kind, ChangeKind::Changed);
        assert!(
            diff(&root, &tampered, &now, false, &|_| false)
                .unwrap()
                .is_empty(),
            "redo trusts metadata"
        );
    }

    #[test]
    fn ignore_list_matches_whole_components() {
        let list = IgnoreList::from_flags(true, &["/proc/", "etc/resolv.conf"]);
        assert!(list.contains(Path::new("var/run")));
        assert!(list.contains(Path::new("var/run/x.pid")));
        assert!(list.contains(Path::new("proc/1/status")));
        assert!(list.contains(Path::new("etc/resolv.conf")));
        assert!(!list.contains(Path::new("var/runner")));
        assert!(!list.contains(Path::new("etc")));
        assert!(!IgnoreList::from_flags::<&str>(false, &[]).contains(Path::new("var/run")));
    }
}
