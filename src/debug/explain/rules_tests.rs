//! Each report rule with a report that triggers it and one that does not.

use super::*;
use crate::cache::key::{ParentKind, Part};
use crate::debug::testing::{I, arg, entry, file, i, preimage, report, stage};
use serde_json::{Value, json};

const REPO: &str = "reg.local/app/cache";

fn now() -> SystemTime {
    parse_rfc3339("2025-06-20T10:00:00Z").unwrap()
}

fn explain(
    r: &BuildReport,
    baseline: Option<&BuildReport>,
    entries: Option<&[CacheEntry]>,
    checks: &[EntryEvidence],
) -> Vec<Finding> {
    run(&Inputs {
        report: r,
        now: now(),
        ttl: Duration::from_secs(336 * 3600),
        repo: Some(REPO),
        entries,
        layer_checks: checks,
        baseline,
    })
}

fn ids(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.id.id()).collect()
}

fn ok() -> Value {
    json!({"success": true, "digest": "sha256:0"})
}

// KB001

fn run_failed_report() -> BuildReport {
    let mut failing = i("RUN make");
    failing.exit_code = Some(2);
    let (s, _) = stage(0, "builder", "sha256:b", REPO, &[i("COPY . /src"), failing]);
    report(
        vec![s],
        json!({"success": false, "error_kind": "run_failed", "exit_code": 2,
               "error": "Dockerfile:3: `make` returned a non-zero code: 2\nlast output lines:\n  cc: error: x.c: No such file\n  make: *** [all] Error 1"}),
        REPO,
    )
}

#[test]
fn kb001_a_failed_run_names_line_exit_code_and_output() {
    let f = explain(&run_failed_report(), None, None, &[]);
    let run = f.iter().find(|f| f.id == Rule::RunFailed).expect("KB001");
    assert_eq!(run.evidence.exit_code, Some(2));
    assert_eq!(run.evidence.location.as_deref(), Some("Dockerfile:3"));
    assert_eq!(run.evidence.instruction.as_deref(), Some("RUN make"));
    assert_eq!(run.evidence.stage.as_deref(), Some("builder"));
    assert_eq!(
        run.evidence.output,
        ["cc: error: x.c: No such file", "make: *** [all] Error 1"]
    );
    assert!(run.summary.contains("exit code 2"), "{}", run.summary);
    assert!(run.fix.contains("--target builder"), "{}", run.fix);
    assert_eq!(run.doc, "docs/explain/KB001.md");
}

#[test]
fn kb001_not_for_a_successful_build() {
    let (s, _) = stage(0, "b", "sha256:b", REPO, &[i("RUN make").hit()]);
    assert!(!ids(&explain(&report(vec![s], ok(), REPO), None, None, &[])).contains(&"KB001"));
}

// KB002 and KB021

fn missing_report() -> BuildReport {
    let (s0, _) = stage(
        0,
        "builder",
        "sha256:b",
        REPO,
        &[
            i("COPY . /workspace"),
            i("RUN go build -o /workspace/app").hit(),
        ],
    );
    let (s1, _) = stage(1, "stage-1", "sha256:slim", REPO, &[]);
    report(
        vec![s0, s1],
        json!({"success": false, "error_kind": "missing_cross_stage_source",
               "error": "stage builder did not produce /workspace/app, which stage stage-1 copies (Dockerfile:12: COPY --from=builder /workspace/app /app)\nthe instruction that should have made it: Dockerfile:3: RUN go build -o /workspace/app\nlayers applied in stage builder:\n  sha256:aa  COPY . /workspace\nhint: check"}),
        REPO,
    )
}

fn check(has_path: bool, entries: u64) -> EntryEvidence {
    EntryEvidence {
        entry: format!("{REPO}:{}", "a".repeat(64)),
        instruction: Some("RUN go build -o /workspace/app".into()),
        layer: Some("sha256:l".into()),
        layer_entries: Some(entries),
        has_path: Some(has_path),
        error: None,
    }
}

