//! `Root`: every operation stays inside the rootfs, whatever symlinks it meets.

use std::os::unix::fs::MetadataExt;

use super::{RESOLVERS, open_root, tree::sentinel};

/// A base dir holding `outside/` (must never change) and `rootfs/`, with symlinks in the rootfs
/// pointing out in several shapes.
fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret"), b"host secret").unwrap();
    let rootfs = base.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/secret"), b"rootfs secret").unwrap();
    let sym = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, rootfs.join(name)).unwrap();
    };
    sym(outside.to_str().unwrap(), "abs_out"); // absolute, to the host's outside/
    sym("../outside", "rel_out"); // relative, one level above the root
    sym("../../../../../../etc", "deep_up"); // climbs far above the root
    sym("/etc", "abs_etc"); // absolute, means the rootfs's /etc
    sym("/", "slash");
    sym("loop_b", "loop_a");
    sym("loop_a", "loop_b");
    (base, rootfs)
}

#[test]
fn symlinks_resolve_inside_the_root_with_both_resolvers() {
    for resolver in RESOLVERS {
        let (base, rootfs) = setup();
        let before = sentinel(base.path(), &rootfs);
        let root = open_root(&rootfs, resolver);

        // Absolute symlinks and `..` clamp to the root, as in a chroot.
        let read = |p: &str| std::io::read_to_string(root.open_file(p).unwrap()).unwrap();
        assert_eq!(read("abs_etc/secret"), "rootfs secret", "{resolver:?}");
        assert_eq!(read("deep_up/secret"), "rootfs secret", "{resolver:?}");
        assert_eq!(read("slash/etc/secret"), "rootfs secret", "{resolver:?}");
        // A symlink to the host's outside/ means /<host path>/outside inside the root: absent.
        assert!(root.open_file("abs_out/secret").is_err(), "{resolver:?}");
        assert!(root.open_file("rel_out/secret").is_err(), "{resolver:?}");
        let err = root.open_file("loop_a/x").unwrap_err().to_string();
        assert!(err.contains("loop_a/x"), "{err}");

        // Writes through outward symlinks land inside the root or fail; never outside.
        root.write_file("deep_up/new", b"x", 0o644).unwrap();
        assert_eq!(std::fs::read(rootfs.join("etc/new")).unwrap(), b"x");
        assert!(root.write_file("abs_out/pwned", b"x", 0o644).is_err());
        assert!(root.write_file("rel_out/pwned", b"x", 0o644).is_err());
        assert!(root.create_dir_all("abs_out/dir/sub", 0o755).is_err());
        // create_dir_all through an in-root symlink creates inside the root.
        root.create_dir_all("slash/made/here", 0o750).unwrap();
        let md = std::fs::metadata(rootfs.join("made/here")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o750);

        // Final-component operations act on the symlink itself, never its target.
        root.chown("abs_out", 1234, 4321).unwrap();
        let md = std::fs::symlink_metadata(rootfs.join("abs_out")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 4321));
        assert!(root.chmod("abs_out", 0o777).is_err());
        root.set_mtime("abs_out", kbuild::fs::Time { sec: 5, nsec: 0 })
            .unwrap();
        // Creating a file over a symlink replaces the symlink.
        root.write_file("rel_out", b"replaced", 0o600).unwrap();
        assert!(
            std::fs::symlink_metadata(rootfs.join("rel_out"))
                .unwrap()
                .is_file()
        );
        root.symlink("/etc/secret", "abs_etc").unwrap();
        assert_eq!(read("abs_etc"), "rootfs secret");
        root.hardlink("abs_etc", "hl").unwrap(); // links the symlink itself
        assert!(
            std::fs::symlink_metadata(rootfs.join("hl"))
                .unwrap()
                .is_symlink()
        );
        assert!(root.hardlink("abs_out/secret", "hl2").is_err());
        root.remove_all("slash").unwrap(); // removes the link, not the root
        assert!(rootfs.join("etc/secret").exists());
        assert!(root.read_dir("..").is_err(), "`..` is refused in API paths");

        assert_eq!(
            sentinel(base.path(), &rootfs),
            before,
            "{resolver:?}: outside changed"
        );
    }
}

#[test]
fn the_host_root_is_refused() {
    let err = kbuild::fs::Root::open("/").unwrap_err().to_string();
    assert!(err.contains("host's root directory"), "{err}");
}

#[test]
fn executor_style_writes_set_exact_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let root = kbuild::fs::Root::open(dir.path()).unwrap();
    root.create_dir_all("/app/bin", 0o755).unwrap();
    root.write_file("/app/bin/tool", b"#!/bin/sh\n", 0o4755)
        .unwrap();
    root.chown("/app/bin/tool", 0, 0).unwrap();
    root.chmod("/app/bin/tool", 0o4755).unwrap();
    root.set_xattr("/app/bin/tool", "user.kbuild", b"yes")
        .unwrap();
    let st = root.lstat("app/bin/tool").unwrap();
    assert_eq!(
        (st.kind, st.mode, st.size),
        (kbuild::fs::FileKind::File, 0o4755, 10)
    );
    assert_eq!(
        root.xattrs("/app/bin/tool").unwrap(),
        vec![("user.kbuild".into(), b"yes".to_vec())]
    );
    assert_eq!(root.read_dir("/app/bin").unwrap(), vec!["tool"]);
    root.remove("/app/bin/tool").unwrap();
    assert!(root.try_lstat("/app/bin/tool").unwrap().is_none());
}
