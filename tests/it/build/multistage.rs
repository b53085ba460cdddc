//! Several stages: the seed scenario of CONTEXT.md section 2, cross-stage checks, targets.

use super::{World, assert_success, write};
use crate::harness::{kbuild, run, text};

/// The zego-streaming shape: the builder copies the context to /workspace, "compiles" a binary
/// under it, and modifies a context file in place; the final stage copies both.
pub(crate) fn seed_context(world: &World) -> std::path::PathBuf {
    let ctx = world.context("seed-src");
    write(
        &ctx,
        "services/platform/zego-streaming/main.go",
        "package main\n",
    );
    write(&ctx, "config.yaml", "mode: dev\n");
    write(
        &ctx,
        "services/platform/zego-streaming/Dockerfile",
        "ARG BASE\nFROM $BASE AS builder\nCOPY . /workspace\nRUN echo go version go1.22\n\
         RUN cd /workspace/services/platform/zego-streaming && \
         (cat main.go; echo compiled) > zego-streaming && chmod 755 zego-streaming\n\
         RUN echo 'mode: release' >> /workspace/config.yaml\n\
         FROM $BASE\n\
         COPY --from=builder /workspace/services/platform/zego-streaming/zego-streaming /app/zego-streaming\n\
         COPY --from=builder /workspace/config.yaml /app/config.yaml\n\
         ENTRYPOINT [\"/app/zego-streaming\"]\n",
    );
    ctx
}

/// Runs the build as a Tekton step would: the context sits on a bind mount at
/// <tmp>/workspace/source (a mount point, like Tekton's /workspace), the digest goes to a results
/// directory. The mount lives in a private mount namespace of the test's own (needs root).
/// `extra` flags are appended (each must be shell-safe).
pub(crate) fn build_like_tekton(
    world: &World,
    src: &std::path::Path,
    name: &str,
    results: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let workspace = world.dir.path().join("workspace/source");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::create_dir_all(results).unwrap();
    let kbuild_bin = env!("CARGO_BIN_EXE_kbuild");
    let script = format!(
        "mount --bind '{src}' '{ws}' && exec '{bin}' build \
         --dockerfile=./services/platform/zego-streaming/Dockerfile --context='{ws}/./' \
         --destination={dest} --digest-file='{results}/IMAGE_DIGEST' --build-arg=BASE={base} \
         --kaniko-dir='{work}' --insecure --insecure-pull --reproducible {extra}",
        src = src.display(),
        ws = workspace.display(),
        bin = kbuild_bin,
        dest = world.image(name),
        results = results.display(),
        base = world.base(),
        work = world.work_dir().display(),
        extra = extra.join(" "),
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .current_dir(&workspace)
        .env("NO_COLOR", "1")
        .env_remove("DOCKER_CONFIG");
    run(&mut cmd)
}

#[test]
fn build_seed_scenario_keeps_compiled_file_and_in_place_change_reproducibly() {
    let world = World::new();
    let src = seed_context(&world);
    let first_results = world.dir.path().join("results-1");
    let out = build_like_tekton(&world, &src, "zego-streaming-s2:1", &first_results, &[]);
    assert_success(&out);
    let image = world.pull("zego-streaming-s2:1");
    assert_eq!(
        image.read("/app/zego-streaming"),
        "package main\ncompiled\n"
    );
    assert_eq!(image.owner_mode("/app/zego-streaming").0, 0o755);
    // The in-place modification of a context file reaches the final image (Kaniko variant 3).
    assert_eq!(image.read("/app/config.yaml"), "mode: dev\nmode: release\n");
    let digest = std::fs::read_to_string(first_results.join("IMAGE_DIGEST")).unwrap();
    assert_eq!(
        digest, image.digest,
        "digest file is byte-exact, no newline"
    );

    // A second run (same pod, same work dir) gives the same image.
    let second_results = world.dir.path().join("results-2");
    let out = build_like_tekton(&world, &src, "zego-streaming-s2:2", &second_results, &[]);
    assert_success(&out);
    let again = std::fs::read_to_string(second_results.join("IMAGE_DIGEST")).unwrap();
    assert_eq!(
        again, digest,
        "--reproducible builds of the same inputs have one digest"
    );
}

#[test]
fn build_missing_cross_stage_source_fails_at_the_producer_with_its_layers() {
    let world = World::new();
    let ctx = world.context("missing-dep");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE AS builder\nRUN mkdir -p /out && echo x > /out/other\n\
         FROM $BASE\nCOPY --from=builder /out/app /app\n",
    );
    let out = world.build(&ctx, "missing-dep:1", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "stage builder did not produce /out/app, which stage stage-1 copies \
             (Dockerfile:5: COPY --from=builder /out/app /app)"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("the instruction that should have made it: Dockerfile:3: RUN mkdir -p /out"),
        "{stderr}"
    );
    assert!(
        stderr.contains("layers applied in stage builder:"),
        "{stderr}"
    );
    // The consumer stage never started.
    assert!(!stderr.contains("building stage 1"), "{stderr}");
}

#[test]
fn build_target_and_skip_unused_stages_choose_what_runs() {
    let world = World::new();
    let ctx = world.context("targets");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE AS broken\nRUN exit 3\n\
         FROM $BASE AS good\nRUN echo good > /good\n\
         FROM good AS final\nCOPY --from=1 /good /copied\nRUN cat /good > /final\n\
         FROM $BASE AS after\nRUN exit 4\n",
    );
    let out = world.build(
        &ctx,
        "targets:1",
        &["--target=final", "--skip-unused-stages"],
    );
    assert_success(&out);
    let image = world.pull("targets:1");
    assert_eq!(image.read("/final"), "good\n");
    assert_eq!(image.read("/copied"), "good\n");
    // Kaniko's default builds every stage up to the target, so the broken one fails the build.
    let out = world.build(&ctx, "targets:2", &["--target=final"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
}

#[test]
fn build_no_push_writes_only_local_outputs() {
    let world = World::new();
    let ctx = world.context("local");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN echo local > /local.txt\n",
    );
    let layout = world.dir.path().join("layout");
    let tarball = world.dir.path().join("image.tar");
    let mut cmd = kbuild();
    cmd.arg("build")
        .arg(format!("--context={}", ctx.display()))
        .arg(format!("--kaniko-dir={}", world.work_dir().display()))
        .arg(format!("--build-arg=BASE={}", world.base()))
        .arg("--no-push")
        .arg("--insecure-pull")
        .arg(format!("--oci-layout-path={}", layout.display()))
        .arg(format!("--tar-path={}", tarball.display()));
    let out = run(&mut cmd);
    assert_success(&out);
    for target in [
        format!("oci:{}", layout.display()),
        format!("docker-archive:{}", tarball.display()),
    ] {
        let inspect = std::process::Command::new("skopeo")
            .args(["inspect", &target])
            .output()
            .expect("skopeo");
        assert!(
            inspect.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
    }
}
