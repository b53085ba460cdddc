//! Extraction of layers with every entry kind, across three layers with whiteouts.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use kbuild::fs::{Compression, RealSys, Root, extract_layer};

use super::tarlib::{Entry, Tar, gzip, zstd};
use super::tree::tree;
use super::{RESOLVERS, open_root};

/// `security.capability` v2 granting cap_net_raw, effective.
const CAP_NET_RAW: &[u8] = &[
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn long(prefix: &str, len: usize) -> String {
    let mut s = prefix.to_string();
    while s.len() < len {
        s.push_str("/abcdefghij");
    }
    s
}

fn layer1() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("./", 0o755) // the root's own entry is ignored
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .dir("usr/", 0o755)
        .dir("usr/bin/", 0o755)
        .file_with("usr/bin/su", b"su binary", 0o4755, 0, 0)
        .file_with("usr/bin/wall", b"wall binary", 0o2755, 0, 5)
        .hardlink("usr/bin/su2", "usr/bin/su")
        .symlink("bin", "usr/bin")
        .symlink("etc/alt", "/usr/bin/su")
        .dir("tmp/", 0o1777)
        .entry(
            Entry {
                mode: 0o750,
                uid: 10,
                gid: 20,
                mtime: 1_500_000_000,
                ..Entry::new(b"data/", b'5')
            },
            b"",
        )
        .dir("data/old/", 0o755)
        .file("data/old/a", b"a")
        .file("data/old/b", b"b")
        .dir("opq/", 0o755)
        .file("opq/lower1", b"1")
        .file("opq/sub/lower2", b"2") // parent directory missing from the layer
        .dir("tmp2/", 0o755)
        .file("tmp2/inside", b"i")
        .file("f2", b"file then dir")
        .device("dev/null", b'3', 1, 3)
        .device("dev/loop0", b'4', 7, 0)
        .entry(
            Entry {
                mode: 0o600,
                ..Entry::new(b"dev/fifo", b'6')
            },
            b"",
        )
        .dir("run/", 0o755)
        .symlink("var/run", "/run")
        .file("var/run/x.pid", b"42"); // through an absolute symlink: lands in /run
    let gnu = long("gnu", 150);
    t.gnu_long_name(gnu.as_bytes())
        .entry(Entry::new(b"truncated-gnu-name", b'0'), b"gnu long");
    let pax = long("pax", 220);
    let target = long("/target", 180);
    t.pax(&[("path", pax.as_bytes())])
        .file("ignored-pax-name", b"pax long");
    t.pax(&[("path", b"longlink"), ("linkpath", target.as_bytes())])
        .symlink("x", "y");
    t.pax(&[
        ("SCHILY.xattr.security.capability", CAP_NET_RAW),
        ("SCHILY.xattr.user.origin", b"layer1"),
        ("mtime", b"1234567890.5"),
        ("uid", b"3000000"),
        ("gid", b"3000001"),
    ])
    .file_with("usr/bin/ping", b"ping binary", 0o755, 0, 0);
    gzip(&t.finish())
}

fn layer2() -> Vec<u8> {
    let mut t = Tar::new();
    t.file("etc/.wh.passwd", b"")
        .file("data/.wh.old", b"")
        .file("opq/new", b"new") // before the opaque marker: must survive it
        .file("opq/.wh..wh..opq", b"")
        .file(".wh..wh.plnk", b"") // aufs bookkeeping, dropped
        .hardlink("usr/bin/hl_lower", "usr/bin/su") // to a file of layer 1
        .file("tmp2", b"dir replaced by file")
        .dir("f2/", 0o700)
        .file("f2/inner", b"file replaced by dir");
    zstd(&t.finish())
}

fn layer3() -> Vec<u8> {
    let mut t = Tar::new();
    t.file("etc/passwd", b"recreated\n")
        .file(".wh.bin", b"") // removes the symlink, not usr/bin
        .file("opq/.wh.new", b"")
        .entry(
            Entry {
                mode: 0o700,
                mtime: 1_400_000_000,
                ..Entry::new(b"usr/", b'5')
            },
            b"",
        );
    t.finish()
}

