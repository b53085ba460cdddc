//! The README's main command, `bash examples/run.sh`, run as a user runs it: from the repository
//! root (which has a Dockerfile of its own), with the kbuild under test. Needs root (RUN
//! namespaces), `docker-registry`, `busybox-static` and `skopeo`, as CI installs them.

use std::process::Command;

/// Regression test: run from the repository, the script built the repository's own Dockerfile
/// instead of each example's (a relative --dockerfile is looked up in the working directory
/// first, as Kaniko does), and failed.
#[test]
fn examples_run_sh_builds_every_example_from_the_repository_root() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg("examples/run.sh")
        .current_dir(repo)
        .env("KBUILD", env!("CARGO_BIN_EXE_kbuild"))
        .env("NO_COLOR", "1")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // What each example's image must show, as the script prints it from the pushed images.
    for expected in [
        "built by kbuild as root",
        "zego-streaming 1.0.0: serving with",
        "hello from a RUN heredoc",
        "ONBUILD trigger ran",
        "user: app workdir: /home/app",
        "== done: every image above was built and pushed",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing:\n{stdout}\n{stderr}"
        );
    }
}
