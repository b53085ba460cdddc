//! Where entries go: registry repositories and OCI layouts, shared by concurrent builds, read
//! back through kbuild's own store; failures that must not fail a build; TTL; `--cache-dir`.

use std::path::Path;
use std::time::Duration;

use kbuild::cache::{CacheRepo, CacheStore, Entry, Probe};
use kbuild::digest::Digest;
use kbuild::registry::{BlobStore, Keychain, RegistryClient, RegistryOptions};

use super::{Report, cached_build, files};
use crate::build::{World, assert_success};
use crate::harness::proxy::FaultProxy;
use crate::harness::text;

const DOCKERFILE: &str = "ARG BASE\nFROM $BASE\nCOPY app.txt /app/\n\
    RUN sleep 1 && cat /app/app.txt > /app/copy\nRUN true\nRUN echo more > /app/more\n";

fn context(world: &World, name: &str) -> std::path::PathBuf {
    files(
        &world.context(name),
        &[("Dockerfile", DOCKERFILE), ("app.txt", "hello\n")],
    )
}

/// Reads the entry of `key` from `repo` the way a build does; panics unless it is a hit.
fn read_entry(repo: &str, key: &str) -> Entry {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(dir.path()).unwrap();
    let options = RegistryOptions {
        insecure_pull: true,
        ..RegistryOptions::default()
    };
    let client = RegistryClient::new(options, Keychain::anonymous());
    let store = CacheStore::new(
        CacheRepo::parse(repo).unwrap(),
        client,
        blobs.clone(),
        Duration::from_secs(3600),
    );
    let key: Digest = key.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(store.probe(&key)) {
        Probe::Hit(entry) => {
            if let Some(layer) = &entry.layer {
                assert!(
                    blobs.contains(&layer.descriptor.digest),
                    "a hit brings its layer"
                );
            }
            *entry
        }
        Probe::Miss { reason, detail, .. } => {
            panic!("no valid entry {key} in {repo}: {reason:?} {detail:?}")
        }
    }
}

