//! kbuild's own step image, as CI ships it: `.ci/step-image-context` compiles kbuild statically
//! and prepares the context, kbuild builds the repository's `Dockerfile` (both variants) and pushes
//! it to a real registry, and the image pulled back is checked: its config (entrypoint, user,
//! labels with the version and source revision), its files (no shell in the default variant,
//! busybox in the debug one), and `/kbuild --version` run inside the extracted rootfs alone
//! (chroot), which only works for a binary that needs nothing from the host.
//!
//! The first run compiles a release build into `target/step-image` (a few minutes on a 2-core
//! machine, see the README); later runs find it up to date. Needs root (chroot, and the debug
//! variant's RUN).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{Pulled, World, assert_success};
use crate::harness::{kbuild, run, text};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The commit the image is built from, as CI passes it (`unknown` outside a git checkout).
fn revision() -> String {
    Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Builds `variant` (`default` or `debug`) of the step image from `context` and pulls it back.
fn build_variant(world: &World, context: &Path, variant: &str, revision: &str) -> Pulled {
    let name = format!("kbuild:{variant}");
    let mut cmd = kbuild();
    cmd.arg("build")
        .arg(format!("--context={}", context.display()))
        .arg(format!(
            "--dockerfile={}",
            repo().join("Dockerfile").display()
        ))
        .arg(format!("--target={variant}"))
        .arg("--skip-unused-stages")
        .arg(format!("--build-arg=VERSION={}", env!("CARGO_PKG_VERSION")))
        .arg(format!("--build-arg=REVISION={revision}"))
        .arg(format!("--destination={}", world.image(&name)))
        .arg(format!("--kaniko-dir={}", world.work_dir().display()))
        .arg("--insecure");
    assert_success(&run(&mut cmd));
    world.pull(&name)
}

/// Runs `command` with `rootfs` as `/`: only the image's own files are there.
fn run_in(rootfs: &Path, command: &[&str]) -> (bool, String, String) {
    let out = Command::new("/usr/sbin/chroot")
        .arg(rootfs)
        .args(command)
        .env_clear()
        .output()
        .expect("chroot (coreutils) runs");
    let (stdout, stderr) = text(&out);
    (out.status.success(), stdout, stderr)
}

fn check_config(image: &Pulled, revision: &str) {
    let config = &image.config.config;
    assert_eq!(
        config.entrypoint.as_deref(),
        Some(&["/kbuild".to_string()][..])
    );
    assert_eq!(config.cmd, None);
    assert_eq!(config.user.as_deref(), Some("0:0"));
    let labels = config.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        labels
            .get("org.opencontainers.image.revision")
            .map(String::as_str),
        Some(revision)
    );
    let env = config.env.clone().unwrap_or_default();
    assert!(
        env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_string()),
        "{env:?}"
    );
    assert_eq!(
        std::fs::read(image.rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap(),
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap()
    );
    assert_eq!(image.owner_mode("/kbuild"), (0o755, 0, 0));
}

#[test]
fn kbuilds_step_image_is_built_by_kbuild_and_runs_with_nothing_but_its_own_files() {
    let world = World::bare();
    let context = world.context("step-image");
    let prepared = Command::new(repo().join(".ci/step-image-context"))
        .arg(&context)
        .output()
        .expect("run .ci/step-image-context");
    assert!(prepared.status.success(), "{:?}", text(&prepared));
    let revision = revision();
    let version_line = format!("kbuild {}\n", env!("CARGO_PKG_VERSION"));

    let image = build_variant(&world, &context, "default", &revision);
    check_config(&image, &revision);
    assert!(!image.exists("/bin/sh"), "the default variant has a shell");
    assert!(!image.exists("/bin"));
    let (ok, stdout, stderr) = run_in(&image.rootfs, &["/kbuild", "--version"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, version_line);
    // A subcommand meant for `kubectl exec` into a shell-less step works there too.
    let (ok, _, stderr) = run_in(&image.rootfs, &["/kbuild", "debug", "continue"]);
    assert!(!ok);
    assert!(
        stderr.contains("not inside a Tekton step with a debug breakpoint"),
        "{stderr}"
    );

    let debug = build_variant(&world, &context, "debug", &revision);
    check_config(&debug, &revision);
    assert!(debug.exists("/bin/busybox"));
    assert_eq!(
        std::fs::read_link(debug.rootfs.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let (ok, stdout, stderr) = run_in(&debug.rootfs, &["/bin/sh", "-c", "/kbuild --version"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, version_line);
}
