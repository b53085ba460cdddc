//! Contexts other than a plain directory: Kaniko's `tar://` from a file and from stdin, made by
//! the system's own `tar`.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{World, assert_success, write};
use crate::harness::{kbuild, text};

/// A context directory holding `app/app.Dockerfile` and `app/src/message.txt`, archived by `tar`
/// with `flags` (`czf` for gzip, `cf` for none) into `archive` ("-" for stdout).
fn archive(world: &World, flags: &str, archive: &str) -> Vec<u8> {
    let ctx = world.context("to-archive");
    write(&ctx, "app/src/message.txt", "from the archive\n");
    write(
        &ctx,
        "app/app.Dockerfile",
        "ARG BASE\nFROM $BASE\nCOPY src/message.txt /message.txt\n\
         RUN cat /message.txt > /ran.txt\n",
    );
    tar(Command::new("tar")
        .args([flags, archive, "-C"])
        .arg(&ctx)
        .arg("app"))
}

/// Runs the system's `tar`; its stdout.
fn tar(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn build(world: &World, context: &str, name: &str) -> Command {
    let mut cmd = kbuild();
    cmd.arg("build")
        .arg(format!("--context={context}"))
        .arg("--context-sub-path=app")
        // Not "Dockerfile": a relative --dockerfile is tried in the working directory first,
        // and the repository, where tests run, has one.
        .arg("--dockerfile=app.Dockerfile")
        .arg(format!("--destination={}", world.image(name)))
        .arg(format!("--kaniko-dir={}", world.work_dir().display()))
        .arg(format!("--build-arg=BASE={}", world.base()))
        .args(["--insecure", "--insecure-pull"]);
    cmd
}

#[test]
fn build_from_a_tar_context_file_and_from_stdin() {
    let world = World::new();
    let file = world.dir.path().join("context.tar.gz");
    archive(&world, "czf", file.to_str().unwrap());
    let mut cmd = build(&world, &format!("tar://{}", file.display()), "tar-file:1");
    assert_success(&cmd.output().unwrap());
    let image = world.pull("tar-file:1");
    assert_eq!(image.read("/message.txt"), "from the archive\n");
    assert_eq!(image.read("/ran.txt"), "from the archive\n");

    // An uncompressed tar on stdin, as `tar cf - ... | kbuild --context=tar://stdin`.
    let bytes = archive(&world, "cf", "-");
    let mut child = build(&world, "tar://stdin", "tar-stdin:1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let image = world.pull("tar-stdin:1");
    assert_eq!(image.read("/message.txt"), "from the archive\n");
}

#[test]
fn build_from_a_hostile_tar_context_fails_naming_the_entry() {
    let world = World::new();
    let file = world.dir.path().join("evil.tar");
    let ctx = world.context("evil");
    write(&ctx, "app/app.Dockerfile", "FROM scratch\n");
    // GNU tar keeps `..` in member names when told to (--transform runs after the check).
    tar(Command::new("tar")
        .arg("cf")
        .arg(&file)
        .arg("-C")
        .arg(&ctx)
        .args(["--transform", "s|^app/app.Dockerfile|../escaped|", "app"]));
    let out = build(&world, &format!("tar://{}", file.display()), "evil:1")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("../escaped"), "{stderr}");
    assert!(
        stderr.contains("hint: the archive must be a tar"),
        "{stderr}"
    );
    assert!(!world.work_dir().join("escaped").exists());
}
