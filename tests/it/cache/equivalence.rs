//! A warm build gives exactly the image a cold build gives (and a build without the cache), for
//! every fixture Dockerfile, the seed scenario and the in-place modification case.
//!
//! The fixtures name real images (golang, node, rust, ...). Offline, `--registry-map` sends
//! docker.io and gcr.io to the test registry, where a "toolbox" image stands in for all of them:
//! the busybox base with small shell stubs for `go`, `cargo`, `npm` and `apk` that produce
//! deterministic outputs from their inputs. The fixtures build unchanged, from their `context/`.

use std::path::{Path, PathBuf};

use super::{Report, cached_build, files};
use crate::build::{World, assert_success};

/// Fixtures that cannot build offline, and why. Any other fixture must build.
const NOT_BUILDABLE: &[(&str, &str)] = &[
    ("escape-directive", "a Windows image: its RUN is PowerShell"),
    ("run-mounts", "RUN --mount=type=ssh is not supported yet"),
];

/// The images the fixtures start from, all served by the toolbox.
const IMAGES: &[&str] = &[
    "library/golang:1.22",
    "library/golang:1.22-alpine3.20",
    "library/debian:bookworm-slim",
    "library/alpine:3.20",
    "library/node:20",
    "library/rust:1.85",
    "distroless/cc:latest",
];

const GO: &str = r#"#!/bin/sh
# kbuild test stub for the Go toolchain: outputs follow from the inputs only.
case "$1" in
version) echo "go version go1.22.0 linux/amd64 (stub)" ;;
mod) mkdir -p /root/go/pkg/mod && cat go.mod go.sum > /root/go/pkg/mod/downloaded ;;
build)
  out=app
  shift
  while [ $# -gt 0 ]; do
    if [ "$1" = -o ]; then out="$2"; shift; fi
    shift
  done
  mkdir -p "$(dirname "$out")"
  { echo '#!/bin/sh'; find . -name '*.go' -type f | sort | xargs cat | sed 's/^/# /'; } > "$out"
  chmod 755 "$out" ;;
*) echo "go stub: $*" >&2; exit 2 ;;
esac
"#;

