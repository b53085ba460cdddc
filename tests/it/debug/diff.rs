//! `kbuild cache diff`: reports, entries, and a report against a cache repository.

use kbuild::cache::key::Part;
use serde_json::json;

use super::inspect::{K_BUILD, fill};
use super::*;

pub const BASE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn cache_diff(a: &str, b: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["cache", "diff", a, b];
    args.extend_from_slice(extra);
    output(&mut debug_cmd(&args))
}

/// The builder stage of the zego-like Dockerfile and a final stage copying from it.
pub fn stages(
    goproxy: &str,
    main_go: &str,
    app: &str,
) -> Vec<(&'static str, &'static str, Vec<Step>)> {
    vec![
        (
            "builder",
            BASE,
            vec![
                step(2, "COPY go.mod /src/").hit(),
                step(3, "COPY main.go /src/").with(Part::File {
                    path: "main.go".into(),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    content: main_go.into(),
                }),
                step(4, "RUN go build -o /out/app").with(arg("GOPROXY", goproxy)),
            ],
        ),
        (
            "final",
            "sha256:2222222222222222222222222222222222222222222222222222222222222222",
            vec![
                step(7, "COPY --from=builder /out/app /app").with(Part::StageFile {
                    stage: "builder".into(),
                    path: "/out/app".into(),
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    content: app.into(),
                }),
            ],
        ),
    ]
}

#[test]
fn two_reports_the_first_divergence_is_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let repo = "reg.example/app/cache";
    let (a, _) = report_json(
        repo,
        &stages("https://proxy-a.example", "sha256:aaaa", "sha256:app1"),
        json!({"success": true}),
    );
    let (b, _) = report_json(
        repo,
        &stages("https://proxy-b.example", "sha256:bbbb", "sha256:app2"),
        json!({"success": true}),
    );
    let a = write_report(dir.path(), "a.json", &a);
    let b = write_report(dir.path(), "b.json", &b);
    let (code, stdout, stderr) = cache_diff(a.to_str().unwrap(), b.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(
        stdout.contains("CAUSE    Dockerfile:3  COPY main.go /src/"),
        "{stdout}"
    );
    assert!(stdout.contains("file changed: main.go"), "{stdout}");
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(&regex_escape(&dir.path().display().to_string()), "[DIR]");
    s.bind(|| insta::assert_snapshot!("diff_two_reports", stdout));

    let (code, json, _) = cache_diff(
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        &["--format", "json"],
    );
    assert_eq!(code, 0);
    assert_schema("diff", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["cause"], 1);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "same");
    assert_eq!(steps[1]["role"], "cause");
    assert_eq!(steps[1]["changes"][0]["change"], "file_changed");
    // The build step differs on its own too (GOPROXY), besides its parent.
    assert_eq!(steps[2]["role"], "independent");
    assert_eq!(steps[2]["changes"][1]["change"], "arg");
    assert_eq!(steps[3]["role"], "follows");
    assert_eq!(steps[3]["changes"][0]["change"], "stage_output");
    assert_eq!(steps[3]["changes"][0]["inherited"], true);
}

#[test]
fn two_entries_and_a_kaniko_entry_without_preimage() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    let repo = reg.repo("app/cache");
    // The same build step with another GOPROXY, on the same parent.
    let other = preimage(
        kbuild::cache::key::ParentKind::Instruction,
        &format!("sha256:{}", keys.copy),
        "RUN go build -o /out/app",
        &[arg("GOPROXY", "https://other.example")],
    );
    let other_key = reg.push_kbuild(
        &repo,
        &other,
        "RUN go build -o /out/app",
        None,
        &created_ago(DAY),
    );
    let (code, stdout, stderr) = cache_diff(
        &format!("{repo}:{}", keys.build),
        &format!("{repo}:{other_key}"),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(stdout.contains("ARG value changed: GOPROXY"), "{stdout}");
    assert!(
        stdout.contains("- https://goproxy.example\n")
            && stdout.contains("+ https://other.example\n"),
        "{stdout}"
    );
    settings(&reg).bind(|| insta::assert_snapshot!("diff_two_entries", stdout));

    let (code, stdout, stderr) = cache_diff(
        &format!("{repo}:{}", keys.build),
        &format!("{repo}:{K_BUILD}"),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Kaniko entries have no preimage"),
        "{stdout}"
    );
    assert!(stdout.contains("instruction text changed"), "{stdout}");
}

#[test]
fn a_report_against_a_cache_repository() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    let repo = reg.repo("app/cache");
    let (report, pre) = report_json(
        &repo,
        &[(
            "builder",
            BASE,
            vec![
                step(2, "COPY go.mod /src/").hit(),
                step(3, "RUN go build -o /out/app")
                    .with(arg("GOPROXY", "https://new-proxy.example")),
                step(4, "RUN true"),
            ],
        )],
        json!({"success": true}),
    );
    assert_eq!(
        pre[0][0].key().hex(),
        keys.copy,
        "the report's first key is in the repository"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_report(dir.path(), "report.json", &report);
    let (code, stdout, stderr) = cache_diff(path.to_str().unwrap(), &repo, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    let mut s = settings(&reg);
    s.add_filter(&regex_escape(&dir.path().display().to_string()), "[DIR]");
    s.bind(|| insta::assert_snapshot!("diff_report_and_repository", stdout));
    let (_, json, _) = cache_diff(path.to_str().unwrap(), &repo, &["--format", "json"]);
    assert_schema("diff", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let roles: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["role"].as_str().unwrap_or(s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, ["same", "cause", "follows"]);
    assert_eq!(
        v["steps"][1]["key_b"],
        format!("sha256:{}", keys.build),
        "compared with the nearest entry"
    );

    // The other way round, A and B swap.
    let (_, json, _) = cache_diff(&repo, path.to_str().unwrap(), &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["a"], repo);
    assert_eq!(v["steps"][1]["changes"][0]["a"], "https://goproxy.example");
}

#[test]
fn two_repositories_cannot_be_compared() {
    let reg = CacheRegistry::new();
    let (code, _, stderr) = cache_diff(&reg.repo("a/cache"), &reg.repo("b/cache"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("hint: to see one repository"), "{stderr}");
}