#[test]
fn three_layers_with_every_entry_kind_give_the_described_tree() {
    for resolver in RESOLVERS {
        let dir = tempfile::tempdir().unwrap();
        let root = open_root(dir.path(), resolver);
        let r1 = extract_layer(&root, "sha256:layer1", &layer1()[..]).unwrap();
        assert_eq!(r1.compression, Compression::Gzip);
        let r2 = extract_layer(&root, "sha256:layer2", &layer2()[..]).unwrap();
        assert_eq!(r2.compression, Compression::Zstd);
        let r3 = extract_layer(&root, "sha256:layer3", &layer3()[..]).unwrap();
        assert_eq!(r3.compression, Compression::None);
        assert_eq!(r3.diff_id, kbuild::digest::Digest::of(&layer3()));
        assert_eq!((r1.skipped_special, r1.unowned), (0, 0));

        let t = tree(dir.path());
        let paths: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
        let gnu = long("gnu", 150);
        let pax = long("pax", 220);
        let mut expected = vec![
            "data",
            "dev",
            "dev/fifo",
            "dev/loop0",
            "dev/null",
            "etc",
            "etc/alt",
            "etc/passwd",
            "f2",
            "f2/inner",
            "longlink",
            "opq",
            "run",
            "run/x.pid",
            "tmp",
            "tmp2",
            "usr",
            "usr/bin",
            "usr/bin/hl_lower",
            "usr/bin/ping",
            "usr/bin/su",
            "usr/bin/su2",
            "usr/bin/wall",
            "var",
            "var/run",
        ];
        for p in [&gnu, &pax] {
            let mut acc = String::new();
            for part in p.split('/') {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(part);
                expected.push(Box::leak(acc.clone().into_boxed_str()));
            }
        }
        expected.sort();
        expected.dedup();
        assert_eq!(paths, expected, "{resolver:?}");

        let n = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(n("etc/passwd").content, b"recreated\n");
        assert_eq!(
            (n("usr/bin/su").mode, n("usr/bin/wall").mode),
            (0o4755, 0o2755)
        );
        assert_eq!(n("usr/bin/wall").gid, 5);
        assert_eq!(n("tmp").mode, 0o1777);
        // hl_lower sorts first, so the tree names it as the group of su and su2.
        assert_eq!(
            n("usr/bin/su").hardlink_of.as_deref(),
            Some("usr/bin/hl_lower")
        );
        assert_eq!(
            n("usr/bin/su2").hardlink_of.as_deref(),
            Some("usr/bin/hl_lower")
        );
        assert_eq!(n("usr/bin/su2").content, b"su binary");
        let su = std::fs::metadata(dir.path().join("usr/bin/su")).unwrap();
        assert_eq!(
            su.nlink(),
            3,
            "su, su2 (same layer) and hl_lower (a later layer)"
        );
        assert_eq!(
            (n("etc/alt").kind, n("etc/alt").link.as_str()),
            ("symlink", "/usr/bin/su")
        );
        assert_eq!(n("var/run").link, "/run");
        assert_eq!(n("run/x.pid").content, b"42");
        assert_eq!(
            (n("dev/null").kind, n("dev/null").rdev),
            ("char", rustix::fs::makedev(1, 3))
        );
        assert_eq!(n("dev/loop0").kind, "block");
        assert_eq!((n("dev/fifo").kind, n("dev/fifo").mode), ("fifo", 0o600));
        let d = n("data");
        assert_eq!((d.mode, d.uid, d.gid), (0o750, 10, 20));
        // run/ got run/x.pid after its own entry; its mtime is still the header's.
        assert_eq!(n("run").mtime, 1_600_000_000);
        assert_eq!((n("tmp2").kind, n("f2").kind), ("file", "dir"));
        assert_eq!(n("f2").mode, 0o700);
        assert_eq!(n(&gnu).content, b"gnu long");
        assert_eq!(n(&pax).content, b"pax long");
        assert_eq!(n("longlink").link, long("/target", 180));
        let ping = n("usr/bin/ping");
        assert_eq!(
            (ping.uid, ping.gid, ping.mtime),
            (3_000_000, 3_000_001, 1_234_567_890)
        );
        assert_eq!(
            ping.xattrs,
            vec![
                ("security.capability".to_string(), CAP_NET_RAW.to_vec()),
                ("user.origin".to_string(), b"layer1".to_vec())
            ]
        );
        let ping_md = std::fs::metadata(dir.path().join("usr/bin/ping")).unwrap();
        assert_eq!(ping_md.mtime_nsec(), 500_000_000);
        // Layer 3 updated usr/'s metadata and kept its contents.
        assert_eq!((n("usr").mode, n("usr").mtime), (0o700, 1_400_000_000));
        assert!(
            t.keys().all(|k| !k.contains(".wh.")),
            "no whiteout marker in the rootfs"
        );
        assert_eq!(r2.whiteouts, 4, "three markers and the aufs one, dropped");
    }
}

