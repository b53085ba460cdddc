//! What a cache layer holds, read as a stream: blob -> sha256 (digest check) -> gzip/zstd
//! decoder -> sha256 (diffID) -> tar header reader. Only headers are looked at and file data is
//! skipped, so memory stays flat whatever the layer's size; the whole blob is still read, so
//! both digests are verified once the walk ends.
//!
//! Whiteouts are reported as what they mean: `.wh.NAME` deletes `NAME`, `.wh..wh..opq` hides
//! everything the layers below had in its directory.

use std::io::{self, Cursor, Read};

use globset::GlobMatcher;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::DebugError;
use crate::digest::Digest;
use crate::fs::{TarEntryHeader, TarEntryKind, TarReader};

/// What a layer entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// `.wh.NAME`: the layer deletes `path`.
    Whiteout,
    /// `.wh..wh..opq`: the layer hides what lower layers had in the directory `path`.
    Opaque,
}

impl FileType {
    /// One character, as `ls -l` shows it (`w` and `o` for the whiteouts).
    pub fn letter(self) -> char {
        match self {
            FileType::File => '-',
            FileType::Dir => 'd',
            FileType::Symlink => 'l',
            FileType::Hardlink => 'h',
            FileType::CharDevice => 'c',
            FileType::BlockDevice => 'b',
            FileType::Fifo => 'p',
            FileType::Whiteout => 'w',
            FileType::Opaque => 'o',
        }
    }
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerFile {
    #[serde(rename = "type")]
    pub kind: FileType,
    /// Absolute, without a trailing slash; for whiteouts the path they delete or hide.
    pub path: String,
    /// Symlink target or hard link source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Permission bits, octal (`0755`).
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

impl LayerFile {
    /// `drwxr-xr-x`, as `ls -l` (whiteouts as `w---------`, opaque markers as `o---------`).
    pub fn mode_string(&self) -> String {
        let mut out = String::with_capacity(10);
        out.push(self.kind.letter());
        if matches!(self.kind, FileType::Whiteout | FileType::Opaque) {
            // A whiteout's own permission bits mean nothing.
            out.push_str("---------");
            return out;
        }
        let bits = [
            (0o400, 'r'),
            (0o200, 'w'),
            (0o100, 'x'),
            (0o040, 'r'),
            (0o020, 'w'),
            (0o010, 'x'),
            (0o004, 'r'),
            (0o002, 'w'),
            (0o001, 'x'),
        ];
        for (i, (bit, c)) in bits.iter().enumerate() {
            let special = match i {
                2 if self.mode & 0o4000 != 0 => Some('s'),
                5 if self.mode & 0o2000 != 0 => Some('s'),
                8 if self.mode & 0o1000 != 0 => Some('t'),
                _ => None,
            };
            out.push(match (self.mode & bit != 0, special) {
                (true, Some(s)) => s,
                (false, Some(s)) => s.to_ascii_uppercase(),
                (true, None) => *c,
                (false, None) => '-',
            });
        }
        out
    }
}

/// Totals of a walked layer, with the verified digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LayerSummary {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub whiteouts: u64,
    /// Sum of regular file sizes.
    pub content_bytes: u64,
    pub compressed_bytes: u64,
    pub compression: String,
    pub digest: String,
    pub diff_id: String,
}

/// How often a long layer read logs how far it got.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

struct HashRead<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<R> HashRead<R> {
    fn new(inner: R) -> Self {
        HashRead {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    fn digest(self) -> Digest {
        Digest::from_bytes(self.hasher.finalize().into())
    }
}

/// Reads the layer blob `reader` to its end, calling `visit` for every entry in archive order.
/// `layer` names the layer in errors; when `expected` is given the blob must hash to it.
pub fn walk_layer(
    reader: impl Read,
    layer: &str,
    expected: Option<&Digest>,
    mut visit: impl FnMut(&LayerFile) -> io::Result<()>,
) -> Result<LayerSummary, DebugError> {
    let fail = |reason: String| DebugError::Layer {
        entry: layer.to_string(),
        digest: expected.map(|d| d.to_string()).unwrap_or_default(),
        reason,
    };
    let mut raw = HashRead::new(reader);
    let mut magic = Vec::with_capacity(4);
    (&mut raw)
        .take(4)
        .read_to_end(&mut magic)
        .map_err(|e| fail(e.to_string()))?;
    let source =
        io::BufReader::with_capacity(256 * 1024, Cursor::new(magic.clone()).chain(&mut raw));
    let (compression, decoded): (&str, Box<dyn Read + '_>) = match magic.as_slice() {
        [0x1f, 0x8b, ..] => (
            "gzip",
            Box::new(flate2::bufread::MultiGzDecoder::new(source)),
        ),
        [0x28, 0xb5, 0x2f, 0xfd] => (
            "zstd",
            Box::new(
                zstd::stream::read::Decoder::with_buffer(source)
                    .map_err(|e| fail(format!("starting zstd decompression: {e}")))?,
            ),
        ),
        _ => ("none", Box::new(source)),
    };
    let mut diff = HashRead::new(decoded);
    let mut summary = LayerSummary {
        compression: compression.to_string(),
        ..LayerSummary::default()
    };
    let started = std::time::Instant::now();
    let mut last_progress = started;
    {
        let mut tar = TarReader::new(io::BufReader::with_capacity(128 * 1024, &mut diff));
        loop {
            // Tekton logs show no progress bars: long reads say how far they got.
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = std::time::Instant::now();
                tracing::info!(
                    "reading layer of {layer}: {} entries, {} of files so far",
                    summary.entries,
                    crate::registry::pull::human_size(summary.content_bytes)
                );
            }
            let header = match tar.next_entry() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    let at = e
                        .entry
                        .map(|n| format!(" at entry {n}"))
                        .unwrap_or_default();
                    return Err(fail(format!(
                        "not a readable tar archive{at}: {}",
                        e.source
                    )));
                }
            };
            let file = to_layer_file(&header);
            summary.entries += 1;
            match file.kind {
                FileType::File => {
                    summary.files += 1;
                    summary.content_bytes += file.size;
                }
                FileType::Dir => summary.dirs += 1,
                FileType::Symlink | FileType::Hardlink => summary.links += 1,
                FileType::Whiteout | FileType::Opaque => summary.whiteouts += 1,
                _ => {}
            }
            visit(&file).map_err(|e| fail(format!("writing the listing: {e}")))?;
        }
        // Trailing zero blocks belong to the diffID.
        io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(|e| fail(e.to_string()))?;
    }
    summary.diff_id = diff.digest().to_string();
    // The rest of the blob (gzip trailer, padding) belongs to the digest.
    io::copy(&mut raw, &mut io::sink()).map_err(|e| fail(e.to_string()))?;
    summary.compressed_bytes = raw.len;
    let digest = raw.digest();
    summary.digest = digest.to_string();
    if let Some(want) = expected
        && *want != digest
    {
        return Err(fail(format!(
            "the blob hashes to {digest}: it is corrupt or not this layer"
        )));
    }
    tracing::info!(
        "read layer {digest} of {layer} in {:.1}s: {} entries, {} of files from {} {}, peak \
         memory {} KiB",
        started.elapsed().as_secs_f64(),
        summary.entries,
        crate::registry::pull::human_size(summary.content_bytes),
        crate::registry::pull::human_size(summary.compressed_bytes),
        summary.compression,
        crate::build::phases::peak_rss_kb()
    );
    Ok(summary)
}

