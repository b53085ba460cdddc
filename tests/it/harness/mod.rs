//! Shared test harness: running the kbuild binary and reading its output.

use std::process::{Command, Output};

/// The kbuild binary built for this test run, started in an empty directory.
pub fn kbuild() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbuild"));
    // Tests must not depend on the developer's terminal or environment. That includes the
    // working directory: `--dockerfile=Dockerfile` is looked up there before the context (as
    // Kaniko does), and the repository has a Dockerfile of its own.
    let cwd = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kbuild-cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    cmd.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("KANIKO_DIR")
        .env_remove("KANIKO_NO_PUSH")
        .env_remove("KANIKO_REGISTRY_MIRROR")
        .env_remove("DOCKER_CONFIG");
    cmd
}

/// Runs a command and returns its output, failing the test if it could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("failed to start kbuild")
}

/// stdout and stderr of a finished command as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub mod proxy;
pub mod registry;
pub mod rootfs;
pub mod tekton;
