//! Describing a directory tree for comparisons: every path's kind, mode, owner, mtime, content,
//! link target, device number, xattrs and hard-link group, as a test would check by hand.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: Vec<u8>,
    pub link: String,
    pub rdev: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The first path (in sorted order) sharing this inode, when another path does.
    pub hardlink_of: Option<String>,
}

/// Every path under `dir` (relative, sorted), not following symlinks.
pub fn tree(dir: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, String> = HashMap::new();
    walk(dir, dir, &mut out, &mut inodes);
    out
}

fn walk(
    base: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut HashMap<u64, String>,
) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let md = std::fs::symlink_metadata(&path).unwrap();
        let rel = path
            .strip_prefix(base)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let hardlink_of = if !ft.is_dir() && md.nlink() > 1 {
            match inodes.get(&md.ino()) {
                Some(first) => Some(first.clone()),
                None => {
                    inodes.insert(md.ino(), rel.clone());
                    None
                }
            }
        } else {
            None
        };
        let mut xattrs = Vec::new();
        if ft.is_file() || ft.is_dir() {
            for name in xattr_names(&path) {
                let value = xattr_get(&path, &name);
                xattrs.push((name, value));
            }
        }
        out.insert(
            rel.clone(),
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                content: if ft.is_file() {
                    std::fs::read(&path).unwrap()
                } else {
                    Vec::new()
                },
                link: if ft.is_symlink() {
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                } else {
                    String::new()
                },
                rdev: md.rdev(),
                xattrs,
                hardlink_of,
            },
        );
        if ft.is_dir() {
            walk(base, &path, out, inodes);
        }
    }
}

fn xattr_names(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut buf[..]).unwrap_or(0);
    let mut names: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    names
}

fn xattr_get(path: &Path, name: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).unwrap();
    buf.truncate(n);
    buf
}

/// A snapshot of everything that must not change: metadata at nanosecond precision, link counts
/// and content, for every path under `dir` except `skip`.
pub fn sentinel(dir: &Path, skip: &Path) -> BTreeMap<String, (Node, i64, u64, u64)> {
    tree(dir)
        .into_iter()
        .filter(|(k, _)| !dir.join(k).starts_with(skip))
        .map(|(k, v)| {
            let md = std::fs::symlink_metadata(dir.join(&k)).unwrap();
            (k, (v, md.mtime_nsec(), md.nlink(), md.ino()))
        })
        .collect()
}
