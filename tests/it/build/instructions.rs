//! One stage, instruction by instruction: files, config and history as Docker would make them.

use super::{World, assert_success, write};
use crate::harness::text;

#[test]
fn build_run_copy_env_and_config_end_up_in_the_image() {
    let world = World::new();
    let ctx = world.context("hello");
    write(&ctx, "hello.txt", "hello from the context\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nARG GREETING=hi\nENV APP_HOME=/srv/app\n\
         COPY hello.txt $APP_HOME/\nRUN echo \"$GREETING from RUN\" > $APP_HOME/run.txt\n\
         LABEL org.example.team=build\nEXPOSE 8080 53/udp\nVOLUME /data\nSTOPSIGNAL SIGTERM\n\
         CMD [\"cat\", \"/srv/app/run.txt\"]\n",
    );
    let out = world.build(&ctx, "hello:1", &["--label=org.example.commit=abc123"]);
    assert_success(&out);
    let image = world.pull("hello:1");
    assert_eq!(image.read("/srv/app/hello.txt"), "hello from the context\n");
    assert_eq!(image.read("/srv/app/run.txt"), "hi from RUN\n");
    // Context files belong to root and keep their mode.
    assert_eq!(image.owner_mode("/srv/app/hello.txt"), (0o644, 0, 0));
    let config = &image.config.config;
    let env = config.env.clone().unwrap();
    assert!(env.contains(&"APP_HOME=/srv/app".to_string()), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("GREETING=")),
        "ARGs stay out of the image"
    );
    let labels = config.labels.clone().unwrap();
    assert_eq!(labels["org.example.team"], "build");
    assert_eq!(labels["org.example.commit"], "abc123");
    let ports: Vec<&String> = config.exposed_ports.as_ref().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "8080/tcp"]);
    assert!(config.volumes.as_ref().unwrap().contains_key("/data"));
    assert_eq!(config.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(config.cmd.clone().unwrap(), ["cat", "/srv/app/run.txt"]);
    // History: base entries, then one per instruction; metadata ones have no layer.
    let history = image.history();
    let own: Vec<&(String, bool)> = history.iter().skip(2).collect();
    assert_eq!(own[0], &("ARG GREETING=hi".to_string(), true));
    assert_eq!(own[1], &("ENV APP_HOME=/srv/app".to_string(), true));
    assert_eq!(own[2], &("COPY hello.txt /srv/app/".to_string(), false));
    assert_eq!(
        own[3],
        &(
            "RUN |1 GREETING=hi /bin/sh -c echo \"$GREETING from RUN\" > $APP_HOME/run.txt"
                .to_string(),
            false
        )
    );
    assert!(own[4..].iter().all(|(_, empty)| *empty), "{own:?}");
    // Base layer + COPY + RUN.
    assert_eq!(image.layers, 3);
}

#[test]
fn build_failed_run_hands_on_its_exit_code_and_last_lines() {
    let world = World::new();
    let ctx = world.context("fail");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN echo first line; echo compiler says no >&2; exit 7\n",
    );
    let out = world.build(&ctx, "fail:1", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(stderr.contains("returned a non-zero code: 7"), "{stderr}");
    assert!(stderr.contains("  compiler says no"), "{stderr}");
    assert!(stderr.contains("the build report is at"), "{stderr}");
    assert!(stderr.contains("; `kbuild explain` tells why"), "{stderr}");
}

