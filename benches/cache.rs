//! The layer cache's payoff: cold, warm and one-file-changed builds, with and without the cache.
//!
//! `cargo bench --bench cache` (as root: RUN needs namespaces). Starts Debian's docker-registry
//! with the integration tests' harness, makes a busybox base image with a 64 MiB layer of
//! incompressible filler (so pulling it costs something), and builds two scenarios with the
//! release kbuild binary:
//! - `seed`: the shape of CONTEXT.md section 2 (the builder copies the context to /workspace,
//!   "go version", compiles a 20 MB binary, modifies a context file in place; the final stage
//!   copies both out);
//! - `multi-stage`: the shape of `tests/fixtures/multi-stage-meta-args` (module download RUN
//!   before `COPY . .`, a compile RUN after it, a runtime stage copying the binary).
//!
//! "Compiling" is CPU work (sha256 over zeros) and "downloading modules" a sleep plus written
//! files, so a RUN that runs costs seconds and one that hits costs nothing.
//!
//! Each scenario is built four times, every build with `--cache-dir` on the same directory as a
//! pod's PVC would be: without the cache (reference), then with it cold (empty cache repo and
//! cache dir), warm (nothing changed) and after changing one source file. The table shows wall
//! time, how many RUNs ran and their time (from the build report's phases), cache hits and
//! misses, and base layers downloaded. The examples in `examples/` can be added to `SCENARIOS`
//! once they land; until then these two stand for them. Not a test: numbers go to the README's
//! performance section by hand, with the machine described.

#[path = "../tests/it/harness/registry.rs"]
mod harness_registry;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const KBUILD: &str = env!("CARGO_BIN_EXE_kbuild");

struct Scenario {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    dockerfile: &'static str,
    /// The file the one-file-changed build edits (appending a line).
    changed: &'static str,
}

const SEED_DOCKERFILE: &str = r#"ARG BASE
FROM $BASE AS builder
COPY . /workspace
RUN sleep 1 && echo go version go1.22 > /tmp/go-version
RUN cd /workspace/services/platform/zego-streaming \
 && dd if=/dev/zero bs=1M count=600 2>/dev/null | sha256sum > build-id \
 && cat main.go build-id > zego-streaming \
 && head -c 20000000 /dev/zero | tr '\0' 'x' >> zego-streaming && chmod 755 zego-streaming
RUN echo 'mode: release' >> /workspace/config.yaml
FROM $BASE
COPY --from=builder /workspace/services/platform/zego-streaming/zego-streaming /app/zego-streaming
COPY --from=builder /workspace/config.yaml /app/config.yaml
ENTRYPOINT ["/app/zego-streaming"]
"#;

const MULTI_DOCKERFILE: &str = r#"ARG BASE
FROM $BASE AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN sleep 2 && mkdir -p /root/go/pkg/mod && head -c 30000000 /dev/zero | tr '\0' 'm' > /root/go/pkg/mod/deps
COPY . .
RUN mkdir -p /out && dd if=/dev/zero bs=1M count=600 2>/dev/null | sha256sum > /out/build-id \
 && cat cmd/app/main.go /out/build-id > /out/app && echo "$VERSION" >> /out/app
FROM $BASE AS runtime
COPY --from=build /out/app /usr/local/bin/app
USER 65532:65532
CMD ["app"]
"#;

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "seed",
        files: &[
            ("services/platform/zego-streaming/main.go", "package main\n"),
            ("config.yaml", "mode: dev\n"),
        ],
        dockerfile: SEED_DOCKERFILE,
        changed: "services/platform/zego-streaming/main.go",
    },
    Scenario {
        name: "multi-stage",
        files: &[
            ("go.mod", "module example.com/app\n"),
            ("go.sum", ""),
            ("cmd/app/main.go", "package main\n"),
        ],
        dockerfile: MULTI_DOCKERFILE,
        changed: "cmd/app/main.go",
    },
];

struct Row {
    scenario: &'static str,
    build: &'static str,
    seconds: f64,
    runs: u64,
    run_seconds: f64,
    hits: u64,
    misses: u64,
    base_downloaded: u64,
    digest: String,
}