/// Device nodes the process may not create are skipped and counted, not fatal.
#[test]
fn devices_are_skipped_and_counted_when_mknod_is_refused() {
    #[derive(Debug)]
    struct NoMknod;
    impl kbuild::fs::Sys for NoMknod {
        fn mknodat(
            &self,
            _: std::os::fd::BorrowedFd<'_>,
            _: &std::ffi::OsStr,
            _: rustix::fs::FileType,
            _: u32,
            _: u64,
        ) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(1))
        }
        fn lchownat(
            &self,
            d: std::os::fd::BorrowedFd<'_>,
            n: &std::ffi::OsStr,
            u: u32,
            g: u32,
        ) -> std::io::Result<()> {
            RealSys.lchownat(d, n, u, g)
        }
        fn fchown(&self, _: std::os::fd::BorrowedFd<'_>, _: u32, _: u32) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(1))
        }
        fn fsetxattr(
            &self,
            f: std::os::fd::BorrowedFd<'_>,
            n: &std::ffi::OsStr,
            v: &[u8],
        ) -> std::io::Result<()> {
            RealSys.fsetxattr(f, n, v)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open_with(dir.path(), None, Arc::new(NoMknod)).unwrap();
    let mut t = Tar::new();
    t.device("dev/null", b'3', 1, 3)
        .device("dev/sda", b'4', 8, 0)
        .entry(Entry::new(b"dev/fifo", b'6'), b"")
        .file_with("owned", b"x", 0o644, 1000, 1000);
    let report = extract_layer(&root, "sha256:devs", &t.finish()[..]).unwrap();
    assert_eq!((report.skipped_special, report.unowned), (3, 1));
    assert!(!dir.path().join("dev/null").exists());
    assert_eq!(std::fs::read(dir.path().join("owned")).unwrap(), b"x");
}

/// A directory listed twice in one layer ends with its last entry's mode and mtime.
#[test]
fn issue_4_directory_listed_twice_keeps_its_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let mut t = Tar::new();
    t.entry(
        Entry {
            mode: 0o700,
            mtime: 100,
            ..Entry::new(b"d/", b'5')
        },
        b"",
    )
    .file("d/f", b"x")
    .entry(
        Entry {
            mode: 0o755,
            mtime: 200,
            ..Entry::new(b"d/", b'5')
        },
        b"",
    );
    extract_layer(&root, "sha256:twice", &t.finish()[..]).unwrap();
    let d = &tree(dir.path())["d"];
    assert_eq!((d.mode, d.mtime), (0o755, 200));
}

/// Some archivers leave numeric fields they do not fill blank (NULs); Go's archive/tar, which
/// Docker and Kaniko use, reads those as 0, so kbuild must not refuse such layers and contexts.
#[test]
fn blank_numeric_header_fields_read_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let mut t = Tar::new();
    t.file("blank", b"data");
    let mut bytes = t.finish();
    // uid, gid and mtime blanked, then the checksum recomputed.
    for field in [108..116, 116..124, 136..148] {
        bytes[field].fill(0);
    }
    bytes[148..156].copy_from_slice(b"        ");
    let sum: u32 = bytes[..512].iter().map(|b| u32::from(*b)).sum();
    bytes[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    extract_layer(&root, "sha256:blank", &bytes[..]).unwrap();
    let meta = std::fs::symlink_metadata(dir.path().join("blank")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mtime()), (0, 0, 0));
    assert_eq!(std::fs::read(dir.path().join("blank")).unwrap(), b"data");

    // A blank size is 0 too (a directory entry written by such an archiver).
    let mut t = Tar::new();
    t.dir("d/", 0o755);
    let mut bytes = t.finish();
    bytes[124..136].fill(0);
    bytes[148..156].copy_from_slice(b"        ");
    let sum: u32 = bytes[..512].iter().map(|b| u32::from(*b)).sum();
    bytes[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    extract_layer(&root, "sha256:blank-size", &bytes[..]).unwrap();
    assert!(dir.path().join("d").is_dir());
}
