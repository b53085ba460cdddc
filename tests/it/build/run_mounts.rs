//! `RUN --mount`: cache mounts that outlive a build, tmpfs, and bind mounts of the context and of
//! a stage, none of which reaches a layer; bound files are part of the RUN's cache key.

use super::{World, assert_failure_says, assert_success, write};

#[test]
fn build_cache_mount_keeps_its_files_across_builds_and_out_of_the_image() {
    let world = World::new();
    let ctx = world.context("cache-mount");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nWORKDIR /src\n\
         RUN --mount=type=cache,target=/root/.cache/tool,id=tool \
         echo run >> /root/.cache/tool/runs && wc -l < /root/.cache/tool/runs > /seen \
         && ls -ld /root/.cache/tool | cut -c1-10 > /mode\n\
         RUN --mount=type=tmpfs,target=scratch sh -c \
         'echo x > /src/scratch/f && grep -q tmpfs /proc/mounts && echo tmpfs > /tmpfs.txt'\n",
    );
    assert_success(&world.build(&ctx, "cache-mount:1", &[]));
    assert_success(&world.build(&ctx, "cache-mount:2", &[]));
    let (first, second) = (world.pull("cache-mount:1"), world.pull("cache-mount:2"));
    assert_eq!(first.read("/seen").trim(), "1");
    assert_eq!(
        second.read("/seen").trim(),
        "2",
        "the cache mount kept the first build's file"
    );
    assert_eq!(first.read("/mode"), "drwxr-xr-x\n");
    assert_eq!(first.read("/tmpfs.txt"), "tmpfs\n");
    for image in [&first, &second] {
        assert!(
            !image.exists("/root/.cache"),
            "the mount point stayed in a layer"
        );
        assert!(
            !image.exists("/src/scratch"),
            "the tmpfs mount point stayed in a layer"
        );
        assert!(image.exists("/src"), "WORKDIR itself stays");
    }
}

#[test]
fn build_bind_mounts_show_the_context_and_a_stage_read_only() {
    let world = World::new();
    let ctx = world.context("bind-mount");
    write(&ctx, "src/message.txt", "from the context\n");
    write(&ctx, "src/ignored.log", "never visible\n");
    write(&ctx, ".dockerignore", "**/*.log\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE AS builder\nRUN mkdir /out && echo built > /out/artifact\n\
         FROM $BASE\n\
         RUN --mount=type=bind,source=src,target=/in \
         cat /in/message.txt > /copied.txt && ls /in > /listing.txt\n\
         RUN --mount=type=bind,from=builder,source=/out/artifact,target=/opt/artifact \
         cp /opt/artifact /artifact\n\
         RUN --mount=type=bind,target=/ctx sh -c 'touch /ctx/new 2>/dev/null && echo writable \
         || echo read-only' > /bind-mode.txt\n\
         RUN --mount=type=bind,target=/ctx,rw touch /ctx/new && echo ok > /rw.txt\n",
    );
    let out = world.build(&ctx, "bind-mount:1", &[]);
    assert_success(&out);
    let image = world.pull("bind-mount:1");
    assert_eq!(image.read("/copied.txt"), "from the context\n");
    assert_eq!(
        image.read("/listing.txt"),
        "message.txt\n",
        ".dockerignore applies"
    );
    assert_eq!(image.read("/artifact"), "built\n");
    assert_eq!(image.read("/bind-mode.txt"), "read-only\n");
    assert_eq!(image.read("/rw.txt"), "ok\n");
    assert!(
        !ctx.join("new").exists(),
        "a writable bind wrote into the context"
    );
    for gone in ["/in", "/opt", "/ctx"] {
        assert!(!image.exists(gone), "{gone} stayed in a layer");
    }
}