fn write(dir: &Path, path: &str, content: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn kbuild(args: &[String]) -> std::process::Output {
    let out = Command::new(KBUILD)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kbuild");
    if !out.status.success() {
        panic!(
            "kbuild {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The busybox base with a 64 MiB filler layer, pushed as `<reg>/base:1`.
fn make_base(reg: &str, dir: &Path) -> String {
    let ctx = dir.join("base");
    let bin = ctx.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is needed");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    write(&ctx, "rootfs/tmp/.keep", "");
    let mut filler = std::fs::File::create(ctx.join("filler.bin")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        filler.write_all(&chunk).unwrap();
    }
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY rootfs/ /\nCOPY filler.bin /usr/share/filler.bin\n",
    );
    let image = format!("{reg}/base:1");
    kbuild(&[
        "build".into(),
        format!("--context={}", ctx.display()),
        format!("--destination={image}"),
        format!("--kaniko-dir={}", dir.join("work").display()),
        "--cleanup".into(),
    ]);
    image
}

#[allow(clippy::too_many_arguments)]
fn build(
    scenario: &Scenario,
    label: &'static str,
    ctx: &Path,
    reg: &str,
    base: &str,
    cache_dir: &Path,
    cache: Option<&str>,
    dir: &Path,
) -> Row {
    let tag = label.replace(' ', "-");
    let report = dir.join(format!("{}-{tag}.json", scenario.name));
    let mut args = vec![
        "build".to_string(),
        format!("--context={}", ctx.display()),
        format!("--destination={reg}/{}:{tag}", scenario.name),
        format!("--build-arg=BASE={base}"),
        format!("--kaniko-dir={}", dir.join("work").display()),
        format!("--cache-dir={}", cache_dir.display()),
        format!("--report={}", report.display()),
        "--reproducible".into(),
        "--cleanup".into(),
    ];
    if let Some(repo) = cache {
        args.push(format!("--cache-repo={repo}"));
    }
    let started = Instant::now();
    kbuild(&args);
    let seconds = started.elapsed().as_secs_f64();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let run = json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "run");
    Row {
        scenario: scenario.name,
        build: label,
        seconds,
        runs: run.map_or(0, |r| r["count"].as_u64().unwrap()),
        run_seconds: run.map_or(0.0, |r| r["ms"].as_f64().unwrap() / 1000.0),
        hits: json["cache_summary"]["hits"].as_u64().unwrap_or(0),
        misses: json["cache_summary"]["misses"].as_u64().unwrap_or(0),
        base_downloaded: json["base_layers"]["downloaded"].as_u64().unwrap(),
        digest: json["outcome"]["digest"].as_str().unwrap_or("").to_string(),
    }
}

fn main() {
    let reg = harness_registry::Registry::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let base = make_base(&reg.addr(), dir.path());
    let mut rows = Vec::new();
    for scenario in SCENARIOS {
        let ctx: PathBuf = dir.path().join("contexts").join(scenario.name);
        for (path, content) in scenario.files {
            write(&ctx, path, content);
        }
        write(&ctx, "Dockerfile", scenario.dockerfile);
        let uncached_dir = dir
            .path()
            .join(format!("{}-plain-cache-dir", scenario.name));
        let cache_dir = dir.path().join(format!("{}-cache-dir", scenario.name));
        std::fs::create_dir_all(&uncached_dir).unwrap();
        std::fs::create_dir_all(&cache_dir).unwrap();
        let repo = format!("{}/{}/cache", reg.addr(), scenario.name);
        let run = |label, cache_dir: &Path, cache| {
            build(
                scenario,
                label,
                &ctx,
                &reg.addr(),
                &base,
                cache_dir,
                cache,
                dir.path(),
            )
        };
        rows.push(run("no cache", &uncached_dir, None));
        rows.push(run("cold", &cache_dir, Some(&repo)));
        rows.push(run("warm", &cache_dir, Some(&repo)));
        let changed = ctx.join(scenario.changed);
        let mut text = std::fs::read_to_string(&changed).unwrap();
        text.push_str("// one line changed\n");
        std::fs::write(&changed, text).unwrap();
        rows.push(run("one file changed", &cache_dir, Some(&repo)));
    }
    println!(
        "| scenario | build | seconds | RUNs run | RUN seconds | cache hits | cache misses | base layers downloaded |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {:.2} | {} | {} | {} |",
            r.scenario,
            r.build,
            r.seconds,
            r.runs,
            r.run_seconds,
            r.hits,
            r.misses,
            r.base_downloaded
        );
    }
    for pair in rows.chunks(4) {
        let same = pair[1].digest == pair[2].digest;
        println!(
            "{}: warm build gives the cold image: {same}",
            pair[0].scenario
        );
    }
}