#[test]
fn kb002_names_producer_path_and_copy() {
    let r = missing_report();
    let m = missing_source(&r).unwrap();
    assert_eq!(
        (m.producer.as_str(), m.consumer.as_str()),
        ("builder", "stage-1")
    );
    assert_eq!(m.path, "/workspace/app");
    assert_eq!(m.location, "Dockerfile:12");
    let f = explain(&r, None, None, &[]);
    let kb2 = f
        .iter()
        .find(|f| f.id == Rule::CrossStageSourceMissing)
        .unwrap();
    assert_eq!(kb2.evidence.path.as_deref(), Some("/workspace/app"));
    assert_eq!(
        kb2.evidence.instruction.as_deref(),
        Some("COPY --from=builder /workspace/app /app")
    );
    assert_eq!(
        kb2.evidence.entries.len(),
        1,
        "the cache hit of stage builder is listed"
    );
    assert!(
        kb2.evidence
            .notes
            .iter()
            .any(|n| n.contains("layers applied"))
    );
    assert_eq!(
        layer_questions(&r),
        [(
            format!(
                "{REPO}:{}",
                kb2.evidence.entries[0].entry.rsplit(':').next().unwrap()
            ),
            vec!["/workspace/app".to_string()]
        )]
    );
}

#[test]
fn kb002_not_for_other_failures() {
    assert!(!ids(&explain(&run_failed_report(), None, None, &[])).contains(&"KB002"));
    assert!(layer_questions(&run_failed_report()).is_empty());
}

#[test]
fn kb021_an_empty_cached_layer_lacks_the_needed_path() {
    let f = explain(&missing_report(), None, None, &[check(false, 0)]);
    let kb21 = f
        .iter()
        .find(|f| f.id == Rule::LayerLacksPath)
        .expect("KB021");
    assert!(
        kb21.summary.contains("has an empty layer"),
        "{}",
        kb21.summary
    );
    assert!(
        kb21.commands[0].starts_with("skopeo delete docker://reg.local/app/cache:aaaa"),
        "{}",
        kb21.fix
    );
    assert_eq!(kb21.evidence.entries[0].layer_entries, Some(0));
}

#[test]
fn kb021_not_when_a_cached_layer_has_the_path_or_none_was_read() {
    assert!(!ids(&explain(&missing_report(), None, None, &[check(true, 3)])).contains(&"KB021"));
    assert!(!ids(&explain(&missing_report(), None, None, &[])).contains(&"KB021"));
}

// KB003 and KB004

fn registry_report(error: &str) -> BuildReport {
    report(
        vec![],
        json!({"success": false, "error_kind": "registry", "error": error}),
        REPO,
    )
}

#[test]
fn kb003_refused_credentials() {
    let r = registry_report(
        "registry reg.local refused the credentials for push (HTTP 401 Unauthorized); credentials: anonymous\nhint: ...",
    );
    let f = explain(&r, None, None, &[]);
    assert_eq!(ids(&f), ["KB003"]);
    assert!(
        f[0].summary.contains("registry reg.local"),
        "{}",
        f[0].summary
    );
    assert!(f[0].fix.contains("/kaniko/.docker/config.json"));
}

#[test]
fn kb003_and_kb004_not_for_a_missing_image_or_a_file_permission() {
    let r = registry_report("manifest reg.local/app:1 not found in registry reg.local (HTTP 404)");
    assert!(explain(&r, None, None, &[]).is_empty());
    let r = registry_report("work directory /kaniko/build-1: Permission denied (os error 13)");
    assert!(explain(&r, None, None, &[]).is_empty());
}

#[test]
fn kb004_certificate_failure() {
    let r = registry_report(
        "cannot reach registry reg.local:5000 (https://reg.local:5000/v2/): invalid peer certificate: UnknownIssuer",
    );
    let f = explain(&r, None, None, &[]);
    assert_eq!(ids(&f), ["KB004"]);
    assert!(
        f[0].fix.contains("--registry-certificate=reg.local:5000="),
        "{}",
        f[0].fix
    );
}

