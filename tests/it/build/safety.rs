//! A build touches nothing outside its work directory, and builds sharing a machine do not meet.

use super::{World, assert_success, write};
use crate::harness::rootfs;

#[test]
fn build_changes_nothing_outside_the_work_dir() {
    let world = World::new();
    let ctx = world.context("sentinel");
    write(&ctx, "input.txt", "context file\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nCOPY input.txt /input.txt\n\
         RUN echo changed > /input.txt && rm /etc/passwd && echo x > /outside-attempt\n\
         RUN ln -s / /hostroot && echo pwned > /hostroot/tmp/pwned || true\n",
    );
    let sentinel = world.dir.path().join("sentinel");
    write(&sentinel, "a/file", "sentinel\n");
    std::os::unix::fs::symlink("/etc", sentinel.join("etc-link")).unwrap();
    let context_before = rootfs::fingerprint(&ctx);
    let sentinel_before = rootfs::fingerprint(&sentinel);
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let out = world.build(&ctx, "sentinel:1", &[]);
    assert_success(&out);
    assert_eq!(
        rootfs::fingerprint(&ctx),
        context_before,
        "the context is read-only to a build"
    );
    assert_eq!(rootfs::fingerprint(&sentinel), sentinel_before);
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        mounts_before
    );
    assert!(!std::path::Path::new("/outside-attempt").exists());
    let image = world.pull("sentinel:1");
    assert_eq!(image.read("/input.txt"), "changed\n");
    assert!(
        !image.exists("/etc/passwd"),
        "the RUN's deletion is in the image"
    );
    assert_eq!(
        image.read("/tmp/pwned"),
        "pwned\n",
        "the symlink resolved inside the rootfs"
    );
}

#[test]
fn build_two_builds_at_once_do_not_interfere() {
    let world = World::new();
    let mut children = Vec::new();
    for name in ["left", "right"] {
        let ctx = world.context(name);
        write(
            &ctx,
            "Dockerfile",
            &format!(
                "ARG BASE\nFROM $BASE\nRUN for i in 1 2 3 4 5; do echo {name} >> /who; sleep 0.1; done\n"
            ),
        );
        let mut cmd = crate::harness::kbuild();
        cmd.arg("build")
            .arg(format!("--context={}", ctx.display()))
            .arg(format!(
                "--destination={}",
                world.image(&format!("{name}:1"))
            ))
            .arg(format!("--kaniko-dir={}", world.work_dir().display()))
            .arg(format!("--build-arg=BASE={}", world.base()))
            .args(["--insecure", "--insecure-pull"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }
    assert_eq!(world.pull("left:1").read("/who"), "left\n".repeat(5));
    assert_eq!(world.pull("right:1").read("/who"), "right\n".repeat(5));
}
