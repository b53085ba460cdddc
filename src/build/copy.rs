//! COPY and ADD with Docker's semantics, between two [`Root`]s: the source (the build context, a
//! stage's rootfs or an image's) and the stage rootfs being built.
//!
//! Rules followed (Docker's documentation and BuildKit's behaviour):
//! - sources are paths from the source root (`..` cannot leave it); wildcards match with Go's
//!   `filepath.Match`; a directory source copies its contents, not itself; the source path itself
//!   follows symlinks (inside its root), symlinks below it are copied as symlinks;
//! - the destination is relative to WORKDIR; it is a directory when it ends in `/`, when there
//!   are several sources, when a source is a directory, or when it already is one;
//! - context files get uid/gid 0, files from a stage or image keep theirs, `--chown` overrides both
//!   (a user alone means the same number as group) and also owns the directories COPY creates;
//!   `--chmod` (octal) overrides modes; mtimes are kept;
//! - `.dockerignore`d context paths do not exist for COPY;
//! - ADD extracts local tar archives (plain, gzip, zstd) into the destination.
//!
//! URLs (ADD) are fetched by the caller, which passes the downloaded file as a source.
//!
//! A COPY runs in two steps: [`plan`] resolves the patterns and walks every match once (hashing
//! file content when the layer cache needs it for the key, which must be known before the
//! instruction runs), then [`apply`] writes what the plan found without walking again. File
//! content goes from source to destination by `copy_file_range`, so with the cache on each file
//! is read once by kbuild (for its hash) and copied by the kernel.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::context::DockerIgnore;
use crate::context::dockerignore::clean;
use crate::digest::{Digest, HashingWriter};
use crate::fs::{FileKind, FsError, Root, Stat};

use super::glob;

/// Where sources come from.
pub struct SourceTree<'a> {
    pub root: Root,
    /// The context's ignore rules; None for stages and images.
    pub ignore: Option<&'a DockerIgnore>,
    /// Keep the source's uid/gid (stages, images) instead of 0:0 (the context).
    pub keep_owner: bool,
    /// "the build context", "stage builder", "image golang:1.22": for messages.
    pub name: String,
}

/// One COPY/ADD, expanded.
pub struct CopyRequest<'a> {
    pub patterns: &'a [String],
    /// Heredoc sources: (file name, content).
    pub inline: &'a [(String, String)],
    pub dest: &'a str,
    pub workdir: &'a str,
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<u32>,
    /// ADD: extract local archives.
    pub unpack: bool,
}

/// A source file as the cache key sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceFile {
    /// Path relative to the source root.
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `sha256:<hex>`, `symlink:<target>` or `dir`.
    pub content: String,
}

/// What a COPY wrote.
#[derive(Debug, Default)]
pub struct Copied {
    /// Destination paths written (each with its subtree).
    pub written: Vec<PathBuf>,
    /// Directories created on the way to a destination (just themselves).
    pub created_dirs: Vec<PathBuf>,
}

/// Why a COPY failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{pattern:?}: not found in {source_name}{}", if *ignored { " (excluded by .dockerignore)" } else { "" })]
    NotFound {
        pattern: String,
        source_name: String,
        ignored: bool,
    },
    #[error(
        "{pattern:?}: no source files were specified: the pattern matches nothing in {source_name}"
    )]
    NoMatch {
        pattern: String,
        source_name: String,
    },
    #[error(transparent)]
    Pattern(#[from] glob::BadPattern),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("copying {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The destination as an absolute path in the rootfs, and whether it names a directory.
pub(super) fn destination(dest: &str, workdir: &str) -> (PathBuf, bool) {
    let dir_hint = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || dest == "..";
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    };
    (PathBuf::from(clean(&format!("/{joined}"))), dir_hint)
}

/// One source path found by [`plan`]: a matched path (symlink followed) or an entry below a
/// matched directory (symlinks kept), with what the copy and the cache key need.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// Path relative to the source root.
    pub rel: PathBuf,
    pub stat: Stat,
    pub content: Content,
    /// A directory's entries (ignored paths left out), sorted by name.
    pub children: Vec<SourceEntry>,
}

