//! A tar writer for tests that writes exactly the bytes asked for, hostile ones included.
//!
//! Independent of kbuild's own tar writer, so extraction tests do not check kbuild against
//! itself.

use std::io::Write;

#[derive(Default)]
pub struct Tar {
    buf: Vec<u8>,
}

pub struct Entry<'a> {
    pub name: &'a [u8],
    pub ty: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: &'a [u8],
    pub major: u32,
    pub minor: u32,
}

impl<'a> Entry<'a> {
    pub fn new(name: &'a [u8], ty: u8) -> Entry<'a> {
        Entry {
            name,
            ty,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            size: 0,
            link: b"",
            major: 0,
            minor: 0,
        }
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    if s.len() > field.len() - 1 {
        // GNU base-256 for values that do not fit.
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
        return;
    }
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[field.len() - 1] = 0;
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A raw header block; `e.size` is what the header claims, whatever data follows.
    pub fn header(&mut self, e: &Entry) -> &mut Self {
        let mut h = [0u8; 512];
        let n = e.name.len().min(100);
        h[..n].copy_from_slice(&e.name[..n]);
        octal(&mut h[100..108], u64::from(e.mode));
        octal(&mut h[108..116], e.uid);
        octal(&mut h[116..124], e.gid);
        octal(&mut h[124..136], e.size);
        octal(&mut h[136..148], e.mtime);
        h[156] = e.ty;
        let l = e.link.len().min(100);
        h[157..157 + l].copy_from_slice(&e.link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], u64::from(e.major));
        octal(&mut h[337..345], u64::from(e.minor));
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.buf.extend_from_slice(&h);
        self
    }

    /// Data with padding to the next block.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0, pad));
        self
    }

    pub fn entry(&mut self, e: Entry, data: &[u8]) -> &mut Self {
        let e = Entry {
            size: data.len() as u64,
            ..e
        };
        self.header(&e).data(data)
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(Entry::new(name.as_bytes(), b'0'), data)
    }

    pub fn file_with(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        self.entry(
            Entry {
                mode,
                uid,
                gid,
                ..Entry::new(name.as_bytes(), b'0')
            },
            data,
        )
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(
            Entry {
                mode,
                ..Entry::new(name.as_bytes(), b'5')
            },
            b"",
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            Entry {
                mode: 0o777,
                link: target.as_bytes(),
                ..Entry::new(name.as_bytes(), b'2')
            },
            b"",
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            Entry {
                link: target.as_bytes(),
                ..Entry::new(name.as_bytes(), b'1')
            },
            b"",
        )
    }

    pub fn device(&mut self, name: &str, ty: u8, major: u32, minor: u32) -> &mut Self {
        self.entry(
            Entry {
                mode: 0o620,
                major,
                minor,
                ..Entry::new(name.as_bytes(), ty)
            },
            b"",
        )
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len = len.to_string().len() + rest;
            }
            write!(body, "{len} {k}=").unwrap();
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.entry(Entry::new(b"PaxHeader", b'x'), &body)
    }

    /// A GNU long-name record applying to the next entry.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(Entry::new(b"././@LongLink", b'L'), &data)
    }

    /// The archive with its two end blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend(std::iter::repeat_n(0, 1024));
        out
    }

    /// The archive cut after `len` bytes, without end blocks.
    pub fn truncated(&self, len: usize) -> Vec<u8> {
        self.buf[..len.min(self.buf.len())].to_vec()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}