#[test]
fn kb004_not_for_auth_failures() {
    let r = registry_report("registry r denied push (HTTP 403 Forbidden); credentials: x");
    assert_eq!(ids(&explain(&r, None, None, &[])), ["KB003"]);
}

// KB010 to KB017: a baseline build and this one, differing in one part.

fn pair(old: Vec<Value>, new: Vec<Value>) -> Vec<Finding> {
    let base = report(old, ok(), REPO);
    let this = report(new, ok(), REPO);
    explain(&this, Some(&base), None, &[])
}

fn one_stage(base: &str, instrs: &[I]) -> Vec<Value> {
    vec![stage(0, "builder", base, REPO, instrs).0]
}

fn steps(goproxy: &str, env: &str, main: &str, build: &str) -> Vec<I> {
    vec![
        i("COPY main.go /src/").with(file("main.go", main)),
        i(build).with(arg("GOPROXY", goproxy)).with(Part::Env {
            name: "CGO_ENABLED".into(),
            value: env.into(),
        }),
        i("RUN strip /out/app"),
    ]
}

#[test]
fn cache_miss_rules_each_name_their_cause() {
    let base = steps("p1", "0", "sha256:1", "RUN go build");
    let cases: [(&str, Vec<Value>); 5] = [
        ("KB010", one_stage("sha256:moved", &base)),
        (
            "KB011",
            one_stage("sha256:b", &steps("p1", "0", "sha256:1", "RUN go build -v")),
        ),
        (
            "KB012",
            one_stage("sha256:b", &steps("p1", "1", "sha256:1", "RUN go build")),
        ),
        (
            "KB013",
            one_stage("sha256:b", &steps("p2", "0", "sha256:1", "RUN go build")),
        ),
        (
            "KB014",
            one_stage("sha256:b", &steps("p1", "0", "sha256:2", "RUN go build")),
        ),
    ];
    for (id, new) in cases {
        let f = pair(one_stage("sha256:b", &base), new);
        assert_eq!(ids(&f), [id], "{id}: {f:#?}");
        assert!(
            f[0].summary.contains("compared with the earlier build"),
            "{}",
            f[0].summary
        );
        assert!(!f[0].evidence.changes.is_empty());
        assert!(f[0].evidence.changes.iter().all(|c| !c.inherited));
    }
    let f = pair(
        one_stage("sha256:b", &base),
        one_stage("sha256:b", &steps("p2", "0", "sha256:1", "RUN go build")),
    );
    let change = &f[0].evidence.changes[0];
    assert_eq!(
        (change.a.as_deref(), change.b.as_deref()),
        (Some("p1"), Some("p2"))
    );
    assert!(
        f[0].evidence.notes[0].contains("1 later instruction"),
        "{:?}",
        f[0].evidence.notes
    );
}

#[test]
fn cache_miss_rules_stay_quiet_when_keys_match() {
    let base = steps("p1", "0", "sha256:1", "RUN go build");
    let f = pair(one_stage("sha256:b", &base), one_stage("sha256:b", &base));
    assert!(f.is_empty(), "{f:#?}");
    // Hits are never explained as misses, whatever the baseline says.
    let hits: Vec<I> = steps("p2", "0", "sha256:1", "RUN go build")
        .into_iter()
        .map(I::hit)
        .collect();
    assert!(pair(one_stage("sha256:b", &base), one_stage("sha256:b", &hits)).is_empty());
}

fn copy_from(content: &str) -> I {
    i("COPY --from=builder /out/app /app").with(Part::StageFile {
        stage: "builder".into(),
        path: "/out/app".into(),
        mode: 0o755,
        uid: 0,
        gid: 0,
        content: content.into(),
    })
}

#[test]
fn kb015_a_producer_stage_output_that_changed_on_its_own() {
    let b = steps("p1", "0", "sha256:1", "RUN go build");
    let builder: Vec<I> = b.iter().cloned().map(I::hit).collect();
    let old = vec![
        stage(0, "builder", "sha256:b", REPO, &builder).0,
        stage(1, "final", "sha256:s", REPO, &[copy_from("sha256:app1")]).0,
    ];
    let new = vec![
        stage(0, "builder", "sha256:b", REPO, &builder).0,
        stage(1, "final", "sha256:s", REPO, &[copy_from("sha256:app2")]).0,
    ];
    assert_eq!(ids(&pair(old, new)), ["KB015"]);
}