const CARGO: &str = r#"#!/bin/sh
# kbuild test stub for cargo.
case "$1" in
fetch) mkdir -p /root/.cargo/registry && cp Cargo.lock /root/.cargo/registry/fetched ;;
build)
  mkdir -p target/release
  { echo '#!/bin/sh'; cat src/*.rs | sed 's/^/# /'; } > target/release/app
  chmod 755 target/release/app ;;
test) /usr/local/bin/app && echo "test result: ok" ;;
*) echo "cargo stub: $*" >&2; exit 2 ;;
esac
"#;

const NPM: &str = r#"#!/bin/sh
# kbuild test stub for npm.
case "$1" in
ci) mkdir -p node_modules && cp package-lock.json node_modules/.package-lock.json ;;
run) mkdir -p dist && cat src/*.js > dist/app.js ;;
*) echo "npm stub: $*" >&2; exit 2 ;;
esac
"#;

const APK: &str = r#"#!/bin/sh
# kbuild test stub for apk add: one small executable per package.
[ "$1" = add ] || exit 2
shift
for p in "$@"; do
  case "$p" in
  -*) ;;
  *) printf '#!/bin/sh\necho %s\n' "$p" > "/usr/bin/$p" && chmod 755 "/usr/bin/$p" ;;
  esac
done
"#;

/// Pushes the toolbox under every name in [`IMAGES`].
fn push_toolbox(world: &World) {
    let ctx = files(
        &world.context("toolbox"),
        &[
            (
                "Dockerfile",
                "ARG BASE\nFROM $BASE\nCOPY stubs/ /usr/local/bin/\n\
                 RUN chmod 755 /usr/local/bin/* && mkdir -p /usr/local/lib /usr/bin /root\n",
            ),
            ("stubs/go", GO),
            ("stubs/cargo", CARGO),
            ("stubs/npm", NPM),
            ("stubs/apk", APK),
        ],
    );
    let destinations: Vec<String> = IMAGES[1..]
        .iter()
        .map(|i| format!("--destination={}", world.image(i)))
        .collect();
    let args: Vec<&str> = destinations.iter().map(String::as_str).collect();
    assert_success(&world.build(&ctx, IMAGES[0], &args));
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The flags a fixture's `options.json` asks for (build args and target; the platform is the
/// host's, since the toolbox runs natively).
fn fixture_flags(case: &Path, world: &World) -> Vec<String> {
    let mut flags = vec![
        format!("--dockerfile={}", case.join("Dockerfile").display()),
        format!("--registry-map=docker.io={}", world.registry.addr()),
        format!("--registry-map=gcr.io={}", world.registry.addr()),
        "--skip-default-registry-fallback".into(),
    ];
    if let Ok(text) = std::fs::read_to_string(case.join("options.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(args) = v["build_args"].as_object() {
            for (k, val) in args {
                flags.push(format!("--build-arg={k}={}", val.as_str().unwrap()));
            }
        }
        if let Some(target) = v["target"].as_str() {
            flags.push(format!("--target={target}"));
        }
    }
    flags
}

/// Builds without the cache, then cold and warm with it, and checks the three images are one
/// and that the warm build hit every probed instruction.
fn assert_equivalent(world: &World, name: &str, context: &Path, flags: &[String]) {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut plain_flags = flags.clone();
    plain_flags.push("--reproducible");
    let plain = world.build(context, &format!("{name}:plain"), &plain_flags);
    assert_success(&plain);
    let plain_digest = world.pull(&format!("{name}:plain")).digest;
    let (out, cold) = cached_build(world, context, &format!("{name}:cold"), &flags);
    assert_success(&out);
    let (out, warm) = cached_build(world, context, &format!("{name}:warm"), &flags);
    assert_success(&out);
    assert_eq!(
        cold.digest(),
        plain_digest,
        "{name}: the cache changes the image"
    );
    assert_eq!(warm.digest(), cold.digest(), "{name}: warm and cold differ");
    let probed: Vec<_> = warm
        .statuses()
        .into_iter()
        .filter(|s| s.status != "disabled")
        .collect();
    assert!(!probed.is_empty(), "{name}: nothing was probed");
    assert!(
        probed.iter().all(|s| s.status == "hit"),
        "{name}: the warm build missed: {probed:#?}"
    );
    assert_eq!(world.pull(&format!("{name}:warm")).digest, cold.digest());
}

#[test]
fn cache_fixtures_build_the_same_image_cold_and_warm() {
    let world = World::new();
    push_toolbox(&world);
    let mut built = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    entries.sort();
    for case in entries {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        if NOT_BUILDABLE.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let context = if case.join("context").is_dir() {
            case.join("context")
        } else {
            world.context(&format!("empty-{name}"))
        };
        assert_equivalent(&world, &name, &context, &fixture_flags(&case, &world));
        built.push(name);
    }
    for (name, _) in NOT_BUILDABLE {
        assert!(
            fixtures().join(name).join("Dockerfile").is_file(),
            "{name} is listed as not buildable but is no fixture"
        );
    }
    assert!(built.len() >= 5, "built only {built:?}");
}

#[test]
fn cache_seed_scenario_and_in_place_change_build_the_same_image_cold_and_warm() {
    let world = World::new();
    let seed = crate::build::multistage::seed_context(&world);
    let dockerfile = seed.join("services/platform/zego-streaming/Dockerfile");
    assert_equivalent(
        &world,
        "seed",
        &seed,
        &[format!("--dockerfile={}", dockerfile.display())],
    );
    let image = world.pull("seed:warm");
    assert_eq!(
        image.read("/app/zego-streaming"),
        "package main\ncompiled\n"
    );
    assert_eq!(image.read("/app/config.yaml"), "mode: dev\nmode: release\n");

    // Kaniko's worst variant: a RUN changes a context file in place and nothing else reads it.
    let ctx = files(
        &world.context("in-place"),
        &[
            (
                "Dockerfile",
                "ARG BASE\nFROM $BASE\nCOPY . /workspace\nRUN echo 'mode: release' >> /workspace/config.yaml\n",
            ),
            ("config.yaml", "mode: dev\n"),
        ],
    );
    assert_equivalent(&world, "in-place", &ctx, &[]);
    let image = world.pull("in-place:warm");
    assert_eq!(
        image.read("/workspace/config.yaml"),
        "mode: dev\nmode: release\n"
    );
}

/// Kaniko issue #3176 as the user met it: the context on a mount point (Tekton's /workspace), the
/// cache on, the second run hitting the RUN that compiles. kbuild's hit applies the cached layer
/// to the builder's own rootfs, so the binary is there for the final stage, and the in-place
/// change too.
#[test]
fn cache_seed_bug_cannot_happen_on_a_cache_hit() {
    let world = World::new();
    let src = crate::build::multistage::seed_context(&world);
    let results = world.dir.path().join("results-1");
    let report = world.dir.path().join("seed-tekton.json");
    let report_flag = format!("--report={}", report.display());
    let flags = ["--cache=true", report_flag.as_str()];
    let build = crate::build::multistage::build_like_tekton;
    assert_success(&build(&world, &src, "tekton-seed:1", &results, &flags));
    let cold = std::fs::read_to_string(results.join("IMAGE_DIGEST")).unwrap();
    let results = world.dir.path().join("results-2");
    assert_success(&build(&world, &src, "tekton-seed:2", &results, &flags));
    let warm_report = Report(serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap());
    assert_eq!(warm_report.status_of("RUN echo go version").status, "hit");
    assert_eq!(warm_report.status_of("RUN cd /workspace").status, "hit");
    assert_eq!(
        std::fs::read_to_string(results.join("IMAGE_DIGEST")).unwrap(),
        cold
    );
    let image = world.pull("tekton-seed:2");
    assert_eq!(
        image.read("/app/zego-streaming"),
        "package main\ncompiled\n"
    );
    assert_eq!(image.read("/app/config.yaml"), "mode: dev\nmode: release\n");
}

/// The report of the warm seed build names the stage each cross-stage file came from.
#[test]
fn cache_report_says_where_cross_stage_files_were_found() {
    let world = World::new();
    let seed = crate::build::multistage::seed_context(&world);
    let dockerfile = format!(
        "--dockerfile={}",
        seed.join("services/platform/zego-streaming/Dockerfile")
            .display()
    );
    let (out, cold) = cached_build(&world, &seed, "found:1", &[&dockerfile]);
    assert_success(&out);
    let found = &cold.0["cross_stage_found"];
    let binary = found
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("/zego-streaming"))
        .unwrap_or_else(|| panic!("{found:#}"));
    assert_eq!(binary["producer"], "stage builder");
    assert!(
        binary["written_by"]
            .as_str()
            .unwrap()
            .contains("RUN cd /workspace"),
        "{binary:#}"
    );
    let builder_key = cold.0["stages"][0]["final_key"].clone();
    assert_eq!(binary["producer_key"], builder_key);
    // Warm, the compiling RUN is a hit: its layer is listed to find the writer.
    let warm: Report = cached_build(&world, &seed, "found:2", &[&dockerfile]).1;
    assert_eq!(warm.status_of("RUN cd /workspace").status, "hit");
    let found = warm.0["cross_stage_found"].as_array().unwrap().clone();
    assert_eq!(found.len(), 2);
    let binary = found
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("/zego-streaming"))
        .unwrap();
    let writer = binary["written_by"].as_str().unwrap();
    assert!(
        writer.contains("RUN cd /workspace") && writer.ends_with("(cache hit)"),
        "{binary:#}"
    );
    let config = found
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("/config.yaml"))
        .unwrap();
    assert!(
        config["written_by"]
            .as_str()
            .unwrap()
            .contains("mode: release"),
        "the in-place edit, not the COPY, wrote it last: {config:#}"
    );
}

/// A producer that does not make what a later stage copies fails the same way warm as cold, and
/// the message still names the instruction that wrote next to it, a cache hit this time.
#[test]
fn cache_missing_cross_stage_source_names_the_hit_that_should_have_made_it() {
    let world = World::new();
    let ctx = files(
        &world.context("missing-warm"),
        &[(
            "Dockerfile",
            "ARG BASE\nFROM $BASE AS builder\nRUN mkdir -p /out && echo x > /out/other\n\
             FROM $BASE\nCOPY --from=builder /out/app /app\n",
        )],
    );
    let (cold, _) = cached_build(&world, &ctx, "missing-warm:1", &[]);
    assert_eq!(cold.status.code(), Some(1));
    let (warm, report) = cached_build(&world, &ctx, "missing-warm:2", &[]);
    assert_eq!(warm.status.code(), Some(1));
    assert_eq!(report.status_of("RUN mkdir").status, "hit");
    assert_eq!(
        report.0["outcome"]["error_kind"],
        "missing_cross_stage_source"
    );
    let (_, stderr) = crate::harness::text(&warm);
    assert!(
        stderr.contains(
            "the instruction that should have made it: Dockerfile:3: RUN mkdir -p /out && echo x \
             > /out/other (cache hit)"
        ),
        "{stderr}"
    );
}
