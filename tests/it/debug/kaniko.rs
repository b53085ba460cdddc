//! `kbuild explain --kaniko-log` on the seed's own log (CONTEXT.md section 2), with the Kaniko
//! cache entries it names in a real registry, and the static `--dockerfile` check.

use super::inspect::{K_BUILD, K_CP, K_VERSION, fill};
use super::*;

const ZEGO: &str = "/workspace/services/platform/zego-streaming/zego-streaming";

/// The seed log, relative to the fixtures directory the commands run in: its path is printed in
/// a line that wraps at 100 columns, so an absolute path would make the snapshot depend on where
/// the repository is checked out.
fn seed_log() -> PathBuf {
    PathBuf::from("kaniko-logs/zego-streaming.log")
}

fn explain(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    output(debug_cmd(&all).current_dir(fixtures()))
}

fn fixture_settings(reg: &CacheRegistry) -> insta::Settings {
    let mut s = settings(reg);
    s.add_filter(
        &regex_escape(&fixtures().display().to_string()),
        "[FIXTURES]",
    );
    s
}

#[test]
fn kb030_the_seed_log_names_the_binary_the_mount_and_the_poisoned_entries() {
    let reg = CacheRegistry::new();
    fill(&reg);
    let repo = reg.repo("app/cache");
    let log = seed_log();
    let (code, stdout, stderr) =
        explain(&["--kaniko-log", log.to_str().unwrap(), "--cache-repo", &repo]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(
        stdout.contains("KB030 error: stage 0 never saved"),
        "{stdout}"
    );
    assert!(stdout.contains(ZEGO), "names the missing binary: {stdout}");
    assert!(
        stdout.contains("under /workspace, a mount point Kaniko does not"),
        "{stdout}"
    );
    assert!(stdout.contains("--cache-run-layers=false"), "{stdout}");
    assert!(stdout.contains("COPY . /src"), "{stdout}");
    assert!(stdout.contains(&format!("    REPO={repo}\n")), "{stdout}");
    for key in [K_VERSION, K_BUILD, K_CP] {
        assert!(
            stdout.contains(&format!("    skopeo delete docker://$REPO:{key}\n")),
            "every RUN entry used is a candidate: {stdout}"
        );
    }
    assert!(
        stdout.contains("confirmed: the layers of the cache entries used do not contain"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("KB031"),
        "the two saved libraries are not reported: {stdout}"
    );
    fixture_settings(&reg).bind(|| insta::assert_snapshot!("explain_kaniko_seed_log", stdout));

    let (_, json, _) = explain(&[
        "--kaniko-log",
        log.to_str().unwrap(),
        "--cache-repo",
        &repo,
        "--format",
        "json",
    ]);
    assert_schema("explanation", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["subject"], "kaniko-log");
    let f = &v["findings"][0];
    assert_eq!(f["id"], "KB030");
    assert_eq!(
        f["commands"][1],
        format!("skopeo delete docker://{repo}:{K_BUILD}"),
        "JSON has the full commands"
    );
    assert_eq!(f["evidence"]["path"], ZEGO);
    let entries = f["evidence"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let build = entries
        .iter()
        .find(|e| e["entry"].as_str().unwrap().ends_with(K_BUILD))
        .unwrap();
    assert_eq!(
        build["layer_entries"], 0,
        "the go build entry's layer is empty"
    );
    assert_eq!(build["has_path"], false);
    let cp = entries
        .iter()
        .find(|e| e["entry"].as_str().unwrap().ends_with(K_CP))
        .unwrap();
    assert_eq!(cp["layer_entries"], 3);
}

#[test]
fn kb030_from_the_log_alone_offline_and_with_the_static_check() {
    let log = seed_log();
    let dockerfile = fixtures().join("zego-streaming/Dockerfile");
    let (code, stdout, stderr) = explain(&[
        "--kaniko-log",
        log.to_str().unwrap(),
        "--offline",
        "--dockerfile",
        dockerfile.to_str().unwrap(),
        "--build-arg",
        "GOPROXY=https://goproxy.example",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_schema("explanation", &stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["KB030", "KB032", "KB032"]);
    let entries = v["findings"][0]["evidence"]["entries"].as_array().unwrap();
    assert!(
        entries[1]["entry"]
            .as_str()
            .unwrap()
            .starts_with("registry.example.com/devops/1/zego-streaming-s2/cache:"),
        "without --cache-repo the entries are named as the log names them"
    );
    assert!(
        entries[1].get("layer_entries").is_none(),
        "not read offline"
    );
    assert_eq!(
        v["findings"][0]["evidence"]["stage"], "0 (builder)",
        "the Dockerfile names the stage"
    );
    assert!(
        v["notes"][0].as_str().unwrap().contains("--offline"),
        "{}",
        v["notes"]
    );
}

#[test]
fn kb030_and_kb031_not_when_every_dependency_was_saved() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join(seed_log())).unwrap();
    // The run that missed the cache: the go build ran on the live volume and its binary was saved.
    let good: String = text
        .lines()
        .filter(|l| !l.contains("error building image"))
        .flat_map(|l| {
            let mut lines = vec![l.replace("Using caching version of cmd: RUN cd", "No cached layer found for cmd RUN cd")];
            if l.contains("Saving file workspace/third_party/zego") {
                lines.insert(0, "INFO[0053] Saving file workspace/services/platform/zego-streaming/zego-streaming for later use".into());
            }
            lines
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join("good.log");
    std::fs::write(&path, good).unwrap();
    let (code, stdout, stderr) = explain(&["--kaniko-log", path.to_str().unwrap(), "--offline"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("No findings."), "{stdout}");
}

#[test]
fn kb031_a_dependency_never_saved_outside_any_mount() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.log");
    std::fs::write(
        &path,
        "INFO[0001] Built cross stage deps: map[0:[/out/app]]\n\
         INFO[0001] Building stage 'alpine' [idx: '0', base-idx: '-1']\n\
         INFO[0001] Checking for cached layer reg.example/cache:aaaaaaaaaaaa...\n\
         INFO[0002] No cached layer found for cmd RUN go build -o /out/ap\n\
         INFO[0009] Building stage 'scratch' [idx: '1', base-idx: '-1']\n\
         error building image: error building stage: failed to optimize instructions: failed to get files used from context: failed to get fileinfo for /kaniko/0/out/app: lstat /kaniko/0/out/app: no such file or directory\n",
    )
    .unwrap();
    let (code, stdout, stderr) = explain(&[
        "--kaniko-log",
        path.to_str().unwrap(),
        "--offline",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_schema("explanation", &stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["KB031"], "{stdout}");
    assert_eq!(v["findings"][0]["evidence"]["path"], "/out/app");

    // An --ignore-path mount makes it the mount bug only when a cached layer stood in.
    let (_, stdout, _) = explain(&[
        "--kaniko-log",
        path.to_str().unwrap(),
        "--offline",
        "--ignore-path",
        "/out",
    ]);
    assert!(
        stdout.contains("KB031") && stdout.contains("under /out, a mount point"),
        "{stdout}"
    );
}

#[test]
fn kb032_the_static_check_flags_mount_paths_before_any_build() {
    let reg = CacheRegistry::new();
    let dockerfile = fixtures().join("zego-streaming/Dockerfile");
    let (code, stdout, stderr) = explain(&[
        "--dockerfile",
        dockerfile.to_str().unwrap(),
        "--build-arg",
        "GOPROXY=x",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(
        stdout.contains("copies 3 paths from stage builder under /workspace"),
        "{stdout}"
    );
    assert!(stdout.contains("WORKDIR /workspace"), "{stdout}");
    fixture_settings(&reg).bind(|| insta::assert_snapshot!("explain_dockerfile_static", stdout));
}

#[test]
fn kb032_not_for_a_dockerfile_that_builds_outside_mounts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM golang:1.22 AS builder\nCOPY . /src\nWORKDIR /src\nRUN go build -o /out/app\n\
         FROM debian\nCOPY --from=builder /out/app /app\n",
    )
    .unwrap();
    let (code, stdout, stderr) = explain(&[
        "-c",
        dir.path().to_str().unwrap(),
        "--dockerfile",
        "Dockerfile",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("No findings."), "{stdout}");
}
