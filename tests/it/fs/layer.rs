//! Layers: round trips through snapshot, layer and extraction, and deterministic digests.

use std::io::Read;
use std::path::Path;

use kbuild::digest::Digest;
use kbuild::fs::{
    Compression, IgnoreList, LayerInfo, LayerOptions, Root, SnapshotMode, Snapshotter, Timestamps,
    extract_layer, write_layer,
};

use super::tree::tree;

const CAP_NET_RAW: &[u8] = &[
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A tree with every kind of entry a layer carries.
fn populate(root: &Root) {
    root.create_dir_all("/usr/bin", 0o755).unwrap();
    root.create_dir_all("/tmp", 0o755).unwrap();
    root.chmod("/tmp", 0o1777).unwrap();
    root.write_file("/usr/bin/su", b"su", 0o755).unwrap();
    root.chmod("/usr/bin/su", 0o4755).unwrap();
    root.write_file("/usr/bin/ping", b"ping", 0o755).unwrap();
    root.set_xattr("/usr/bin/ping", "security.capability", CAP_NET_RAW)
        .unwrap();
    root.set_xattr("/usr/bin/ping", "user.note", b"hello")
        .unwrap();
    root.hardlink("/usr/bin/su", "/usr/bin/su-again").unwrap();
    root.symlink("usr/bin", "/bin").unwrap();
    root.symlink("/no/such/target", "/dangling").unwrap();
    root.mknod(
        "/dev/null",
        kbuild::fs::FileKind::CharDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    root.mknod("/dev/fifo", kbuild::fs::FileKind::Fifo, 0o600, 0)
        .unwrap();
    root.write_file("/home/big", &vec![0xabu8; 3 << 20], 0o600)
        .unwrap();
    root.write_file("/home/empty", b"", 0o644).unwrap();
    root.chown("/home/big", 3_000_000, 4_000_000).unwrap();
    let long = format!("/deep/{}/file", "directory-name-that-is-long/".repeat(5));
    root.write_file(&long, b"long", 0o644).unwrap();
    root.symlink(&long, "/long-link-target").unwrap();
    root.create_dir_all("/srv/data", 0o750).unwrap();
    root.chown("/srv/data", 33, 33).unwrap();
}

fn snapshot_layer(
    rootfs: &Path,
    options: &LayerOptions,
    step: impl Fn(&Root),
) -> (Vec<u8>, LayerInfo) {
    let root = Root::open(rootfs).unwrap();
    let mut snap = Snapshotter::new(&root, SnapshotMode::Full, IgnoreList::new()).unwrap();
    step(&root);
    let changes = snap.snapshot(&root).unwrap();
    let mut blob = Vec::new();
    let info = write_layer(&root, &changes, options, &mut blob)
        .unwrap()
        .unwrap();
    (blob, info)
}

fn options(compression: Compression) -> LayerOptions {
    LayerOptions {
        compression,
        ..LayerOptions::default()
    }
}

#[test]
fn rootfs_to_layer_to_empty_dir_gives_the_same_tree() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let src = tempfile::tempdir().unwrap();
        let (blob, info) = snapshot_layer(src.path(), &options(compression), populate);
        assert_eq!(info.digest, Digest::of(&blob));
        assert_eq!(info.compressed_size, blob.len() as u64);
        assert_eq!(info.media_type, compression.media_type());
        assert_eq!(info.files_deleted, 0);

        let dst = tempfile::tempdir().unwrap();
        let report = extract_layer(
            &Root::open(dst.path()).unwrap(),
            "sha256:roundtrip",
            &blob[..],
        )
        .unwrap();
        assert_eq!(report.diff_id, info.diff_id, "{compression:?}");
        assert_eq!(report.tar_bytes, info.uncompressed_size);
        assert_eq!(tree(src.path()), tree(dst.path()), "{compression:?}");
    }
}

#[test]
fn deletions_replacements_and_recreated_dirs_round_trip_as_whiteouts() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (first, _) = snapshot_layer(src.path(), &options(Compression::Zstd), populate);
    let dst_root = Root::open(dst.path()).unwrap();
    extract_layer(&dst_root, "sha256:first", &first[..]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (second, info) = snapshot_layer(src.path(), &options(Compression::Gzip), |root| {
        root.remove_all("/usr/bin/ping").unwrap();
        root.remove_all("/home").unwrap();
        root.remove_all("/srv/data").unwrap();
        root.write_file("/srv/data", b"dir became a file", 0o644)
            .unwrap();
        root.remove("/dangling").unwrap();
        root.create_dir_all("/dangling/now-a-dir", 0o700).unwrap();
        root.remove_all("/deep").unwrap();
        root.create_dir_all("/deep", 0o755).unwrap();
        root.write_file("/deep/only", b"only this", 0o644).unwrap();
        root.write_file("/usr/bin/su", b"su v2", 0o4755).unwrap();
    });
    assert!(info.files_deleted >= 2, "{info:?}");
    let report = extract_layer(&dst_root, "sha256:second", &second[..]).unwrap();
    assert!(report.whiteouts >= 3, "{report:?}");
    assert_eq!(tree(src.path()), tree(dst.path()));
}