/// What a source entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    /// A regular file and, when planned with hashing, its sha256.
    File(Option<Digest>),
    Symlink(PathBuf),
    /// A device node, FIFO or socket: never copied.
    Special,
}

/// The matches of a COPY/ADD's patterns, walked (and hashed) once, before anything is written:
/// the cache key is computed from it and the copy then follows it without walking again.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    matches: Vec<(SourceEntry, bool)>,
    keep_owner: bool,
}

impl CopyPlan {
    /// Every source as the cache key sees it, in copy order: path, mode, the owner the copy
    /// keeps (0:0 for the context, whose owner never reaches the image) and content.
    pub fn sources(&self) -> Vec<SourceFile> {
        fn visit(entry: &SourceEntry, keep_owner: bool, top: bool, out: &mut Vec<SourceFile>) {
            // A matched directory contributes its contents, not itself (Docker's rule).
            if !(top && entry.content == Content::Dir) {
                let (uid, gid) = if keep_owner {
                    (entry.stat.uid, entry.stat.gid)
                } else {
                    (0, 0)
                };
                let content = match &entry.content {
                    Content::Dir => "dir".to_string(),
                    Content::File(Some(d)) => d.to_string(),
                    Content::File(None) => "unhashed".to_string(),
                    Content::Symlink(target) => format!("symlink:{}", target.display()),
                    Content::Special => "special".to_string(),
                };
                out.push(SourceFile {
                    path: entry.rel.display().to_string(),
                    mode: entry.stat.mode & 0o7777,
                    uid,
                    gid,
                    content,
                });
            }
            for child in &entry.children {
                visit(child, keep_owner, false, out);
            }
        }
        let mut out = Vec::new();
        for (entry, _) in &self.matches {
            visit(entry, self.keep_owner, true, &mut out);
        }
        out
    }
}

/// Resolves the patterns in `src` and walks every match; `hash` also reads each regular file
/// through sha256 (for the cache key). `unpack` (ADD) marks local archives for extraction.
pub fn plan(
    src: &SourceTree,
    patterns: &[String],
    unpack: bool,
    hash: bool,
) -> Result<CopyPlan, CopyError> {
    let mut matches = Vec::new();
    for pattern in patterns {
        for (rel, stat) in resolve(src, pattern)? {
            let archive = unpack && stat.kind == FileKind::File && is_archive(&src.root, &rel)?;
            let entry = walk_entry(src, rel, stat, true, hash)?;
            matches.push((entry, archive));
        }
    }
    Ok(CopyPlan {
        matches,
        keep_owner: src.keep_owner,
    })
}

fn walk_entry(
    src: &SourceTree,
    rel: PathBuf,
    stat: Stat,
    top: bool,
    hash: bool,
) -> Result<SourceEntry, CopyError> {
    let mut children = Vec::new();
    let content = match stat.kind {
        FileKind::Dir => {
            for child in sorted(src.root.read_dir(&rel)?) {
                let child_rel = rel.join(&child);
                if src
                    .ignore
                    .is_some_and(|i| i.is_excluded(&child_rel.to_string_lossy()))
                {
                    continue;
                }
                let child_stat = src.root.lstat(&child_rel)?;
                children.push(walk_entry(src, child_rel, child_stat, false, hash)?);
            }
            Content::Dir
        }
        FileKind::File if hash => {
            let file = if top {
                src.root.open_file(&rel)?
            } else {
                src.root.open_file_nofollow(&rel)?
            };
            Content::File(Some(digest_reader(file, &rel)?))
        }
        FileKind::File => Content::File(None),
        FileKind::Symlink => Content::Symlink(src.root.read_link(&rel)?),
        _ => Content::Special,
    };
    Ok(SourceEntry {
        rel,
        stat,
        content,
        children,
    })
}

/// Runs a COPY/ADD from `src` into `dst`, planning it first.
pub fn copy(src: &SourceTree, dst: &Root, req: &CopyRequest) -> Result<Copied, CopyError> {
    let planned = plan(src, req.patterns, req.unpack, false)?;
    apply(src, dst, req, &planned)
}