fn to_layer_file(h: &TarEntryHeader) -> LayerFile {
    let path = normalize(&String::from_utf8_lossy(&h.path));
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", path.as_str()),
    };
    let (kind, path) = if name == ".wh..wh..opq" {
        (
            FileType::Opaque,
            if dir.is_empty() {
                "/".into()
            } else {
                dir.to_string()
            },
        )
    } else if let Some(deleted) = name.strip_prefix(".wh.") {
        (FileType::Whiteout, format!("{dir}/{deleted}"))
    } else {
        let kind = match h.kind {
            TarEntryKind::File => FileType::File,
            TarEntryKind::Dir => FileType::Dir,
            TarEntryKind::Symlink => FileType::Symlink,
            TarEntryKind::Hardlink => FileType::Hardlink,
            TarEntryKind::CharDevice => FileType::CharDevice,
            TarEntryKind::BlockDevice => FileType::BlockDevice,
            TarEntryKind::Fifo => FileType::Fifo,
        };
        (kind, path)
    };
    let link = match kind {
        FileType::Symlink => Some(String::from_utf8_lossy(&h.link).into_owned()),
        FileType::Hardlink => Some(normalize(&String::from_utf8_lossy(&h.link))),
        _ => None,
    };
    LayerFile {
        kind,
        path,
        link,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        size: if kind == FileType::File { h.size } else { 0 },
    }
}

