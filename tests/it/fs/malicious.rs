//! Hostile layers: each must leave everything outside the rootfs byte-identical and either be
//! refused with an error naming the entry, or (for writes through symlinks, which Docker and
//! containerd resolve as the container will, inside the root) land inside the rootfs.

use std::path::Path;

use kbuild::fs::extract_layer;

use super::tarlib::{Entry, Tar, gzip};
use super::tree::sentinel;
use super::{RESOLVERS, open_root};

/// A base directory with a sentinel tree next to the rootfs, whose absolute path hostile
/// symlinks can name.
struct Scene {
    base: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let base = tempfile::tempdir().unwrap();
        let out = base.path().join("outside");
        std::fs::create_dir_all(out.join("dir")).unwrap();
        std::fs::write(out.join("secret"), b"host secret").unwrap();
        std::fs::write(out.join("dir/file"), b"host file").unwrap();
        std::os::unix::fs::symlink("secret", out.join("link")).unwrap();
        std::fs::create_dir(base.path().join("rootfs")).unwrap();
        Scene { base }
    }
    fn rootfs(&self) -> std::path::PathBuf {
        self.base.path().join("rootfs")
    }
    fn outside(&self) -> String {
        self.base
            .path()
            .join("outside")
            .to_string_lossy()
            .into_owned()
    }
}