#[test]
fn kb015_not_when_the_producer_stage_itself_changed() {
    let old = vec![
        stage(
            0,
            "builder",
            "sha256:b",
            REPO,
            &steps("p1", "0", "sha256:1", "RUN go build"),
        )
        .0,
        stage(1, "final", "sha256:s", REPO, &[copy_from("sha256:app1")]).0,
    ];
    let new = vec![
        stage(
            0,
            "builder",
            "sha256:b",
            REPO,
            &steps("p2", "0", "sha256:1", "RUN go build"),
        )
        .0,
        stage(1, "final", "sha256:s", REPO, &[copy_from("sha256:app2")]).0,
    ];
    assert_eq!(
        ids(&pair(old, new)),
        ["KB013"],
        "the copy follows from the ARG change"
    );
}

#[test]
fn kb016_other_parts_such_as_the_platform() {
    let old = one_stage("sha256:b", &[i("RUN make")]);
    let mut new = old.clone();
    let mut p = preimage(ParentKind::BaseImage, "sha256:b", "RUN make", &[]);
    p.parts[2] = Part::Platform {
        platform: "linux/arm64".into(),
    };
    new[0]["instructions"][0]["cache"]["key"] = json!(p.key().to_string());
    new[0]["instructions"][0]["cache"]["preimage"] = serde_json::to_value(&p).unwrap();
    let f = pair(old.clone(), new);
    assert_eq!(ids(&f), ["KB016"]);
    assert_eq!(f[0].evidence.changes[0].change, ChangeKind::Platform);
    assert!(pair(old.clone(), old).is_empty());
}

#[test]
fn kb017_a_miss_with_nothing_to_compare() {
    let (s, _) = stage(
        0,
        "b",
        "sha256:b",
        REPO,
        &[
            i("RUN make"),
            i("RUN make install").reason(Some("parent_missed")),
        ],
    );
    let r = report(vec![s], ok(), REPO);
    let f = explain(&r, None, None, &[]);
    assert_eq!(ids(&f), ["KB017"], "one finding, not one per miss");
    assert!(
        f[0].evidence.notes[0].contains("nothing to compare"),
        "{:?}",
        f[0].evidence.notes
    );
    // Entries that are not close (another instruction type) do not explain it either.
    let far = entry(
        REPO,
        &preimage(ParentKind::BaseImage, "x", "COPY a /", &[]),
        "COPY a /",
        "2025-06-19T00:00:00Z",
        1,
    );
    let f = explain(&r, None, Some(std::slice::from_ref(&far)), &[]);
    assert_eq!(ids(&f), ["KB017"]);
    assert!(
        f[0].evidence.notes[0].contains("no entry in reg.local/app/cache is close"),
        "{:?}",
        f[0].evidence.notes
    );
}

#[test]
fn kb017_not_when_the_closest_entry_explains_the_miss() {
    let (_, old) = stage(
        0,
        "b",
        "sha256:b",
        REPO,
        &steps("p1", "0", "sha256:1", "RUN go build"),
    );
    let (s, _) = stage(
        0,
        "b",
        "sha256:b",
        REPO,
        &steps("p2", "0", "sha256:1", "RUN go build"),
    );
    let mut s = s;
    s["instructions"][0]["cache"]["status"] = json!("hit");
    let entries: Vec<CacheEntry> = old
        .iter()
        .map(|p| entry(REPO, p, "x", "2025-06-19T00:00:00Z", 1))
        .collect();
    let f = explain(&report(vec![s], ok(), REPO), None, Some(&entries), &[]);
    assert_eq!(ids(&f), ["KB013"]);
    assert!(
        f[0].summary
            .contains("closest entry in reg.local/app/cache"),
        "{}",
        f[0].summary
    );
    assert!(
        f[0].evidence
            .entry
            .as_deref()
            .unwrap()
            .starts_with("reg.local/app/cache:")
    );
    let c = &f[0].evidence.changes[0];
    assert_eq!(
        (c.a.as_deref(), c.b.as_deref()),
        (Some("p1"), Some("p2")),
        "cached -> now"
    );
}