/// `./a/b/`, `a/b` and `/a/b` all become `/a/b`; the root is `/`.
pub fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// A `--find` argument: an exact path or a glob (`*` stays within one directory, `**` crosses).
#[derive(Debug, Clone)]
pub struct PathMatcher {
    pub pattern: String,
    glob: Option<GlobMatcher>,
}

impl PathMatcher {
    pub fn new(pattern: &str) -> Result<PathMatcher, DebugError> {
        let normalized = normalize(pattern);
        let glob = if normalized.contains(['*', '?', '[', '{']) {
            let glob = globset::GlobBuilder::new(&normalized)
                .literal_separator(true)
                .build()
                .map_err(|e| DebugError::Pattern {
                    pattern: pattern.to_string(),
                    reason: e.kind().to_string(),
                })?;
            Some(glob.compile_matcher())
        } else {
            None
        };
        Ok(PathMatcher {
            pattern: normalized,
            glob,
        })
    }

    /// True when `path` (normalised) is the path, matches the glob, or lies under the named
    /// directory (a layer need not hold an entry for every parent).
    pub fn matches(&self, path: &str) -> bool {
        match &self.glob {
            Some(glob) => glob.is_match(path) || ancestors(path).any(|a| glob.is_match(a)),
            None => {
                path == self.pattern
                    || (self.pattern == "/" && path.starts_with('/'))
                    || path
                        .strip_prefix(self.pattern.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .filter(|a| !a.is_empty())
}

/// Whether a pattern is in a layer: the matching entries, and whether any of them is not a
/// whiteout (present) or only whiteouts match (deleted by the layer).
#[derive(Debug, Clone, Serialize)]
pub struct FindResult {
    pub pattern: String,
    pub present: bool,
    pub deleted: bool,
    pub matches: Vec<LayerFile>,
}

impl FindResult {
    pub fn new(pattern: &str) -> FindResult {
        FindResult {
            pattern: pattern.to_string(),
            present: false,
            deleted: false,
            matches: Vec::new(),
        }
    }

    /// Records `file` if it matches.
    pub fn offer(&mut self, matcher: &PathMatcher, file: &LayerFile) {
        if matcher.matches(&file.path) {
            match file.kind {
                FileType::Whiteout | FileType::Opaque => self.deleted = true,
                _ => self.present = true,
            }
            self.matches.push(file.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, ty, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(if *ty == tar::EntryType::Directory {
                0o755
            } else {
                0o4755
            });
            h.set_uid(1000);
            h.set_gid(50);
            h.set_size(data.len() as u64);
            if *ty == tar::EntryType::Symlink {
                h.set_link_name("target").unwrap();
            }
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn walk(
        blob: &[u8],
        expected: Option<&Digest>,
    ) -> Result<(Vec<LayerFile>, LayerSummary), DebugError> {
        let mut files = Vec::new();
        let summary = walk_layer(blob, "test", expected, |f| {
            files.push(f.clone());
            Ok(())
        })?;
        Ok((files, summary))
    }

    #[test]
    fn entries_whiteouts_and_both_digests() {
        use tar::EntryType::*;
        let plain = tar(&[
            ("app/", Directory, b""),
            ("app/bin", Regular, b"\x7fELF"),
            ("app/link", Symlink, b""),
            ("app/.wh.old", Regular, b""),
            ("etc/.wh..wh..opq", Regular, b""),
        ]);
        for blob in [
            plain.clone(),
            gzip(&plain),
            zstd::encode_all(&plain[..], 3).unwrap(),
        ] {
            let digest = Digest::of(&blob);
            let (files, summary) = walk(&blob, Some(&digest)).unwrap();
            let kinds: Vec<(FileType, &str)> =
                files.iter().map(|f| (f.kind, f.path.as_str())).collect();
            assert_eq!(
                kinds,
                [
                    (FileType::Dir, "/app"),
                    (FileType::File, "/app/bin"),
                    (FileType::Symlink, "/app/link"),
                    (FileType::Whiteout, "/app/old"),
                    (FileType::Opaque, "/etc"),
                ]
            );
            assert_eq!(files[1].mode_string(), "-rwsr-xr-x");
            assert_eq!(files[0].mode_string(), "drwxr-xr-x");
            assert_eq!(files[2].link.as_deref(), Some("target"));
            assert_eq!(
                (summary.files, summary.whiteouts, summary.content_bytes),
                (1, 2, 4)
            );
            assert_eq!(summary.diff_id, Digest::of(&plain).to_string());
        }
        let wrong = Digest::of(b"other");
        let err = walk(&gzip(&plain), Some(&wrong)).unwrap_err().to_string();
        assert!(err.contains("corrupt or not this layer"), "{err}");
        let err = walk(&gzip(b"not a tar at all, just some text that is long enough to fill a header block, repeated. not a tar at all, just some text that is long enough to fill a header block, repeated. not a tar at all, just some text that is long enough to fill a header block, repeated. not a tar at all, just some text that is long enough to fill a header block, repeated. not a tar at all, just some text that is long enough to fill a header block, repeated."), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a readable tar archive"), "{err}");
    }

    #[test]
    fn an_empty_layer_has_no_entries() {
        let empty = gzip(&tar(&[]));
        let (files, summary) = walk(&empty, None).unwrap();
        assert!(files.is_empty());
        assert_eq!(summary.entries, 0);
    }

    #[test]
    fn matchers_take_paths_directories_and_globs() {
        let m = PathMatcher::new("workspace/svc/app").unwrap();
        assert_eq!(m.pattern, "/workspace/svc/app");
        assert!(m.matches("/workspace/svc/app"));
        assert!(m.matches("/workspace/svc/app/inner"));
        assert!(!m.matches("/workspace/svc/application"));
        assert!(!m.matches("/workspace/svc"));
        let g = PathMatcher::new("/usr/lib/*.so").unwrap();
        assert!(g.matches("/usr/lib/libz.so"));
        assert!(!g.matches("/usr/lib/x/libz.so"));
        let g = PathMatcher::new("/usr/**/libz.so").unwrap();
        assert!(g.matches("/usr/lib/x/libz.so"));
        let d = PathMatcher::new("/usr/*").unwrap();
        assert!(
            d.matches("/usr/lib/x"),
            "entries under a matching directory"
        );
        assert!(PathMatcher::new("/a/[").is_err());
        assert_eq!(normalize("./a//b/"), "/a/b");
        assert_eq!(normalize("."), "/");
    }

    #[test]
    fn find_results_tell_present_from_deleted() {
        let m = PathMatcher::new("/app/old").unwrap();
        let mut r = FindResult::new("/app/old");
        let wh = LayerFile {
            kind: FileType::Whiteout,
            path: "/app/old".into(),
            link: None,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
        };
        r.offer(&m, &wh);
        assert!(r.deleted && !r.present);
        let mut file = wh.clone();
        file.kind = FileType::File;
        r.offer(&m, &file);
        assert!(r.present);
        assert_eq!(r.matches.len(), 2);
    }
}
