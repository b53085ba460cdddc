//! A streaming tar reader with limits, for layers we do not trust.
//!
//! The `tar` crate parses the 512-byte header fields for us (octal and base-256 numbers, the
//! ustar prefix), but its entry iterator reads GNU long names and PAX records of any size into
//! memory; a hostile layer could declare gigabytes. This reader frames the archive itself, caps
//! every extension record, applies PAX `path`, `linkpath`, `size`, `uid`, `gid`, `mtime` and
//! `SCHILY.xattr.*`, and refuses what it cannot represent faithfully (sparse files, unknown
//! entry types) instead of guessing. PAX global headers (`git archive` writes one) are read and
//! ignored, as Docker does.

use std::io::{self, Read};

use tar::{EntryType, Header, PaxExtensions};

/// Longest GNU long name or long link accepted (PATH_MAX is 4096; leave room, refuse nonsense).
const MAX_LONG_NAME: u64 = 64 * 1024;
/// Largest PAX extended header accepted: xattrs live here, and those are at most 64 KiB each.
const MAX_PAX: u64 = 8 * 1024 * 1024;

/// The kind of a tar entry that makes something in the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Dir,
    Fifo,
}

/// One entry's header with every extension applied.
#[derive(Debug, Clone)]
pub(crate) struct EntryHeader {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub major: u32,
    pub minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why the archive could not be read; `entry` is the entry being read (or the last complete one).
#[derive(Debug)]
pub(crate) struct ReadError {
    pub entry: Option<String>,
    /// `entry` is the last complete entry, not the one being read.
    pub after: bool,
    pub bad_entry: bool,
    pub source: io::Error,
}

pub(crate) struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not consumed yet, and its padding.
    remaining: u64,
    padding: u64,
    /// Bytes of tar read so far.
    pub offset: u64,
    last: Option<String>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            offset: 0,
            last: None,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn fail(&self, entry: Option<String>, bad_entry: bool, source: io::Error) -> ReadError {
        let after = entry.is_none();
        ReadError {
            entry: entry.or_else(|| self.last.clone()),
            after,
            bad_entry,
            source,
        }
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<EntryHeader>, ReadError> {
        self.skip_rest().map_err(|e| self.fail(None, false, e))?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        loop {
            let mut header = Header::new_old();
            match self.read_block(header.as_mut_bytes()) {
                Ok(true) => {}
                // A clean end of stream where a header would start: accept, as Go's reader does.
                Ok(false) => return Ok(None),
                Err(e) => return Err(self.fail(None, false, e)),
            }
            if header.as_bytes().iter().all(|b| *b == 0) {
                return Ok(None);
            }
            let raw_name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
            let bad = |e: io::Error| (Some(raw_name.clone()), true, e);
            let parsed = (|| {
                let sum: u32 = header.as_bytes()[..148]
                    .iter()
                    .chain(&header.as_bytes()[156..])
                    .map(|b| u32::from(*b))
                    .sum::<u32>()
                    + 8 * 32;
                if header.cksum()? != sum {
                    return Err(invalid("header checksum mismatch"));
                }
                numeric(&header.as_old().size, || header.entry_size())
            })();
            let mut size = match parsed {
                Ok(size) => size,
                Err(e) => {
                    let (entry, bad_entry, e) = bad(e);
                    return Err(self.fail(entry, bad_entry, e));
                }
            };
            let ty = header.entry_type();
            let ext = match ty {
                EntryType::GNULongName => Some((MAX_LONG_NAME, &mut long_name, "GNU long name")),
                EntryType::GNULongLink => Some((MAX_LONG_NAME, &mut long_link, "GNU long link")),
                EntryType::XHeader => Some((MAX_PAX, &mut pax, "PAX header")),
                _ => None,
            };
            if let Some((max, slot, what)) = ext {
                if slot.is_some() {
                    return Err(self.fail(
                        Some(raw_name),
                        true,
                        invalid(format!("two {what}s for one entry")),
                    ));
                }
                if size > max {
                    return Err(self.fail(
                        Some(raw_name),
                        true,
                        invalid(format!("{what} of {size} bytes (the limit is {max})")),
                    ));
                }
                let data = self
                    .read_data(size)
                    .map_err(|e| self.fail(Some(raw_name.clone()), false, e))?;
                *slot = Some(data);
                continue;
            }
            if ty == EntryType::XGlobalHeader {
                if size > MAX_PAX {
                    return Err(self.fail(
                        Some(raw_name),
                        true,
                        invalid(format!("PAX global header of {size} bytes")),
                    ));
                }
                self.read_data(size)
                    .map_err(|e| self.fail(Some(raw_name.clone()), false, e))?;
                continue;
            }

            let mut path = match long_name.take() {
                Some(mut n) => {
                    while n.last() == Some(&0) {
                        n.pop();
                    }
                    n
                }
                None => header.path_bytes().into_owned(),
            };
            let mut link = match long_link.take() {
                Some(mut n) => {
                    while n.last() == Some(&0) {
                        n.pop();
                    }
                    n
                }
                None => header
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default(),
            };
            let result = (|| {
                let old = header.as_old();
                let mut uid = numeric(&old.uid, || header.uid())?;
                let mut gid = numeric(&old.gid, || header.gid())?;
                let mut mtime = numeric(&old.mtime, || header.mtime())? as i64;
                let mut mtime_nsec = 0u32;
                let mut xattrs = Vec::new();
                if let Some(pax) = &pax {
                    for ext in PaxExtensions::new(pax) {
                        let ext = ext?;
                        let key = ext.key_bytes();
                        let value = ext.value_bytes();
                        match key {
                            b"path" => path = value.to_vec(),
                            b"linkpath" => link = value.to_vec(),
                            b"size" => size = parse_u64(value, "size")?,
                            b"uid" => uid = parse_u64(value, "uid")?,
                            b"gid" => gid = parse_u64(value, "gid")?,
                            b"mtime" => (mtime, mtime_nsec) = parse_time(value)?,
                            _ if key.starts_with(b"SCHILY.xattr.") => {
                                xattrs.push((key[13..].to_vec(), value.to_vec()));
                            }
                            _ if key.starts_with(b"GNU.sparse.") => {
                                return Err(invalid("sparse files are not supported"));
                            }
                            _ => {}
                        }
                    }
                }
                let kind = match ty {
                    EntryType::Regular | EntryType::Continuous if path.ends_with(b"/") => {
                        EntryKind::Dir
                    }
                    EntryType::Regular | EntryType::Continuous => EntryKind::File,
                    EntryType::Link => EntryKind::Hardlink,
                    EntryType::Symlink => EntryKind::Symlink,
                    EntryType::Char => EntryKind::CharDevice,
                    EntryType::Block => EntryKind::BlockDevice,
                    EntryType::Directory => EntryKind::Dir,
                    EntryType::Fifo => EntryKind::Fifo,
                    EntryType::GNUSparse => {
                        return Err(invalid("sparse files are not supported"));
                    }
                    other => {
                        return Err(invalid(format!(
                            "unsupported entry type {:?}",
                            other.as_byte() as char
                        )));
                    }
                };
                let id = |v: u64, what: &str| {
                    u32::try_from(v)
                        .ok()
                        .filter(|v| *v != u32::MAX)
                        .ok_or_else(|| invalid(format!("{what} {v} is out of range")))
                };
                let (major, minor) = match kind {
                    EntryKind::CharDevice | EntryKind::BlockDevice => (
                        header.device_major()?.unwrap_or(0),
                        header.device_minor()?.unwrap_or(0),
                    ),
                    _ => (0, 0),
                };
                Ok(EntryHeader {
                    path: path.clone(),
                    link: link.clone(),
                    kind,
                    mode: numeric(&old.mode, || header.mode().map(u64::from))? as u32 & 0o7777,
                    uid: id(uid, "uid")?,
                    gid: id(gid, "gid")?,
                    size,
                    mtime,
                    mtime_nsec,
                    major,
                    minor,
                    xattrs,
                })
            })();
            let name = String::from_utf8_lossy(&path).into_owned();
            let entry = result.map_err(|e| self.fail(Some(name.clone()), true, e))?;
            self.remaining = size;
            self.padding = (512 - size % 512) % 512;
            self.last = Some(name);
            return Ok(Some(entry));
        }
    }

    /// Reads up to `buf.len()` bytes of the current entry's data.
    pub fn read_entry_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of this entry's data",
            ));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }

    /// Skips the rest of the current entry's data and padding.
    fn skip_rest(&mut self) -> io::Result<()> {
        let skip = self.remaining + self.padding;
        if skip == 0 {
            return Ok(());
        }
        let copied = io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())?;
        self.offset += copied;
        if copied < skip {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of an entry",
            ));
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    /// Reads an extension record's data (size already capped) and its padding.
    fn read_data(&mut self, size: u64) -> io::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(size as usize);
        let n = (&mut self.inner).take(size).read_to_end(&mut data)?;
        self.offset += n as u64;
        if (n as u64) < size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of an extension header",
            ));
        }
        self.remaining = 0;
        self.padding = (512 - size % 512) % 512;
        self.skip_rest()?;
        Ok(data)
    }

    /// Reads one 512-byte block; `false` at a clean end of stream.
    fn read_block(&mut self, buf: &mut [u8; 512]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends in the middle of a header",
                    ));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += 512;
        Ok(true)
    }
}