enum Expect {
    /// Refused; the error text contains this entry name.
    Error(&'static str),
    /// Applied inside the rootfs; this rootfs path must then exist.
    Inside(&'static str),
}

fn case(name: &str, build: impl Fn(&Scene, &mut Tar), expect: Expect) {
    for resolver in RESOLVERS {
        let scene = Scene::new();
        let mut tar = Tar::new();
        build(&scene, &mut tar);
        let bytes = tar.finish();
        check(name, &scene, resolver, &bytes, &expect);
    }
}

fn check(name: &str, scene: &Scene, resolver: kbuild::fs::Resolver, bytes: &[u8], expect: &Expect) {
    let before = sentinel(scene.base.path(), &scene.rootfs());
    let root = open_root(&scene.rootfs(), resolver);
    let result = extract_layer(&root, "sha256:hostile", bytes);
    let after = sentinel(scene.base.path(), &scene.rootfs());
    assert_eq!(
        before, after,
        "{name} ({resolver:?}): something outside the rootfs changed"
    );
    match (expect, result) {
        (Expect::Error(entry), Err(e)) => {
            let msg = e.to_string();
            eprintln!("{name} ({resolver:?}): {msg}");
            assert!(
                msg.contains(entry),
                "{name} ({resolver:?}): error does not name {entry:?}: {msg}"
            );
            assert!(
                msg.contains("sha256:hostile"),
                "{name}: error does not name the layer: {msg}"
            );
        }
        (Expect::Inside(path), Ok(_)) => {
            assert!(
                std::fs::symlink_metadata(scene.rootfs().join(path)).is_ok(),
                "{name} ({resolver:?}): {path} not created inside the rootfs"
            );
        }
        (Expect::Error(_), Ok(_)) => panic!("{name} ({resolver:?}): hostile layer accepted"),
        (Expect::Inside(_), Err(e)) => panic!("{name} ({resolver:?}): unexpected error {e}"),
    }
}

#[test]
fn traversal_in_entry_names_is_refused() {
    case(
        "dotdot",
        |_, t| {
            t.file("../escape", b"x");
        },
        Expect::Error("../escape"),
    );
    case(
        "inner dotdot",
        |_, t| {
            t.file("a/../../escape", b"x");
        },
        Expect::Error("a/../../escape"),
    );
    case(
        "dotdot dir",
        |_, t| {
            t.dir("../outside/newdir/", 0o755);
        },
        Expect::Error("../outside/newdir/"),
    );
    case(
        "absolute",
        |s, t| {
            t.file(&format!("{}/pwned", s.outside()), b"x");
        },
        Expect::Error("/pwned"),
    );
    case(
        "pax path traversal",
        |_, t| {
            t.pax(&[("path", b"../../pax-escape")])
                .file("innocent", b"x");
        },
        Expect::Error("../../pax-escape"),
    );
    case(
        "gnu long name traversal",
        |_, t| {
            t.gnu_long_name(format!("{}../escape", "a/".repeat(60)).as_bytes())
                .file("innocent", b"x");
        },
        Expect::Error("../escape"),
    );
    case(
        "whiteout dotdot",
        |_, t| {
            t.file("dir/.wh..", b"");
        },
        Expect::Error("dir/.wh.."),
    );
    case(
        "whiteout of the parent",
        |_, t| {
            t.file("../.wh.outside", b"");
        },
        Expect::Error("../.wh.outside"),
    );
    case(
        "nul in pax path",
        |_, t| {
            t.pax(&[("path", b"ok\0../../x")]).file("innocent", b"x");
        },
        Expect::Error("ok"),
    );
}

#[test]
fn symlink_escapes_never_reach_outside() {
    // An absolute symlink to the host's sentinel, then a file through it.
    case(
        "absolute symlink parent",
        |s, t| {
            t.symlink("link", &s.outside()).file("link/pwned", b"x");
        },
        Expect::Error("link/pwned"),
    );
    // Relative climbing symlink to the sentinel's directory name.
    case(
        "relative symlink parent",
        |_, t| {
            t.symlink("up", "../outside").file("up/pwned", b"x");
        },
        Expect::Error("up/pwned"),
    );
    // A chain of symlinks climbing out.
    case(
        "symlink chain",
        |_, t| {
            t.symlink("a", "b")
                .symlink("b", "../../outside")
                .file("a/dir/pwned", b"x");
        },
        Expect::Error("a/dir/pwned"),
    );
    // A symlink replaced by a directory and back, then written through.
    case(
        "symlink dir symlink",
        |s, t| {
            t.symlink("d", &s.outside())
                .dir("d/", 0o755)
                .file("d/inside", b"i")
                .symlink("d", "../outside")
                .file("d/secret", b"overwrite");
        },
        Expect::Error("d/secret"),
    );
    // A symlink created by an earlier layer, used by a later one: see two_layer_symlink_escape.
    // Symlink loops end in an error, not a hang.
    case(
        "symlink loop",
        |_, t| {
            t.symlink("l1", "l2").symlink("l2", "l1").file("l1/x", b"x");
        },
        Expect::Error("l1/x"),
    );
    // Device node through an outward symlink.
    case(
        "device through symlink",
        |s, t| {
            t.symlink("dev", &s.outside()).device("dev/sda", b'4', 8, 0);
        },
        Expect::Error("dev/sda"),
    );
    // Whiteouts through outward symlinks delete nothing outside (and nothing at all here).
    case(
        "whiteout through symlink",
        |s, t| {
            t.symlink("w", &s.outside())
                .file("w/.wh.secret", b"")
                .file("ok", b"");
        },
        Expect::Inside("ok"),
    );
    case(
        "opaque through symlink",
        |_, t| {
            t.symlink("o", "../../outside")
                .file("o/.wh..wh..opq", b"")
                .file("ok", b"");
        },
        Expect::Inside("ok"),
    );
    // Climbing symlinks clamp at the root: the write lands inside, like in the container.
    case(
        "climbing symlink re-rooted",
        |_, t| {
            t.symlink("up", "../../../../..").file("up/landed", b"x");
        },
        Expect::Inside("landed"),
    );
    // A file, symlink or dir entry replaces a symlink at its own path instead of following it.
    case(
        "file over outward symlink",
        |s, t| {
            t.symlink("f", &format!("{}/secret", s.outside()))
                .file("f", b"replaced");
        },
        Expect::Inside("f"),
    );
    case(
        "dir over outward symlink",
        |s, t| {
            t.symlink("d", &format!("{}/dir", s.outside()))
                .dir("d/", 0o700);
        },
        Expect::Inside("d"),
    );
}

#[test]
fn two_layer_symlink_escape() {
    for resolver in RESOLVERS {
        let scene = Scene::new();
        let mut first = Tar::new();
        first
            .symlink("etc", &scene.outside())
            .symlink("lib", "../../../outside");
        let root = open_root(&scene.rootfs(), resolver);
        extract_layer(&root, "sha256:first", &first.finish()[..]).unwrap();
        let mut second = Tar::new();
        second.file("etc/secret", b"overwritten");
        check(
            "earlier layer absolute symlink",
            &scene,
            resolver,
            &second.finish(),
            &Expect::Error("etc/secret"),
        );
        let mut third = Tar::new();
        third.file("lib/dir/file", b"overwritten");
        check(
            "earlier layer relative symlink",
            &scene,
            resolver,
            &gzip(&third.finish()),
            &Expect::Error("lib/dir/file"),
        );
        let mut fourth = Tar::new();
        fourth.hardlink("stolen", "etc/secret");
        check(
            "hardlink through earlier symlink",
            &scene,
            resolver,
            &fourth.finish(),
            &Expect::Error("stolen"),
        );
    }
}

#[test]
fn hardlink_escapes_are_refused() {
    case(
        "hardlink dotdot",
        |_, t| {
            t.hardlink("hl", "../outside/secret");
        },
        Expect::Error("hl"),
    );
    case(
        "hardlink absolute",
        |s, t| {
            t.hardlink("hl", &format!("{}/secret", s.outside()));
        },
        Expect::Error("hl"),
    );
    case(
        "hardlink through symlink",
        |_, t| {
            t.symlink("s", "../outside").hardlink("hl", "s/secret");
        },
        Expect::Error("hl"),
    );
    case(
        "hardlink to a directory",
        |_, t| {
            t.dir("d/", 0o755).hardlink("hl", "d");
        },
        Expect::Error("hl"),
    );
    case(
        "hardlink to nothing",
        |_, t| {
            t.hardlink("hl", "missing");
        },
        Expect::Error("hl"),
    );
}

#[test]
fn malformed_archives_are_refused() {
    case(
        "huge pax header",
        |_, t| {
            t.header(&Entry {
                size: 1 << 40,
                ..Entry::new(b"huge-pax", b'x')
            });
        },
        Expect::Error("huge-pax"),
    );
    case(
        "huge gnu long name",
        |_, t| {
            t.header(&Entry {
                size: 1 << 30,
                ..Entry::new(b"huge-longname", b'L')
            });
        },
        Expect::Error("huge-longname"),
    );
    case(
        "sparse file",
        |_, t| {
            t.entry(Entry::new(b"sparse", b'S'), b"");
        },
        Expect::Error("sparse"),
    );
    case(
        "uid -1",
        |_, t| {
            t.pax(&[("uid", b"4294967295")]).file("minus-one", b"x");
        },
        Expect::Error("minus-one"),
    );
    case(
        "unknown type",
        |_, t| {
            t.entry(Entry::new(b"weird", b'Z'), b"");
        },
        Expect::Error("weird"),
    );
    for resolver in RESOLVERS {
        // Cut in the middle of a file's data.
        let scene = Scene::new();
        let mut t = Tar::new();
        t.file("first", b"ok").file("big", &[7u8; 4096]);
        let cut = t.truncated(t.len() - 2000);
        check(
            "truncated data",
            &scene,
            resolver,
            &cut,
            &Expect::Error("big"),
        );
        // Cut in the middle of a header: the error names the last complete entry.
        let scene = Scene::new();
        let mut t = Tar::new();
        t.file("complete", b"ok").file("partial", b"x");
        let cut = t.truncated(1024 + 100);
        check(
            "truncated header",
            &scene,
            resolver,
            &gzip(&cut),
            &Expect::Error("complete"),
        );
        // A corrupt checksum.
        let scene = Scene::new();
        let mut t = Tar::new();
        t.file("corrupt", b"x");
        let mut bytes = t.finish();
        bytes[148] = b'7';
        check(
            "bad checksum",
            &scene,
            resolver,
            &bytes,
            &Expect::Error("corrupt"),
        );
        // Corrupt gzip stream.
        let scene = Scene::new();
        let mut t = Tar::new();
        t.file("gz", &[1u8; 10000]);
        let mut gz = gzip(&t.finish());
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        gz.truncate(gz.len() - 4);
        check(
            "corrupt gzip",
            &scene,
            resolver,
            &gz,
            &Expect::Error("sha256:hostile"),
        );
    }
    let _ = Path::new("");
}

/// Recomputes the checksum of every block that looks like a ustar header, so corrupted fields
/// reach the parser instead of stopping at the checksum.
fn fix_checksums(bytes: &mut [u8]) {
    for block in bytes.chunks_mut(512) {
        if block.len() == 512 && &block[257..262] == b"ustar" {
            block[148..156].copy_from_slice(b"        ");
            let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
            block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        }
    }
}

/// Random corruptions of a valid layer (plain and gzip) never panic and never change anything
/// outside the rootfs; each either applies or fails with an error.
#[test]
fn corrupted_layers_never_panic_or_escape() {
    let mut t = Tar::new();
    t.dir("d/", 0o755)
        .file("d/f", b"hello")
        .symlink("d/l", "../../outside")
        .hardlink("d/h", "d/f")
        .pax(&[("path", b"d/long"), ("SCHILY.xattr.user.x", b"1")])
        .file("x", b"pax")
        .gnu_long_name(b"d/gnu")
        .file("y", b"gnu")
        .device("d/null", b'3', 1, 3)
        .file("d/.wh.gone", b"")
        .file("d/.wh..wh..opq", b"");
    let clean = t.finish();
    let scene = Scene::new();
    let outside = scene.base.path().join("outside");
    let before = sentinel(&outside, Path::new("/nonexistent"));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut ok, mut failed) = (0, 0);
    for round in 0..400 {
        let mut bytes = clean.clone();
        for _ in 0..1 + round % 5 {
            let pos = (next() % bytes.len() as u64) as usize;
            bytes[pos] = next() as u8;
        }
        if round % 2 == 0 {
            fix_checksums(&mut bytes);
        }
        if round % 3 == 0 {
            let mut gz = gzip(&bytes);
            let pos = 10 + (next() % (gz.len() as u64 - 10)) as usize;
            gz[pos] ^= 1 << (next() % 8);
            bytes = gz;
        }
        let rootfs = scene.base.path().join(format!("rootfs{round}"));
        std::fs::create_dir(&rootfs).unwrap();
        let resolver = RESOLVERS[round % 2];
        match extract_layer(&open_root(&rootfs, resolver), "sha256:fuzz", &bytes[..]) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    assert_eq!(sentinel(&outside, Path::new("/nonexistent")), before);
    assert!(
        ok > 0 && failed > 0,
        "{ok} applied, {failed} refused: the corruptions did nothing"
    );
}