#[test]
fn build_copy_follows_docker_rules() {
    let world = World::new();
    let ctx = world.context("copy");
    write(&ctx, "src/a.go", "package a\n");
    write(&ctx, "src/b.go", "package b\n");
    write(&ctx, "src/notes.md", "notes\n");
    write(&ctx, "src/sub/c.go", "package c\n");
    write(&ctx, "secret.env", "TOKEN=1\n");
    write(&ctx, ".dockerignore", "secret.env\n");
    std::os::unix::fs::symlink("a.go", ctx.join("src/link.go")).unwrap();
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\n\
         COPY src/*.go /wild/\n\
         COPY src /tree\n\
         COPY src/a.go /renamed.go\n\
         COPY --chown=app:staff --chmod=0750 src/b.go /owned/deep/b.go\n\
         COPY --chown=4242 src/a.go /numeric.go\n\
         WORKDIR /work\n\
         COPY src/notes.md relative/\n",
    );
    let out = world.build(&ctx, "copy:1", &[]);
    assert_success(&out);
    let image = world.pull("copy:1");
    // Wildcards match one level; the symlink matches *.go and is followed as a source.
    assert_eq!(image.read("/wild/a.go"), "package a\n");
    assert_eq!(image.read("/wild/link.go"), "package a\n");
    assert!(!image.exists("/wild/c.go") && !image.exists("/wild/notes.md"));
    // A directory source copies its contents; symlinks inside stay symlinks.
    assert_eq!(image.read("/tree/sub/c.go"), "package c\n");
    assert!(!image.exists("/tree/src"));
    let link = std::fs::read_link(image.rootfs.join("tree/link.go")).unwrap();
    assert_eq!(link.to_str(), Some("a.go"));
    assert_eq!(image.read("/renamed.go"), "package a\n");
    assert_eq!(image.owner_mode("/owned/deep/b.go"), (0o750, 1000, 50));
    // Directories COPY creates belong to the --chown user too.
    assert_eq!(image.owner_mode("/owned/deep").1, 1000);
    // A user alone means the same number as group.
    assert_eq!(image.owner_mode("/numeric.go"), (0o644, 4242, 4242));
    assert_eq!(image.read("/work/relative/notes.md"), "notes\n");
}

#[test]
fn build_copy_of_a_missing_or_ignored_source_names_the_pattern_and_line() {
    let world = World::new();
    let ctx = world.context("missing");
    write(&ctx, "secret.env", "TOKEN=1\n");
    write(&ctx, ".dockerignore", "secret.env\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nCOPY secret.env /\n",
    );
    let out = world.build(&ctx, "missing:1", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(
        stderr
            .contains("\"secret.env\": not found in the build context (excluded by .dockerignore)"),
        "{stderr}"
    );
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nCOPY nothing/*.txt /\n",
    );
    let out = world.build(&ctx, "missing:2", &[]);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("\"nothing/*.txt\": no source files were specified"),
        "{stderr}"
    );
}

#[test]
fn build_user_and_workdir_resolve_in_the_rootfs() {
    let world = World::new();
    let ctx = world.context("user");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nUSER app\nWORKDIR /home/app/project\n\
         RUN id -u > ids && id -g >> ids && id -G >> ids && pwd >> ids\n",
    );
    let out = world.build(&ctx, "user:1", &[]);
    assert_success(&out);
    let image = world.pull("user:1");
    assert_eq!(
        image.read("/home/app/project/ids"),
        "1000\n1000\n1000 50\n/home/app/project\n"
    );
    // WORKDIR creates the directory owned by the USER in force.
    assert_eq!(image.owner_mode("/home/app/project"), (0o755, 1000, 1000));
    assert_eq!(image.config.config.user.as_deref(), Some("app"));
    assert_eq!(
        image.config.config.working_dir.as_deref(),
        Some("/home/app/project")
    );
}

#[test]
fn build_metadata_instructions_write_docker_config_fields() {
    let world = World::new();
    let ctx = world.context("meta");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nMAINTAINER team@example.com\nSHELL [\"/bin/sh\", \"-ec\"]\n\
         ENTRYPOINT [\"/bin/echo\"]\n\
         HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q localhost || exit 1\n\
         ONBUILD RUN echo triggered > /onbuild.txt\n",
    );
    let out = world.build(&ctx, "meta:1", &[]);
    assert_success(&out);
    let image = world.pull("meta:1");
    let config = &image.config.config;
    assert_eq!(image.config.author.as_deref(), Some("team@example.com"));
    assert_eq!(config.shell.clone().unwrap(), ["/bin/sh", "-ec"]);
    assert_eq!(config.entrypoint.clone().unwrap(), ["/bin/echo"]);
    // The base's CMD is reset by ENTRYPOINT, as Docker does.
    assert_eq!(config.cmd, None);
    let health = config.healthcheck.clone().unwrap();
    assert_eq!(
        health.test.unwrap(),
        ["CMD-SHELL", "wget -q localhost || exit 1"]
    );
    assert_eq!(health.interval, Some(30_000_000_000));
    assert_eq!(health.timeout, Some(5_000_000_000));
    assert_eq!(health.retries, Some(3));
    assert_eq!(
        config.on_build.clone().unwrap(),
        ["RUN echo triggered > /onbuild.txt"]
    );
    // An image built FROM it runs the trigger first.
    let child = world.context("child");
    write(
        &child,
        "Dockerfile",
        &format!(
            "FROM {}\nRUN cat /onbuild.txt > /child.txt\n",
            world.image("meta:1")
        ),
    );
    let out = world.build(&child, "child:1", &[]);
    assert_success(&out);
    let image = world.pull("child:1");
    assert_eq!(image.read("/child.txt"), "triggered\n");
    assert_eq!(
        image.config.config.on_build, None,
        "triggers are not inherited further"
    );
}

#[test]
fn build_heredocs_run_scripts_and_create_files() {
    let world = World::new();
    let ctx = world.context("heredoc");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nARG NAME=world\n\
         RUN <<EOF\necho \"hello $NAME\" > /greeting\necho second >> /greeting\nEOF\n\
         COPY <<EOF /etc/app.conf\nname=${NAME}\nEOF\n\
         RUN cat <<A > /a.txt\nfrom heredoc\nA\n",
    );
    let out = world.build(&ctx, "heredoc:1", &[]);
    assert_success(&out);
    let image = world.pull("heredoc:1");
    assert_eq!(image.read("/greeting"), "hello world\nsecond\n");
    assert_eq!(image.read("/etc/app.conf"), "name=world\n");
    assert_eq!(image.read("/a.txt"), "from heredoc\n");
}

/// As BuildKit: a RUN heredoc that starts with `#!` is a script file its interpreter runs (here
/// awk, which a shell could not run), from the RUN's private /dev, never left in a layer.
#[test]
fn build_run_heredoc_with_an_interpreter_line_runs_as_a_script() {
    let world = World::new();
    let ctx = world.context("shebang");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\n\
         RUN <<AWK\n#!/bin/awk -f\nBEGIN { print \"from awk\" > \"/awk.txt\" }\nAWK\n\
         RUN <<SH\n#!/bin/sh\necho \"$0\" > /script-path.txt\nSH\n",
    );
    let out = world.build(&ctx, "shebang:1", &[]);
    assert_success(&out);
    let image = world.pull("shebang:1");
    assert_eq!(image.read("/awk.txt"), "from awk\n");
    assert_eq!(image.read("/script-path.txt"), "/dev/pipes/SH\n");
    assert!(
        !image.exists("/dev/pipes"),
        "the script stayed out of the layers"
    );
    let history = image.history();
    let awk = history.iter().find(|(by, _)| by.contains("/dev/pipes/AWK"));
    assert!(
        awk.is_some_and(|(by, _)| by.contains("#!/bin/awk -f")),
        "{history:?}"
    );

    // Regression: under a strict umask (077) the script's directory was 0700 and a non-root USER
    // got "permission denied" (exit 126).
    write(
        &ctx,
        "user.Dockerfile",
        "ARG BASE\nFROM $BASE\nUSER app\nWORKDIR /w\nRUN <<SH\n#!/bin/sh\nid -u > uid.txt\nSH\n",
    );
    let script = format!(
        "umask 077 && exec '{}' build --context='{}' --dockerfile='{}' --destination={} \
         --kaniko-dir='{}' --build-arg=BASE={} --insecure --insecure-pull",
        env!("CARGO_BIN_EXE_kbuild"),
        ctx.display(),
        ctx.join("user.Dockerfile").display(),
        world.image("shebang:user"),
        world.work_dir().display(),
        world.base(),
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(world.pull("shebang:user").read("/w/uid.txt"), "1000\n");

    // chroot isolation has no /dev of its own: the RUN fails saying so.
    let out = world.build(&ctx, "shebang:2", &["--isolation=chroot"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("chroot isolation has no /dev"), "{stderr}");
}

#[test]
fn build_add_extracts_local_archives() {
    let world = World::new();
    let ctx = world.context("add");
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let body = b"from the archive\n";
    header.set_size(body.len() as u64);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append_data(&mut header, "inside/file.txt", &body[..])
        .unwrap();
    std::fs::write(ctx.join("bundle.tar"), tar.into_inner().unwrap()).unwrap();
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nADD bundle.tar /opt/\n",
    );
    let out = world.build(&ctx, "add:1", &[]);
    assert_success(&out);
    let image = world.pull("add:1");
    assert_eq!(image.read("/opt/inside/file.txt"), "from the archive\n");
    assert!(!image.exists("/opt/bundle.tar"));
}

#[test]
fn build_run_that_changes_nothing_adds_no_layer() {
    let world = World::new();
    let ctx = world.context("noop");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN true\nRUN ls /etc >/dev/null\n",
    );
    let out = world.build(&ctx, "noop:1", &[]);
    assert_success(&out);
    let image = world.pull("noop:1");
    assert_eq!(image.layers, 1, "only the base layer");
    let history = image.history();
    assert_eq!(history.last().map(|h| h.1), Some(true), "{history:?}");
}

/// Serves `body` to every request on 127.0.0.1 (one thread, plain HTTP/1.1) and returns the URL
/// base. The thread ends with the test process.
fn serve(body: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn build_add_url_checks_the_checksum_and_keeps_the_file() {
    let world = World::new();
    let url = serve(b"#!/bin/sh\necho tool\n");
    let digest = kbuild::digest::Digest::of(b"#!/bin/sh\necho tool\n");
    let ctx = world.context("add-url");
    write(
        &ctx,
        "Dockerfile",
        &format!("ARG BASE\nFROM $BASE\nADD --checksum={digest} {url}/dl/tool.sh /opt/bin/\n"),
    );
    let out = world.build(&ctx, "add-url:1", &[]);
    assert_success(&out);
    let image = world.pull("add-url:1");
    assert_eq!(image.read("/opt/bin/tool.sh"), "#!/bin/sh\necho tool\n");
    // Docker gives downloaded files mode 0600.
    assert_eq!(image.owner_mode("/opt/bin/tool.sh"), (0o600, 0, 0));

    let wrong = kbuild::digest::Digest::of(b"something else");
    write(
        &ctx,
        "Dockerfile",
        &format!("ARG BASE\nFROM $BASE\nADD --checksum={wrong} {url}/dl/tool.sh /opt/bin/\n"),
    );
    let out = world.build(&ctx, "add-url:2", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
}

#[test]
fn build_copy_from_an_external_image_keeps_its_files() {
    let world = World::new();
    let ctx = world.context("copy-image");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM scratch\nCOPY --from={} /bin/busybox /tools/busybox\nCOPY --from={} /etc/passwd /etc/passwd\n",
            world.base(),
            world.base()
        ),
    );
    let out = world.build(&ctx, "copy-image:1", &[]);
    assert_success(&out);
    let image = world.pull("copy-image:1");
    assert_eq!(
        std::fs::read(image.rootfs.join("tools/busybox")).unwrap(),
        std::fs::read(crate::harness::rootfs::BUSYBOX).unwrap()
    );
    assert!(image.read("/etc/passwd").contains("app:x:1000"));
    assert_eq!(image.layers, 2);
}

/// `RUN --network=none`: the step's network (here, the test registry on 127.0.0.1) is out of
/// reach, loopback is up; without it the registry answers. `--security=insecure` is refused.
#[test]
fn build_run_network_none_cuts_the_network_but_keeps_loopback() {
    let world = World::new();
    let ctx = world.context("network");
    let probe = format!(
        "wget -q -O /dev/null http://{}/v2/ && echo reachable || echo unreachable",
        world.registry.addr()
    );
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "ARG BASE\nFROM $BASE\n\
             RUN --network=none sh -c '({probe}) > /none.txt; ls /sys/class/net > /ifaces.txt; \
             cat /sys/class/net/lo/flags > /lo.txt'\n\
             RUN --network=default sh -c '({probe}) > /default.txt'\n"
        ),
    );
    let out = world.build(&ctx, "network:1", &[]);
    assert_success(&out);
    let image = world.pull("network:1");
    assert_eq!(image.read("/none.txt"), "unreachable\n");
    assert_eq!(image.read("/default.txt"), "reachable\n");
    assert_eq!(image.read("/ifaces.txt"), "lo\n");
    assert_eq!(
        image.read("/lo.txt"),
        "0x9\n",
        "loopback is up (IFF_UP | IFF_LOOPBACK)"
    );

    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN --security=insecure true\n",
    );
    let out = world.build(&ctx, "network:2", &[]);
    super::assert_failure_says(&out, "RUN --security=insecure is not supported yet");
}