// KB020

#[test]
fn kb020_an_expired_entry() {
    let (mut s, _) = stage(
        0,
        "b",
        "sha256:b",
        REPO,
        &[i("RUN make").reason(Some("expired"))],
    );
    s["instructions"][0]["cache"]["created"] = json!("2025-05-01T10:00:00Z");
    let f = explain(&report(vec![s], ok(), REPO), None, None, &[]);
    assert_eq!(ids(&f), ["KB020"]);
    assert!(
        f[0].summary.contains("expired, 50d old (--cache-ttl 336h)"),
        "{}",
        f[0].summary
    );
}

#[test]
fn kb020_old_reports_without_a_reason_use_the_entry_date() {
    let (s, p) = stage(0, "b", "sha256:b", REPO, &[i("RUN make").reason(None)]);
    let old = entry(REPO, &p[0], "RUN make", "2025-05-01T10:00:00Z", 1);
    let fresh = entry(REPO, &p[0], "RUN make", "2025-06-19T10:00:00Z", 1);
    let r = report(vec![s], ok(), REPO);
    assert!(ids(&explain(&r, None, Some(std::slice::from_ref(&old)), &[])).contains(&"KB020"));
    assert!(!ids(&explain(&r, None, Some(std::slice::from_ref(&fresh)), &[])).contains(&"KB020"));
}

#[test]
fn kb020_not_for_a_plain_miss() {
    let (s, _) = stage(0, "b", "sha256:b", REPO, &[i("RUN make")]);
    assert!(!ids(&explain(&report(vec![s], ok(), REPO), None, None, &[])).contains(&"KB020"));
}

#[test]
fn the_registry_is_read_only_for_misses_it_can_explain() {
    let hits: Vec<I> = vec![i("RUN a").hit(), i("RUN b").hit()];
    let (s, _) = stage(0, "b", "sha256:b", REPO, &hits);
    assert!(!misses_to_explain(&report(vec![s], ok(), REPO)));
    let (mut s, _) = stage(
        0,
        "b",
        "sha256:b",
        REPO,
        &[i("RUN a").reason(Some("expired"))],
    );
    assert!(
        misses_to_explain(&report(vec![s.clone()], ok(), REPO)),
        "age unknown"
    );
    s["instructions"][0]["cache"]["created"] = json!("2025-05-01T10:00:00Z");
    assert!(!misses_to_explain(&report(vec![s], ok(), REPO)));
    let (s, _) = stage(0, "b", "sha256:b", REPO, &[i("RUN a")]);
    assert!(misses_to_explain(&report(vec![s], ok(), REPO)));
}

/// Stages build in parallel: the failing stage is not always the last one in the report (a
/// sibling stopped by the failure, or one that finished after it, can come later).
#[test]
fn kb001_names_the_stage_marked_failed_not_the_last_one() {
    let (mut broken, _) = stage(0, "broken", "sha256:b", REPO, &[]);
    broken["failed"] = json!(true);
    let (mut slow, _) = stage(1, "slow", "sha256:b", REPO, &[i("RUN sleep 3")]);
    slow["stopped"] = json!(true);
    let (done, _) = stage(2, "done", "sha256:b", REPO, &[i("RUN true")]);
    let r = report(
        vec![broken, slow, done],
        json!({"success": false, "error_kind": "run_failed", "exit_code": 7,
               "error": "Dockerfile:6: `/bin/sh -c exit 7` returned a non-zero code: 7"}),
        REPO,
    );
    let f = explain(&r, None, None, &[]);
    let run = f.iter().find(|f| f.id == Rule::RunFailed).expect("KB001");
    assert_eq!(run.evidence.stage.as_deref(), Some("broken"));
    assert_eq!(run.evidence.location.as_deref(), Some("Dockerfile:6"));
}
