//! A deterministic tar writer: headers composed field by field, nothing taken from the host.
//!
//! Every header is ustar with numeric uid/gid, empty user and group names, no atime or ctime,
//! and the mode's permission bits (setuid, setgid and sticky included). A PAX extended header
//! (`././@PaxHeader`, zero metadata) is written only when a value does not fit: a path or link
//! target over 100 bytes, ids over 2097151, sizes of 8 GiB and more, times before 1970, and
//! extended attributes (`SCHILY.xattr.*`, sorted by name). The same entries therefore give the
//! same bytes on any machine. The `tar` crate's `Builder` is not used: it follows symlinks and
//! writes sparse files by default, and its deterministic mode zeroes ownership.

use std::io::{self, Write};

/// Largest value of an 8-byte octal field (uid, gid, mode): 7 digits.
const MAX_ID: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (size, mtime): 11 digits.
const MAX_BIG: u64 = 0o77777777777;

/// The typeflag of an entry we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeFlag {
    File,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl TypeFlag {
    fn byte(self) -> u8 {
        match self {
            TypeFlag::File => b'0',
            TypeFlag::Hardlink => b'1',
            TypeFlag::Symlink => b'2',
            TypeFlag::Char => b'3',
            TypeFlag::Block => b'4',
            TypeFlag::Dir => b'5',
            TypeFlag::Fifo => b'6',
        }
    }
}

/// One entry's header fields.
#[derive(Debug, Clone)]
pub(crate) struct Header<'a> {
    pub path: &'a [u8],
    pub flag: TypeFlag,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub link: &'a [u8],
    pub major: u32,
    pub minor: u32,
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

pub(crate) struct TarWriter<W> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Writes a header (and a PAX header before it when needed). The caller then writes
    /// exactly `size` bytes of data with [`TarWriter::data`] and calls [`TarWriter::pad`].
    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        let mut pax: Vec<(&[u8], Vec<u8>)> = Vec::new();
        if h.path.len() > 100 {
            pax.push((b"path", h.path.to_vec()));
        }
        if h.link.len() > 100 {
            pax.push((b"linkpath", h.link.to_vec()));
        }
        if h.uid > MAX_ID {
            pax.push((b"uid", h.uid.to_string().into_bytes()));
        }
        if h.gid > MAX_ID {
            pax.push((b"gid", h.gid.to_string().into_bytes()));
        }
        if h.size > MAX_BIG {
            pax.push((b"size", h.size.to_string().into_bytes()));
        }
        if h.mtime < 0 || h.mtime as u64 > MAX_BIG {
            pax.push((b"mtime", h.mtime.to_string().into_bytes()));
        }
        let mut records = Vec::new();
        for (k, v) in &pax {
            record(&mut records, k, v);
        }
        for (name, value) in h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            record(&mut records, &key, value);
        }
        if !records.is_empty() {
            let block = block(
                &Header {
                    path: b"././@PaxHeader",
                    flag: TypeFlag::File,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size: records.len() as u64,
                    mtime: 0,
                    link: b"",
                    major: 0,
                    minor: 0,
                    xattrs: &[],
                },
                b'x',
            );
            self.out.write_all(&block)?;
            self.out.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }
        self.out.write_all(&block(h, h.flag.byte()))
    }

    /// Writes entry data.
    pub fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }

    /// Pads the data of an entry of `size` bytes to the next block.
    pub fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = ((512 - size % 512) % 512) as usize;
        self.out.write_all(&[0u8; 512][..pad])
    }

    /// Writes the end-of-archive blocks and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        Ok(self.out)
    }
}

/// One PAX record: `<len> <key>=<value>\n`, where `<len>` counts itself.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let max = (1u64 << (3 * digits as u32)) - 1;
    // Values that do not fit went into a PAX record; the field holds a clamped stand-in.
    let s = format!("{:0digits$o}", value.min(max));
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

fn block(h: &Header, flag: u8) -> [u8; 512] {
    let mut b = [0u8; 512];
    let name = &h.path[..h.path.len().min(100)];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime.max(0) as u64);
    b[156] = flag;
    let link = &h.link[..h.link.len().min(100)];
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if matches!(h.flag, TypeFlag::Char | TypeFlag::Block) {
        octal(&mut b[329..337], u64::from(h.major));
        octal(&mut b[337..345], u64::from(h.minor));
    }
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut out = Vec::new();
        record(&mut out, b"path", &[b'a'; 92]);
        assert_eq!(&out[..4], b"102 ");
        assert_eq!(out.len(), 102);
        let mut out = Vec::new();
        record(&mut out, b"k", b"v");
        assert_eq!(out, b"6 k=v\n");
    }

    #[test]
    fn headers_read_back_with_the_tar_crate() {
        let mut w = TarWriter::new(Vec::new());
        let long = vec![b'x'; 150];
        let xattrs = vec![(b"user.a".to_vec(), b"1".to_vec())];
        w.header(&Header {
            path: &long,
            flag: TypeFlag::File,
            mode: 0o4755,
            uid: 5_000_000,
            gid: 7,
            size: 3,
            mtime: 1_700_000_000,
            link: b"",
            major: 0,
            minor: 0,
            xattrs: &xattrs,
        })
        .unwrap();
        w.data(b"abc").unwrap();
        w.pad(3).unwrap();
        let bytes = w.finish().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), &long[..]);
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
        let pax: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| x.unwrap().key().unwrap().to_string())
            .collect();
        assert_eq!(pax, ["path", "uid", "SCHILY.xattr.user.a"]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut e, &mut s).unwrap();
        assert_eq!(s, "abc");
        assert!(entries.next().is_none());
    }
}