/// Runs a planned COPY/ADD: writes what `planned` found in `src` into `dst`.
pub fn apply(
    src: &SourceTree,
    dst: &Root,
    req: &CopyRequest,
    planned: &CopyPlan,
) -> Result<Copied, CopyError> {
    let (dest, dir_hint) = destination(req.dest, req.workdir);
    let count = planned.matches.len() + req.inline.len();
    let dest_is_dir = dir_hint
        || count > 1
        || planned
            .matches
            .iter()
            .any(|(e, _)| e.stat.kind == FileKind::Dir)
        || dst.stat(&dest).is_ok_and(|s| s.kind == FileKind::Dir);
    let mut out = Copied::default();
    let mut ctx = Ctx {
        src,
        dst,
        req,
        out: &mut out,
    };
    for (entry, archive) in &planned.matches {
        let rel = &entry.rel;
        if entry.stat.kind == FileKind::Dir {
            ctx.ensure_dir(&dest)?;
            for child in &entry.children {
                let target = dest.join(child.rel.file_name().unwrap_or(child.rel.as_os_str()));
                ctx.copy_entry(child, &target, false)?;
                ctx.out.written.push(target);
            }
            continue;
        }
        let target = if dest_is_dir {
            dest.join(rel.file_name().unwrap_or(rel.as_os_str()))
        } else {
            dest.clone()
        };
        ctx.ensure_parents(&target)?;
        if *archive {
            ctx.ensure_dir(&dest)?;
            let target_root = Root::open(dst.path().join(relative(&dest)))?;
            let file = src.root.open_file(rel)?;
            crate::fs::extract_layer(&target_root, &rel.display().to_string(), file)?;
            ctx.out.written.push(dest.clone());
            continue;
        }
        ctx.copy_entry(entry, &target, true)?;
        ctx.out.written.push(target);
    }
    for (name, content) in req.inline {
        let target = if dest_is_dir {
            dest.join(name)
        } else {
            dest.clone()
        };
        ctx.ensure_parents(&target)?;
        let mode = req.chmod.unwrap_or(0o644);
        dst.write_file(&target, content.as_bytes(), mode)?;
        let (uid, gid) = req.chown.unwrap_or((0, 0));
        dst.chown(&target, uid, gid)?;
        dst.chmod(&target, mode)?;
        ctx.out.written.push(target);
    }
    Ok(out)
}

/// The key sources of heredoc files: their content is the instruction's own.
pub fn inline_sources(req_inline: &[(String, String)], chmod: Option<u32>) -> Vec<SourceFile> {
    req_inline
        .iter()
        .map(|(name, content)| SourceFile {
            path: format!("<<{name}"),
            mode: chmod.unwrap_or(0o644),
            uid: 0,
            gid: 0,
            content: Digest::of(content.as_bytes()).to_string(),
        })
        .collect()
}

