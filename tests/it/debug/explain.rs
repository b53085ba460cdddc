//! `kbuild explain` on build reports: real failed builds (a RUN, a missing cross-stage source, a
//! refused push), and reports with cache records checked against a real cache repository.

use serde_json::json;

use super::diff::BASE;
use super::inspect::fill;
use super::*;
use crate::build::{World, write};
use crate::harness::registry::Registry;

fn explain(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    output(&mut debug_cmd(&all))
}

fn world_settings(world: &World) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(&regex_escape(&world.registry.addr()), "[REGISTRY]");
    s.add_filter(
        &regex_escape(&world.dir.path().display().to_string()),
        "[WORLD]",
    );
    s.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
    s.add_filter(r"sha256:[0-9a-f]{12}\b", "sha256:[SHORT]");
    s
}

/// Builds as root (RUN in namespaces, as CI runs); the report lands in the world's work dir.
fn failing_build(world: &World, dockerfile: &str) -> std::path::PathBuf {
    let ctx = world.context("failing");
    write(&ctx, "Dockerfile", dockerfile);
    let out = world.build(&ctx, "failing:1", &[]);
    assert!(!out.status.success(), "the build was meant to fail");
    world.work_dir().join("report.json")
}

/// A RUN that fails, explained from the default report location by a shell-less, HOME-less
/// process (`kubectl exec POD -c step-build -- /kbuild explain` with KANIKO_DIR set as in the
/// step).
#[test]
fn kb001_a_failed_run_from_the_default_report_location() {
    let world = World::new();
    let report = failing_build(
        &world,
        "ARG BASE\nFROM $BASE AS builder\nRUN echo compiling main.c\nRUN echo 'cc: error: main.c: No such file' >&2; exit 3\n",
    );
    assert!(report.is_file());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbuild"));
    cmd.env_clear()
        .env("HOME", "/nonexistent")
        .env("KANIKO_DIR", world.work_dir())
        .arg("explain");
    let (code, stdout, stderr) = output(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(stdout.contains("KB001 error"), "{stdout}");
    assert!(stdout.contains("exit code    3"), "{stdout}");
    assert!(
        stdout.contains("cc: error: main.c: No such file"),
        "{stdout}"
    );
    assert!(stdout.contains("Dockerfile:4"), "{stdout}");
    world_settings(&world).bind(|| insta::assert_snapshot!("explain_run_failed", stdout));

    let (_, json, _) = explain(&["--report", report.to_str().unwrap(), "--format", "json"]);
    assert_schema("explanation", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["subject"], "report");
    assert_eq!(v["build"]["exit_code"], 3);
    assert_eq!(v["findings"][0]["id"], "KB001");
    assert_eq!(v["findings"][0]["rule"], "run-failed");
    assert_eq!(v["findings"][0]["evidence"]["exit_code"], 3);
    assert_eq!(v["findings"][0]["doc"], "docs/explain/KB001.md");
}

#[test]
fn kb002_a_cross_stage_source_the_producer_did_not_make() {
    let world = World::new();
    let report = failing_build(
        &world,
        "ARG BASE\nFROM $BASE AS builder\nRUN mkdir -p /out && echo bin > /out/ap\n\
         FROM $BASE\nCOPY --from=builder /out/app /app\n",
    );
    let (code, stdout, stderr) = explain(&["--report", report.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(
        stdout.contains("KB002 error: stage builder did not produce /out/app"),
        "{stdout}"
    );
    assert!(!stdout.contains("KB001"), "{stdout}");
    world_settings(&world).bind(|| insta::assert_snapshot!("explain_missing_source", stdout));
}

#[test]
fn kb003_a_registry_that_refuses_the_push() {
    let world = World::new();
    let locked = Registry::with_auth("ci", "s3cret");
    let ctx = world.context("locked");
    write(&ctx, "Dockerfile", "ARG BASE\nFROM $BASE\nRUN true\n");
    let report = world.dir.path().join("locked-report.json");
    let mut cmd = crate::harness::kbuild();
    cmd.arg("build")
        .arg(format!("--context={}", ctx.display()))
        .arg(format!("--destination={}/app:1", locked.addr()))
        .arg(format!("--kaniko-dir={}", world.work_dir().display()))
        .arg(format!("--report={}", report.display()))
        .arg(format!("--build-arg=BASE={}", world.base()))
        .args(["--insecure", "--insecure-pull"]);
    let (code, _, _) = output(&mut cmd);
    assert_ne!(code, 0);
    let (code, stdout, stderr) =
        explain(&["--report", report.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["findings"][0]["id"], "KB003", "{stdout}");
    let summary = v["findings"][0]["summary"].as_str().unwrap();
    assert!(summary.contains(&locked.addr()), "{summary}");
}

/// A report whose cache records the cache engineer's contract describes, against a real cache
/// repository holding the entries of an earlier build.
fn cache_report(reg: &CacheRegistry, goproxy: &str, dir: &Path) -> PathBuf {
    let repo = reg.repo("app/cache");
    let (mut report, _) = report_json(
        &repo,
        &[(
            "builder",
            BASE,
            vec![
                step(2, "COPY go.mod /src/").hit(),
                step(3, "RUN go build -o /out/app").with(arg("GOPROXY", goproxy)),
                step(4, "RUN true"),
            ],
        )],
        json!({"success": true, "digest": "sha256:0"}),
    );
    report["stages"][0]["instructions"][2]["cache"]["reason"] = json!("parent_missed");
    write_report(dir, "report.json", &report)
}

#[test]
fn cache_misses_are_explained_by_the_closest_entry() {
    let reg = CacheRegistry::new();
    fill(&reg);
    let report = cache_report(&reg, "https://new-proxy.example", reg.dir());
    let (code, stdout, stderr) = explain(&["--report", report.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(stdout.contains("KB013 info"), "{stdout}");
    assert!(
        stdout.contains("- https://goproxy.example"),
        "cached value first: {stdout}"
    );
    assert!(stdout.contains("+ https://new-proxy.example"), "{stdout}");
    assert!(
        stdout.contains("1 later instruction(s) missed only because this one did"),
        "{stdout}"
    );
    let mut s = settings(&reg);
    s.add_filter(&regex_escape(&reg.dir().display().to_string()), "[DIR]");
    s.bind(|| insta::assert_snapshot!("explain_cache_miss", stdout));

    // The same value as the entry: nothing to explain (the miss is then no entry at all).
    let same = cache_report(&reg, "https://goproxy.example", reg.dir());
    let (_, stdout, _) = explain(&["--report", same.to_str().unwrap(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"KB013"), "{ids:?}");

    // Offline, nothing is compared, and the output says why.
    let (_, stdout, _) = explain(&["--report", report.to_str().unwrap(), "--offline"]);
    assert!(stdout.contains("KB017"), "{stdout}");
    assert!(
        stdout.contains("note: the registry was not consulted (--offline)"),
        "{stdout}"
    );
}

#[test]
fn kb020_an_expired_entry_is_named_with_its_age() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    let repo = reg.repo("app/cache");
    let (mut report, _) = report_json(
        &repo,
        &[(
            "builder",
            BASE,
            vec![
                step(2, "COPY go.mod /src/").hit(),
                step(3, "RUN go build -o /out/app")
                    .with(arg("GOPROXY", "https://goproxy.example"))
                    .hit(),
                step(4, "RUN true"),
            ],
        )],
        json!({"success": true}),
    );
    let cache = &mut report["stages"][0]["instructions"][2]["cache"];
    cache["reason"] = json!("expired");
    cache["entry"] = json!(format!("{repo}:{}", keys.empty));
    let path = write_report(reg.dir(), "expired.json", &report);
    let (code, stdout, stderr) = explain(&["--report", path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_schema("explanation", &stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["id"], "KB020", "{stdout}");
    assert!(
        f["summary"].as_str().unwrap().contains("20d0h old"),
        "age from the listed entry: {f}"
    );
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
}

/// The producer stage took a RUN from the cache whose layer is empty, and a later stage needed
/// the file that RUN should have made.
fn missing_with_hit(reg: &CacheRegistry, key: &str, dir: &Path) -> PathBuf {
    let repo = reg.repo("app/cache");
    let (mut report, _) = report_json(
        &repo,
        &[
            (
                "builder",
                BASE,
                vec![
                    step(2, "COPY go.mod /src/").hit(),
                    step(3, "RUN go build -o /out/app").hit(),
                ],
            ),
            (
                "stage-1",
                "sha256:2222222222222222222222222222222222222222222222222222222222222222",
                vec![],
            ),
        ],
        json!({"success": false, "error_kind": "missing_cross_stage_source",
               "error": "stage builder did not produce /out/app, which stage stage-1 copies (Dockerfile:6: COPY --from=builder /out/app /app)\nthe instruction that should have made it: Dockerfile:3: RUN go build -o /out/app\nhint: check"}),
    );
    report["stages"][0]["instructions"][1]["cache"]["entry"] = json!(format!("{repo}:{key}"));
    write_report(dir, &format!("missing-{}.json", &key[..6]), &report)
}

#[test]
fn kb021_a_cached_layer_without_the_needed_path() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    let repo = reg.repo("app/cache");
    // An entry for the build step whose layer is empty (what a mount point does to Kaniko).
    let poisoned = preimage(
        kbuild::cache::key::ParentKind::Instruction,
        &format!("sha256:{}", keys.copy),
        "RUN go build -o /out/app",
        &[arg("GOPROXY", "https://poisoned.example")],
    );
    let poisoned_key = reg.push_kbuild(
        &repo,
        &poisoned,
        "RUN go build -o /out/app",
        Some(&[] as &[T]),
        &created_ago(DAY),
    );
    let report = missing_with_hit(&reg, &poisoned_key, reg.dir());
    let (code, stdout, stderr) = explain(&["--report", report.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(stdout.contains("KB021 error"), "{stdout}");
    assert!(
        stdout.contains(&format!("skopeo delete docker://$REPO:{poisoned_key}"))
            && stdout.contains(&format!("REPO={repo}")),
        "{stdout}"
    );
    let mut s = settings(&reg);
    s.add_filter(&regex_escape(&reg.dir().display().to_string()), "[DIR]");
    s.bind(|| insta::assert_snapshot!("explain_layer_lacks_path", stdout));

    // The real build entry has /out/app in its layer: the cache is not to blame.
    let report = missing_with_hit(&reg, &keys.build, reg.dir());
    let (code, stdout, _) = explain(&["--report", report.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("KB002") && !stdout.contains("KB021"),
        "{stdout}"
    );
}

#[test]
fn a_missing_report_is_an_error_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = explain(&["--kaniko-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read build report") && stderr.contains("report.json"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}
