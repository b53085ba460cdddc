//! Tekton behaviours of the binary, in a simulated step filesystem.

use crate::harness::{kbuild, run, text};

/// Lays out what Tekton gives a step paused at a debug breakpoint: /tekton/debug/info/<n> and
/// /tekton/run/<n>.
fn paused_step(n: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(format!("debug/info/{n}"))).unwrap();
    std::fs::create_dir_all(dir.path().join(format!("run/{n}"))).unwrap();
    dir
}

#[test]
fn debug_continue_releases_the_breakpoint_like_tektons_script() {
    let tekton = paused_step(1);
    let out = run(kbuild()
        .args(["debug", "continue", "--tekton-dir"])
        .arg(tekton.path()));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("step 1"), "{stdout}");
    assert!(tekton.path().join("run/1/out").is_file());
    assert_eq!(
        std::fs::read_to_string(tekton.path().join("run/1/out.breakpointexit")).unwrap(),
        "0\n"
    );
}

#[test]
fn debug_fail_continue_marks_the_step_failed() {
    let tekton = paused_step(0);
    let out = run(kbuild()
        .args(["debug", "fail-continue", "--tekton-dir"])
        .arg(tekton.path()));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(tekton.path().join("run/0/out.err").is_file());
    assert!(!tekton.path().join("run/0/out").exists());
    assert_eq!(
        std::fs::read_to_string(tekton.path().join("run/0/out.breakpointexit")).unwrap(),
        "1\n"
    );
}

#[test]
fn debug_outside_a_paused_step_is_refused() {
    let empty = tempfile::tempdir().unwrap();
    let out = run(kbuild()
        .args(["debug", "continue", "--tekton-dir"])
        .arg(empty.path()));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("not inside a Tekton step with a debug breakpoint"),
        "{stderr}"
    );
}