#[test]
fn build_bind_mounted_files_are_in_the_run_cache_key() {
    let world = World::new();
    let ctx = world.context("bind-key");
    write(&ctx, "version.txt", "1\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\n\
         RUN --mount=type=bind,source=version.txt,target=/version.txt cp /version.txt /built\n",
    );
    let cache = format!("--cache-repo={}", world.image("bind-key/cache"));
    let flags = ["--cache=true", cache.as_str()];
    assert_success(&world.build(&ctx, "bind-key:1", &flags));
    write(&ctx, "version.txt", "2\n");
    let out = world.build(&ctx, "bind-key:2", &flags);
    assert_success(&out);
    assert_eq!(
        world.pull("bind-key:2").read("/built"),
        "2\n",
        "a stale cache hit"
    );
    // Unchanged, it hits.
    let report = world.dir.path().join("bind-key-3.json");
    let report_flag = format!("--report={}", report.display());
    assert_success(&world.build(&ctx, "bind-key:3", &[flags[0], flags[1], &report_flag]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let run = &report["stages"][0]["instructions"][0];
    assert_eq!(run["cache"]["status"], "hit", "{run}");
    assert_eq!(world.pull("bind-key:3").read("/built"), "2\n");
}

#[test]
fn build_run_mount_refusals_are_clear() {
    let world = World::new();
    let ctx = world.context("mount-refusals");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN --mount=type=ssh true\n",
    );
    let out = world.build(&ctx, "mount-refusals:1", &[]);
    assert_failure_says(&out, "RUN --mount=type=ssh is not supported yet");

    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN --mount=type=tmpfs,target=/t true\n",
    );
    let out = world.build(&ctx, "mount-refusals:2", &["--isolation=chroot"]);
    assert_failure_says(&out, "RUN --mount needs a mount namespace");

    // A target that goes through a symlink could lead out of the rootfs: refused.
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN ln -s / /escape\nRUN --mount=type=tmpfs,target=/escape/x true\n",
    );
    let out = world.build(&ctx, "mount-refusals:3", &[]);
    assert_failure_says(&out, "may not go through a symlink");
}

/// Mounts go parents first whatever the order written (BuildKit's rule), so a cache inside a
/// bind of the context works; one cache id used twice with `sharing=locked` in one RUN does not
/// wait for itself.
#[test]
fn build_nested_mounts_and_a_locked_cache_used_twice() {
    let world = World::new();
    let ctx = world.context("nested-mounts");
    write(&ctx, "package.json", "{}\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nWORKDIR /app\n\
         RUN --mount=type=cache,target=node_modules --mount=type=bind,target=. \
         sh -c 'cat package.json > /seen.json && echo run >> node_modules/runs \
         && wc -l < node_modules/runs > /runs.txt'\n\
         RUN --mount=type=cache,id=x,target=/a,sharing=locked \
         --mount=type=cache,id=x,target=/b,sharing=locked sh -c 'echo same > /a/f && cat /b/f > /same.txt'\n",
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let first = world.build(&ctx, "nested:1", &[]);
            let second = world.build(&ctx, "nested:2", &[]);
            let _ = done_tx.send((first, second));
        });
        let (first, second) = done_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the builds did not end: a cache lock waits for itself");
        assert_success(&first);
        assert_success(&second);
    });
    let image = world.pull("nested:2");
    assert_eq!(image.read("/seen.json"), "{}\n");
    assert_eq!(
        image.read("/runs.txt").trim(),
        "2",
        "the cache inside the bind was kept"
    );
    assert_eq!(image.read("/same.txt"), "same\n");
    assert!(!image.exists("/app/node_modules"));
}

/// Safety: a symlink inside an earlier mount (here the bound context's `src/l -> /opt`) is not
/// followed to place a later mount, which could land on the host while its `/` is visible.
#[test]
fn build_mount_target_through_a_symlink_in_an_earlier_mount_is_refused() {
    let world = World::new();
    let ctx = world.context("mount-symlink");
    write(&ctx, "src/keep.txt", "x\n");
    let outside = world.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, ctx.join("src/l")).unwrap();
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\n\
         RUN --mount=type=bind,source=src,target=/s --mount=type=tmpfs,target=/s/l/x true\n",
    );
    let out = world.build(&ctx, "mount-symlink:1", &[]);
    assert_failure_says(&out, "may not go through a symlink");
    assert!(
        !outside.join("x").exists(),
        "a mount point was made outside the rootfs"
    );

    // The same through a cache mount, whose symlink an earlier RUN left: the sandbox itself
    // walks the target and refuses it. `y` exists outside, so following the link would mount
    // there (on the host path, in the RUN's namespace) and the RUN would succeed.
    std::fs::create_dir_all(outside.join("y")).unwrap();
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "ARG BASE\nFROM $BASE\n\
             RUN --mount=type=cache,id=trap,target=/c ln -sfn {} /c/l\n\
             RUN --mount=type=cache,id=trap,target=/c --mount=type=tmpfs,target=/c/l/y true\n",
            outside.display()
        ),
    );
    let out = world.build(&ctx, "mount-symlink:3", &[]);
    assert_failure_says(&out, "may not go through a symlink");
    assert_eq!(std::fs::read_dir(outside.join("y")).unwrap().count(), 0);

    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN --mount=type=tmpfs,target=/proc/self/root/tmp true\n",
    );
    let out = world.build(&ctx, "mount-symlink:2", &[]);
    assert_failure_says(&out, "belongs to the RUN's sandbox");
}