/// The source matches of one pattern, as paths relative to the source root with their stat
/// (symlinks followed for the matched path itself).
fn resolve(src: &SourceTree, pattern: &str) -> Result<Vec<(PathBuf, Stat)>, CopyError> {
    let cleaned = clean(&format!("/{pattern}"));
    let rel = cleaned.trim_start_matches('/').to_string();
    if !glob::has_wildcard(&rel) {
        let path = PathBuf::from(if rel.is_empty() { "." } else { rel.as_str() });
        let ignored = !rel.is_empty() && src.ignore.is_some_and(|i| i.is_excluded(&rel));
        let stat = if ignored {
            None
        } else {
            match src.root.stat(&path) {
                Ok(stat) => Some(stat),
                Err(FsError::Path { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    None
                }
                Err(e) => return Err(e.into()),
            }
        };
        return match stat {
            Some(stat) => Ok(vec![(path, stat)]),
            None => Err(CopyError::NotFound {
                pattern: pattern.to_string(),
                source_name: src.name.clone(),
                ignored,
            }),
        };
    }
    let depth = rel.split('/').count();
    let mut found = Vec::new();
    walk_matches(src, Path::new(""), &rel, depth, &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.is_empty() {
        return Err(CopyError::NoMatch {
            pattern: pattern.to_string(),
            source_name: src.name.clone(),
        });
    }
    Ok(found)
}

fn walk_matches(
    src: &SourceTree,
    dir: &Path,
    pattern: &str,
    depth: usize,
    out: &mut Vec<(PathBuf, Stat)>,
) -> Result<(), CopyError> {
    let level = dir.components().count() + 1;
    let prefix: Vec<&str> = pattern.split('/').take(level).collect();
    let prefix = prefix.join("/");
    let listing = if dir.as_os_str().is_empty() {
        src.root.read_dir(".")?
    } else {
        src.root.read_dir(dir)?
    };
    for name in sorted(listing) {
        let path = dir.join(&name);
        let text = path.to_string_lossy();
        if src.ignore.is_some_and(|i| i.is_excluded(&text)) || !glob::matches(&prefix, &text)? {
            continue;
        }
        if level == depth {
            out.push((path.clone(), src.root.stat(&path)?));
        } else if src.root.lstat(&path)?.kind == FileKind::Dir {
            walk_matches(src, &path, pattern, depth, out)?;
        }
    }
    Ok(())
}

fn sorted(mut names: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    names.sort();
    names
}

fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

struct Ctx<'a, 'b> {
    src: &'a SourceTree<'a>,
    dst: &'a Root,
    req: &'a CopyRequest<'a>,
    out: &'b mut Copied,
}

impl Ctx<'_, '_> {
    fn owner(&self, stat: &Stat) -> (u32, u32) {
        match self.req.chown {
            Some(owner) => owner,
            None if self.src.keep_owner => (stat.uid, stat.gid),
            None => (0, 0),
        }
    }

    /// Creates the missing ancestors of `target`, owned as `--chown` says (root otherwise).
    fn ensure_parents(&mut self, target: &Path) -> Result<(), CopyError> {
        if let Some(parent) = target.parent() {
            self.ensure_dir(parent)?;
        }
        Ok(())
    }

    fn ensure_dir(&mut self, dir: &Path) -> Result<(), CopyError> {
        let mut missing = Vec::new();
        for ancestor in dir.ancestors() {
            if ancestor == Path::new("/") || ancestor.as_os_str().is_empty() {
                break;
            }
            match self.dst.try_lstat(ancestor)? {
                Some(_) => break,
                None => missing.push(ancestor.to_path_buf()),
            }
        }
        let (uid, gid) = self.req.chown.unwrap_or((0, 0));
        for dir in missing.into_iter().rev() {
            self.dst.create_dir_all(&dir, 0o755)?;
            self.dst.chown(&dir, uid, gid)?;
            self.out.created_dirs.push(dir);
        }
        Ok(())
    }

    /// Copies one planned entry; `top` follows a symlink at the entry itself.
    fn copy_entry(
        &mut self,
        entry: &SourceEntry,
        target: &Path,
        top: bool,
    ) -> Result<(), CopyError> {
        let stat = &entry.stat;
        let rel = &entry.rel;
        let (uid, gid) = self.owner(stat);
        let mode = self.req.chmod.unwrap_or(stat.mode & 0o7777);
        match &entry.content {
            Content::Dir => {
                match self.dst.try_lstat(target)? {
                    Some(existing) if existing.kind == FileKind::Dir => {}
                    Some(_) => {
                        self.dst.remove_all(target)?;
                        self.dst.create_dir_all(target, mode)?;
                    }
                    None => self.dst.create_dir_all(target, mode)?,
                }
                for child in &entry.children {
                    let name = child.rel.file_name().unwrap_or(child.rel.as_os_str());
                    self.copy_entry(child, &target.join(name), false)?;
                }
            }
            Content::File(_) => {
                if let Some(existing) = self.dst.try_lstat(target)?
                    && existing.kind == FileKind::Dir
                {
                    self.dst.remove_all(target)?;
                }
                let mut input = if top {
                    self.src.root.open_file(rel)?
                } else {
                    self.src.root.open_file_nofollow(rel)?
                };
                let mut output = self.dst.create_file(target, mode)?;
                // File to file: the kernel copies (copy_file_range) without passing the bytes
                // through kbuild; the content was hashed while planning, if at all.
                io::copy(&mut input, &mut output).map_err(io_err(target))?;
            }
            Content::Symlink(link) => {
                if self.dst.try_lstat(target)?.is_some() {
                    self.dst.remove_all(target)?;
                }
                self.dst.symlink(link, target)?;
                self.dst.chown(target, uid, gid)?;
                return Ok(());
            }
            Content::Special => {
                tracing::warn!(
                    "skipping {} in {}: device nodes, FIFOs and sockets are not copied",
                    rel.display(),
                    self.src.name
                );
                return Ok(());
            }
        }
        self.dst.chown(target, uid, gid)?;
        self.dst.chmod(target, mode)?;
        self.dst.set_mtime(target, stat.mtime)?;
        Ok(())
    }
}

/// True when the file starts like an archive ADD extracts.
fn is_archive(root: &Root, rel: &Path) -> Result<bool, CopyError> {
    let mut file = root.open_file(rel)?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).map_err(io_err(rel))? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    Ok(head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &head[257..262] == b"ustar"))
}