/// Reads the current entry's data through a `Read`.
pub(crate) struct EntryData<'a, R>(pub &'a mut TarReader<R>);

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_entry_data(buf)
    }
}

/// A numeric header field; one left blank (NULs or spaces, as some archivers write for fields
/// they do not fill) is 0, as Go's archive/tar reads it.
fn numeric(field: &[u8], parse: impl FnOnce() -> io::Result<u64>) -> io::Result<u64> {
    if field.iter().all(|b| *b == 0 || *b == b' ') {
        return Ok(0);
    }
    parse()
}

fn parse_u64(value: &[u8], what: &str) -> io::Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("PAX {what} is not a number")))
}

/// A PAX time: decimal seconds with an optional fraction (possibly negative).
fn parse_time(value: &[u8]) -> io::Result<(i64, u32)> {
    let s = std::str::from_utf8(value).map_err(|_| invalid("PAX mtime is not text"))?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs
        .parse()
        .map_err(|_| invalid("PAX mtime is not a number"))?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid("PAX mtime is not a number"));
    }
    let nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().unwrap_or(0)
    };
    // Negative times with a fraction count down from the whole second; keep them simple.
    if s.starts_with('-') && nsec > 0 {
        return Ok((secs - 1, 1_000_000_000 - nsec));
    }
    Ok((secs, nsec))
}