#[test]
fn layer_headers_are_normalised() {
    let src = tempfile::tempdir().unwrap();
    let (blob, _) = snapshot_layer(src.path(), &options(Compression::Gzip), |root| {
        root.write_file("/a/b", b"x", 0o644).unwrap();
        root.chown("/a/b", 1000, 1000).unwrap();
    });
    // gzip header: no mtime, no file name, OS unknown.
    assert_eq!(&blob[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
    assert_eq!(blob[9], 255);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        assert!(h.as_ustar().is_some());
    }
    assert_eq!(names, ["a/", "a/b"], "parents first, directories end in /");
    let mut archive = tar::Archive::new(&tar[..]);
    let e = archive.entries().unwrap().nth(1).unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (1000, 1000)
    );
}

/// Sets the mtime of every path below `dir`, children before parents.
fn set_all_mtimes(root: &Root, dir: &Path, mtime: i64) {
    for name in root.read_dir(dir).unwrap() {
        let path = dir.join(name);
        if root.lstat(&path).unwrap().kind == kbuild::fs::FileKind::Dir {
            set_all_mtimes(root, &path, mtime);
        }
        root.set_mtime(
            &path,
            kbuild::fs::Time {
                sec: mtime,
                nsec: 0,
            },
        )
        .unwrap();
    }
}

/// Builds the same tree at two moments; with fixed timestamps, the digests must match.
#[test]
fn the_same_tree_gives_the_same_digest() {
    let build = |mtime: i64, opts: &LayerOptions| {
        let src = tempfile::tempdir().unwrap();
        let (_, info) = snapshot_layer(src.path(), opts, |root| {
            populate(root);
            set_all_mtimes(root, Path::new("/"), mtime);
        });
        info
    };
    for compression in [Compression::Gzip, Compression::Zstd] {
        let keep = options(compression);
        let a = build(1_000_000, &keep);
        let b = build(1_000_000, &keep);
        assert_eq!(
            (a.diff_id, a.digest),
            (b.diff_id, b.digest),
            "{compression:?}"
        );
        let c = build(2_000_000, &keep);
        assert_ne!(
            a.diff_id, c.diff_id,
            "mtimes are part of the layer by default"
        );

        let repro = LayerOptions {
            timestamps: Timestamps::from_build(true, None),
            ..keep
        };
        let a = build(1_000_000, &repro);
        let c = build(2_000_000, &repro);
        assert_eq!(
            (a.diff_id, a.digest),
            (c.diff_id, c.digest),
            "{compression:?} reproducible"
        );
        let clamp = LayerOptions {
            timestamps: Timestamps::from_build(false, Some(500_000)),
            ..keep
        };
        assert_eq!(
            build(1_000_000, &clamp).digest,
            build(2_000_000, &clamp).digest
        );
    }
    // zstd's output does not depend on the number of worker threads.
    let one = build(
        7,
        &LayerOptions {
            threads: 1,
            ..options(Compression::Zstd)
        },
    );
    let two = build(
        7,
        &LayerOptions {
            threads: 2,
            ..options(Compression::Zstd)
        },
    );
    assert_eq!(one.digest, two.digest);
}

#[test]
fn compression_levels_are_honoured() {
    let data = |root: &Root| {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        root.write_file("/text", &text, 0o644).unwrap();
        root.set_mtime("/text", kbuild::fs::Time { sec: 1, nsec: 0 })
            .unwrap();
    };
    for (compression, high) in [(Compression::Gzip, 9), (Compression::Zstd, 19)] {
        let fast = snapshot_layer(
            tempfile::tempdir().unwrap().path(),
            &LayerOptions {
                level: 1,
                ..options(compression)
            },
            data,
        )
        .1;
        let best = snapshot_layer(
            tempfile::tempdir().unwrap().path(),
            &LayerOptions {
                level: high,
                ..options(compression)
            },
            data,
        )
        .1;
        assert_eq!(fast.diff_id, best.diff_id);
        assert!(
            best.compressed_size < fast.compressed_size,
            "{compression:?}: {fast:?} {best:?}"
        );
    }
}