/// Every probed key of a report has a valid entry whose preimage gives the key back and whose
/// layer is the one the build used.
fn assert_entries_valid(report: &Report, repo: &str) {
    let mut checked = 0;
    for stage in report.0["stages"].as_array().unwrap() {
        for i in stage["instructions"].as_array().unwrap() {
            let cache = &i["cache"];
            if cache["status"] == "disabled" {
                continue;
            }
            let key = cache["key"].as_str().unwrap();
            let entry = read_entry(repo, key);
            assert_eq!(entry.preimage.as_ref().unwrap().key().to_string(), key);
            assert_eq!(
                entry.layer.map(|l| l.descriptor.digest.to_string()),
                i["layer"]["digest"].as_str().map(String::from),
                "{key}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3, "three probed RUNs");
}

/// Runs `n` cached builds of `ctx` at once.
fn concurrently(world: &World, ctx: &Path, prefix: &str, extra: &[String]) -> Vec<Report> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                scope.spawn(move || {
                    let (out, report) = cached_build(world, ctx, &format!("{prefix}:{i}"), &extra);
                    assert_success(&out);
                    report
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn cache_two_builds_at_once_share_a_registry_repo() {
    let world = World::new();
    let ctx = context(&world, "concurrent");
    let repo = world.image("shared/cache");
    let extra = vec![format!("--cache-repo={repo}")];
    let reports = concurrently(&world, &ctx, "concurrent", &extra);
    assert_eq!(reports[0].digest(), reports[1].digest());
    assert_entries_valid(&reports[0], &repo);
    let (out, third) = cached_build(&world, &ctx, "concurrent:3", &[&extra[0]]);
    assert_success(&out);
    assert!(third.statuses().iter().all(|s| s.status != "miss"));
    assert_eq!(third.digest(), reports[0].digest());
    // The zero-layer entry of `RUN true` holds no layer, and its hit adds none.
    assert!(
        read_entry(&repo, &third.status_of("RUN true").key)
            .layer
            .is_none()
    );
}

#[test]
fn cache_oci_layout_store_is_shared_safely_and_hits() {
    let world = World::new();
    let ctx = context(&world, "layout");
    let layout = world.dir.path().join("layout-cache");
    let repo = format!("oci:{}", layout.display());
    let extra = vec![format!("--cache-repo={repo}")];
    let reports = concurrently(&world, &ctx, "layout", &extra);
    assert_eq!(reports[0].0["cache_repo"], repo.as_str());
    assert_entries_valid(&reports[1], &repo);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names.len(),
        3,
        "one index entry per key, never two: {names:?}"
    );
    assert!(layout.join("oci-layout").is_file());
    let (out, warm) = cached_build(&world, &ctx, "layout:3", &[&extra[0]]);
    assert_success(&out);
    assert_eq!(warm.status_of("RUN sleep").status, "hit");
    assert_eq!(warm.status_of("RUN echo more").status, "hit");
    assert_eq!(warm.digest(), reports[0].digest());
    let entry = &warm.0["stages"][0]["instructions"][1]["cache"]["entry"];
    assert!(
        entry.as_str().unwrap().starts_with(&format!("{repo}:")),
        "{entry}"
    );
}

/// A cache repository that refuses entries costs the build nothing: it succeeds, says so once
/// in the log, and the report names each failed push.
#[test]
fn cache_push_failures_never_fail_the_build() {
    let world = World::new();
    let ctx = context(&world, "push-fails");
    let proxy = FaultProxy::start(&world.registry.addr());
    proxy.fail("PUT", "/cache/manifests/", 403, 100);
    let repo = format!("{}/refusing/cache", proxy.addr());
    let (out, report) = cached_build(
        &world,
        &ctx,
        "push-fails:1",
        &[&format!("--cache-repo={repo}")],
    );
    assert_success(&out);
    let (_, stderr) = text(&out);
    assert_eq!(stderr.matches("cache push failed").count(), 1, "{stderr}");
    assert!(stderr.contains("3 of 3 cache pushes failed"), "{stderr}");
    let run = &report.0["stages"][0]["instructions"][1]["cache"];
    assert_eq!(run["status"], "miss");
    assert_eq!(run["reason"], "no_entry", "why it missed stays the reason");
    assert_eq!(run["push"], "failed");
    assert!(run["detail"].as_str().unwrap().contains("403"), "{run:#}");
    assert_eq!(report.0["cache_summary"]["push_failed"], 3);
    assert!(report.0["outcome"]["success"].as_bool().unwrap());
    assert!(proxy.count("PUT", "/cache/manifests/") >= 3);
}

/// An unreachable cache repository: every lookup is a miss, the build succeeds, and the log says
/// so once (no retry warnings per request).
#[test]
fn cache_unreachable_repo_is_a_miss_not_a_failure() {
    let world = World::new();
    let ctx = context(&world, "unreachable");
    let port = crate::harness::registry::free_port();
    let repo = format!("127.0.0.1:{port}/gone/cache");
    let (out, report) = cached_build(
        &world,
        &ctx,
        "unreachable:1",
        &[&format!("--cache-repo={repo}")],
    );
    assert_success(&out);
    let (_, stderr) = text(&out);
    assert_eq!(stderr.matches("cache lookup of").count(), 1, "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    assert!(stderr.contains("3 of 3 cache pushes failed"), "{stderr}");
    let run = report.status_of("RUN sleep");
    assert_eq!(run.status, "miss");
    let detail = report.0["stages"][0]["instructions"][1]["cache"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains(&port.to_string()), "{detail}");
}

#[test]
fn cache_entries_older_than_the_ttl_are_not_used() {
    let world = World::new();
    let ctx = context(&world, "ttl");
    assert_success(&cached_build(&world, &ctx, "ttl:1", &[]).0);
    let (out, expired) = cached_build(&world, &ctx, "ttl:2", &["--cache-ttl=0s"]);
    assert_success(&out);
    let run = &expired.0["stages"][0]["instructions"][1]["cache"];
    assert_eq!(run["status"], "miss");
    assert_eq!(run["reason"], "expired");
    assert!(run["created"].as_str().unwrap().ends_with('Z'), "{run:#}");
    let (out, fresh) = cached_build(&world, &ctx, "ttl:3", &["--cache-ttl=1h"]);
    assert_success(&out);
    assert_eq!(fresh.status_of("RUN sleep").status, "hit");
}

#[test]
fn cache_no_push_cache_looks_up_but_stores_nothing() {
    let world = World::new();
    let ctx = context(&world, "no-push");
    let (out, first) = cached_build(&world, &ctx, "no-push:1", &["--no-push-cache"]);
    assert_success(&out);
    let run = &first.0["stages"][0]["instructions"][1]["cache"];
    assert_eq!(run["push"], "skipped");
    let (out, second) = cached_build(&world, &ctx, "no-push:2", &[]);
    assert_success(&out);
    assert_eq!(second.status_of("RUN sleep").status, "miss");
    let (out, third) = cached_build(&world, &ctx, "no-push:3", &["--no-push-cache"]);
    assert_success(&out);
    assert_eq!(third.status_of("RUN sleep").status, "hit");
}

/// A second build with the same `--cache-dir` downloads no base layer, and says so.
#[test]
fn cache_dir_keeps_base_layers_between_builds() {
    let world = World::new();
    let ctx = context(&world, "cache-dir");
    let cache_dir = world.dir.path().join("cache-dir");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let flag = format!("--cache-dir={}", cache_dir.display());
    let (out, first) = cached_build(&world, &ctx, "cache-dir:1", &[&flag]);
    assert_success(&out);
    assert_eq!(first.0["base_layers"]["downloaded"], 1);
    assert_eq!(
        first.0["base_layers"]["store"],
        cache_dir.display().to_string()
    );
    let (out, second) = cached_build(&world, &ctx, "cache-dir:2", &[&flag]);
    assert_success(&out);
    assert_eq!(second.0["base_layers"]["downloaded"], 0);
    assert_eq!(second.0["base_layers"]["reused"], 1);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("1 of 1 layers already in the blob store"),
        "{stderr}"
    );
}

/// A failed build still writes its report with the cache objects, and the entries of the
/// instructions that ran before the failure are stored: the next build hits them.
#[test]
fn cache_entries_before_a_failure_are_kept_and_reported() {
    let world = World::new();
    let ctx = files(
        &world.context("fails"),
        &[(
            "Dockerfile",
            "ARG BASE\nFROM $BASE\nRUN echo one > /one\nRUN exit 3\n",
        )],
    );
    let (out, failed) = cached_build(&world, &ctx, "fails:1", &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(failed.0["outcome"]["success"], false);
    let one = &failed.0["stages"][0]["instructions"][0]["cache"];
    assert_eq!(one["status"], "miss");
    assert_eq!(one["push"], "pushed");
    let (_, again) = cached_build(&world, &ctx, "fails:2", &[]);
    assert_eq!(again.status_of("RUN echo one").status, "hit");
}

/// `--cache-repo` alone turns the cache on, an empty one (Tekton's unset param) does not, and
/// `--cache` with nowhere to store entries is a usage error.
#[test]
fn cache_repo_flag_decides_whether_the_cache_is_on() {
    let world = World::new();
    let ctx = context(&world, "flags");
    let report_path = |name: &str| world.dir.path().join(format!("{name}.json"));
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(report_path(name)).unwrap()).unwrap()
    };
    let repo = world.image("flags/cache");
    let out = world.build(
        &ctx,
        "flags:1",
        &[
            &format!("--cache-repo={repo}"),
            &format!("--report={}", report_path("on").display()),
        ],
    );
    assert_success(&out);
    assert_eq!(read("on")["cache_repo"], repo.as_str());
    let out = world.build(
        &ctx,
        "flags:2",
        &[
            "--cache-repo=",
            &format!("--report={}", report_path("off").display()),
        ],
    );
    assert_success(&out);
    assert!(read("off")["cache_repo"].is_null());
    assert!(read("off")["stages"][0]["instructions"][1]["cache"].is_null());
    let out = world.build(
        &ctx,
        "flags:3",
        &[
            "--cache=false",
            &format!("--cache-repo={repo}"),
            &format!("--report={}", report_path("false").display()),
        ],
    );
    assert_success(&out);
    assert!(read("false")["cache_repo"].is_null());

    let out = crate::harness::run(crate::harness::kbuild().args([
        "build",
        "--cache",
        "--no-push",
        &format!("--context={}", ctx.display()),
    ]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--cache needs somewhere to keep entries"),
        "{stderr}"
    );
}