fn digest_reader(mut file: std::fs::File, rel: &Path) -> Result<Digest, CopyError> {
    let mut hashing = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut hashing).map_err(io_err(rel))?;
    Ok(hashing.finish().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_follow_workdir_and_trailing_slashes() {
        assert_eq!(
            destination("app", "/srv"),
            (PathBuf::from("/srv/app"), false)
        );
        assert_eq!(
            destination("app/", "/srv"),
            (PathBuf::from("/srv/app"), true)
        );
        assert_eq!(destination(".", "/srv"), (PathBuf::from("/srv"), true));
        assert_eq!(
            destination("/abs/x", "/srv"),
            (PathBuf::from("/abs/x"), false)
        );
        assert_eq!(destination("../../x", "/srv"), (PathBuf::from("/x"), false));
    }

    fn tree(dir: &Path, keep_owner: bool) -> SourceTree<'static> {
        SourceTree {
            root: Root::open(dir).unwrap(),
            ignore: None,
            keep_owner,
            name: "test".into(),
        }
    }

    #[test]
    fn plans_list_sources_once_with_content_and_copy_what_they_list() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("app/sub")).unwrap();
        std::fs::write(src.path().join("app/a.txt"), b"a").unwrap();
        std::fs::write(src.path().join("app/sub/b.txt"), b"b").unwrap();
        std::os::unix::fs::symlink("a.txt", src.path().join("app/link")).unwrap();
        let patterns = vec!["app".to_string()];
        let planned = plan(&tree(src.path(), false), &patterns, false, true).unwrap();
        let sources = planned.sources();
        let listed: Vec<(&str, &str)> = sources
            .iter()
            .map(|f| (f.path.as_str(), f.content.as_str()))
            .collect();
        let a = Digest::of(b"a").to_string();
        let b = Digest::of(b"b").to_string();
        assert_eq!(
            listed,
            [
                ("app/a.txt", a.as_str()),
                ("app/link", "symlink:a.txt"),
                ("app/sub", "dir"),
                ("app/sub/b.txt", b.as_str()),
            ],
            "the matched directory itself is not a source, its contents are"
        );
        assert!(sources.iter().all(|f| (f.uid, f.gid) == (0, 0)));
        let unhashed = plan(&tree(src.path(), true), &patterns, false, false).unwrap();
        assert!(unhashed.sources().iter().any(|f| f.content == "unhashed"));

        let dst = tempfile::tempdir().unwrap();
        let root = Root::open(dst.path()).unwrap();
        let request = CopyRequest {
            patterns: &patterns,
            inline: &[],
            dest: "/srv/",
            workdir: "/",
            chown: None,
            chmod: None,
            unpack: false,
        };
        apply(&tree(src.path(), false), &root, &request, &planned).unwrap();
        assert_eq!(
            std::fs::read(dst.path().join("srv/sub/b.txt")).unwrap(),
            b"b"
        );
        assert_eq!(
            std::fs::read_link(dst.path().join("srv/link")).unwrap(),
            PathBuf::from("a.txt")
        );
    }
}