/// `--secret` values reach a RUN as a file and as a variable, and nowhere else: not in a layer,
/// the config, the history or the report; a required secret nobody gave fails the build.
#[test]
fn build_secret_mounts_reach_the_run_and_nothing_else() {
    let world = World::new();
    let ctx = world.context("secrets");
    let token = world.dir.path().join("token");
    std::fs::write(&token, "s3cr3t-file").unwrap();
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\n\
         RUN --mount=type=secret,id=token sh -c \
         'sha256sum < /run/secrets/token > /sum.txt && ls -l /run/secrets/token | cut -c1-10 > /mode.txt'\n\
         RUN --mount=type=secret,id=api,env=API_KEY,target=/etc/api sh -c \
         'printf %s \"$API_KEY\" | sha256sum > /env-sum.txt && sha256sum < /etc/api > /api-sum.txt'\n\
         RUN --mount=type=secret,id=absent echo optional secret skipped > /skipped.txt\n",
    );
    let report = world.dir.path().join("secrets.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("build")
        .arg(format!("--context={}", ctx.display()))
        .arg(format!("--dockerfile={}", ctx.join("Dockerfile").display()))
        .arg(format!("--destination={}", world.image("secrets:1")))
        .arg(format!("--kaniko-dir={}", world.work_dir().display()))
        .arg(format!("--build-arg=BASE={}", world.base()))
        .arg(format!("--secret=id=token,src={}", token.display()))
        .arg("--secret=id=api,env=KBUILD_TEST_API")
        .arg(format!("--report={}", report.display()))
        .args(["--insecure", "--insecure-pull"])
        .env("KBUILD_TEST_API", "s3cr3t-env")
        .output()
        .unwrap();
    assert_success(&out);
    let image = world.pull("secrets:1");
    assert_eq!(image.read("/mode.txt"), "-r--------\n");
    let sum = |text: &str| format!("{}  -\n", kbuild::digest::Digest::of(text.as_bytes()).hex());
    assert_eq!(image.read("/sum.txt"), sum("s3cr3t-file"));
    assert_eq!(image.read("/env-sum.txt"), sum("s3cr3t-env"));
    assert_eq!(image.read("/api-sum.txt"), sum("s3cr3t-env"));
    assert_eq!(image.read("/skipped.txt"), "optional secret skipped\n");
    for gone in ["/run/secrets", "/etc/api"] {
        assert!(!image.exists(gone), "{gone} stayed in a layer");
    }
    // Nowhere: not in any file of the image, its config and history, the report or the log.
    let mut seen = Vec::new();
    for entry in walk(&image.rootfs) {
        if let Ok(bytes) = std::fs::read(&entry) {
            seen.push((entry.display().to_string(), bytes));
        }
    }
    seen.push(("config".into(), serde_json::to_vec(&image.config).unwrap()));
    seen.push(("report".into(), std::fs::read(&report).unwrap()));
    seen.push((
        "log".into(),
        [out.stdout.clone(), out.stderr.clone()].concat(),
    ));
    for (what, bytes) in &seen {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("s3cr3t"), "a secret leaked into {what}");
    }

    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN --mount=type=secret,id=npmrc,required true\n",
    );
    let out = world.build(&ctx, "secrets:2", &[]);
    assert_failure_says(&out, "the secret \"npmrc\" is required and was not given");
}

/// Every regular file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}
