//! `kbuild plan` and the build plan: golden plans of the fixture Dockerfiles, snapshots of the
//! command's output and error messages.
//!
//! Golden files: `tests/fixtures/<case>/Dockerfile` is planned with the options in
//! `tests/fixtures/<case>/options.json` (build args, target, platform; by default linux/amd64,
//! always built on linux/amd64) and compared with `tests/fixtures/<case>/plan.json`. A mismatch prints a diff;
//! `KBUILD_BLESS=1 cargo test --test it plan::` rewrites the files (refused under CI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kbuild::dockerfile;
use kbuild::plan::{Plan, PlanOptions};

use crate::harness::{kbuild, run, text};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Compares `actual` with the golden file, or rewrites it when blessing.
fn check_golden(path: &Path, actual: &str) {
    if std::env::var_os("KBUILD_BLESS").is_some_and(|v| v == "1") {
        assert!(
            std::env::var_os("CI").is_none(),
            "KBUILD_BLESS is refused under CI: golden files are compared there"
        );
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}\nhint: KBUILD_BLESS=1 cargo test --test it plan:: writes it",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .context_radius(3)
            .header("expected", "actual")
            .to_string();
        panic!(
            "{} differs from the plan:\n{diff}\nhint: if the change is intended, run \
             KBUILD_BLESS=1 cargo test --test it plan:: and review the diff",
            path.display()
        );
    }
}

fn options_for(case: &Path) -> PlanOptions {
    let mut options = PlanOptions {
        build_args: BTreeMap::new(),
        target: None,
        platform: "linux/amd64".parse().unwrap(),
        build_platform: "linux/amd64".parse().unwrap(),
    };
    if let Ok(text) = std::fs::read_to_string(case.join("options.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(args) = v["build_args"].as_object() {
            for (k, val) in args {
                options
                    .build_args
                    .insert(k.clone(), val.as_str().unwrap().to_string());
            }
        }
        options.target = v["target"].as_str().map(String::from);
        if let Some(platform) = v["platform"].as_str() {
            options.platform = platform.parse().unwrap();
        }
    }
    options
}

fn golden_case(name: &str) {
    let case = fixtures().join(name);
    let source = std::fs::read(case.join("Dockerfile")).unwrap();
    let df = dockerfile::parse_bytes(&source, "Dockerfile").unwrap_or_else(|e| panic!("{e}"));
    let plan = Plan::new(&df, &options_for(&case)).unwrap_or_else(|e| panic!("{e}"));
    let mut json = serde_json::to_string_pretty(&plan).unwrap();
    json.push('\n');
    check_golden(&case.join("plan.json"), &json);
}

#[test]
fn golden_zego_streaming() {
    golden_case("zego-streaming");
}

#[test]
fn golden_multi_stage_meta_args() {
    golden_case("multi-stage-meta-args");
}

#[test]
fn golden_heredocs() {
    golden_case("heredocs");
}

#[test]
fn golden_onbuild() {
    golden_case("onbuild");
}

#[test]
fn golden_escape_directive() {
    golden_case("escape-directive");
}

#[test]
fn golden_target() {
    golden_case("target");
}

#[test]
fn golden_run_mounts() {
    golden_case("run-mounts");
}

/// The seed bug's shape: the final stage needs the binary the builder compiles, and the plan
/// says so with the path the builder's filesystem must have.
#[test]
fn zego_plan_names_the_binary_the_final_stage_needs() {
    let case = fixtures().join("zego-streaming");
    let df =
        dockerfile::parse_bytes(&std::fs::read(case.join("Dockerfile")).unwrap(), "D").unwrap();
    let plan = Plan::new(&df, &options_for(&case)).unwrap();
    let paths: Vec<&str> = plan
        .deps
        .iter()
        .flat_map(|d| d.paths.iter().map(String::as_str))
        .collect();
    assert_eq!(
        paths,
        [
            "/workspace/services/platform/zego-streaming/zego-streaming",
            "/workspace/third_party/zego/lib/libZegoLiveRoom.so",
            "/workspace/third_party/brpc/lib/libbrpc.a"
        ]
    );
    let go_version = &plan.stages[0].instructions[4];
    assert_eq!(go_version.text, "RUN go version");
    assert_eq!(go_version.args["GOPROXY"], "https://goproxy.example");
}

fn plan_cmd(case: &str) -> std::process::Command {
    let dir = fixtures().join(case);
    let mut cmd = kbuild();
    cmd.current_dir(&dir)
        .arg("plan")
        .arg("-c")
        .arg(&dir)
        .arg("--custom-platform=linux/amd64");
    cmd
}

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        &regex_escape(&fixtures().display().to_string()),
        "[FIXTURES]",
    );
    settings.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    settings
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn plan_table_of_the_zego_dockerfile() {
    let out = run(plan_cmd("zego-streaming").args([
        "-f",
        "Dockerfile",
        "--build-arg",
        "GOPROXY=https://goproxy.example",
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    assert!(
        stdout.lines().all(|l| l.chars().count() <= 100),
        "table wider than 100 columns:\n{stdout}"
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("plan_table_zego", stdout));
}

#[test]
fn plan_table_of_onbuild_and_target() {
    let out = run(plan_cmd("target").args(["--target", "test"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    snapshot_settings().bind(|| insta::assert_snapshot!("plan_table_target", stdout));
    let out = run(&mut plan_cmd("onbuild"));
    let (stdout, _) = text(&out);
    snapshot_settings().bind(|| insta::assert_snapshot!("plan_table_onbuild", stdout));
}

#[test]
fn plan_json_is_data_on_stdout_and_warnings_go_to_stderr() {
    let out = run(plan_cmd("zego-streaming").args([
        "--format",
        "json",
        "--build-arg",
        "GOPROXY=https://goproxy.example",
        "--build-arg",
        "UNUSED=1",
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(plan["version"], 1);
    assert_eq!(plan["target"], 1);
    assert_eq!(plan["stages"][0]["name"], "builder");
    assert_eq!(plan["deps"][0]["producer"]["stage"], 0);
    assert!(
        stderr.contains("build arg UNUSED was not consumed"),
        "{stderr}"
    );
}

#[test]
fn plan_build_arg_without_value_reads_the_environment() {
    let out = run(plan_cmd("zego-streaming")
        .env("GOPROXY", "https://from-env.example")
        .args(["--format", "json", "--build-arg", "GOPROXY"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        plan["stages"][0]["instructions"][0]["text"],
        "ARG GOPROXY=https://from-env.example"
    );
}

#[test]
fn plan_finds_the_dockerfile_relative_to_the_context() {
    let ctx = fixtures();
    let out = run(kbuild().current_dir(std::env::temp_dir()).args([
        "plan",
        "--format=json",
        "--custom-platform=linux/amd64",
        "--dockerfile=zego-streaming/Dockerfile",
        &format!("--context=dir://{}", ctx.display()),
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"dockerfile\": \"zego-streaming/Dockerfile\""));
}

/// Runs `kbuild plan` on `source` and returns the exit code and stderr.
fn plan_error(source: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), source).unwrap();
    let out = run(kbuild()
        .current_dir(dir.path())
        .args(["plan", "-c", ".", "--custom-platform=linux/amd64"])
        .args(extra));
    let (stdout, stderr) = text(&out);
    assert!(stdout.is_empty(), "nothing on stdout on failure: {stdout}");
    (out.status.code(), stderr)
}

#[test]
fn plan_error_messages() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "error_unknown_instruction",
            "FROM alpine\nRUN true\nCOPPY . /app\n",
            &[],
        ),
        (
            "error_unterminated_heredoc",
            "FROM alpine\nRUN <<EOF\necho never closed\n",
            &[],
        ),
        (
            "error_flag_not_valid",
            "FROM alpine\nADD --from=build /a /b\n",
            &[],
        ),
        (
            "error_json_not_strings",
            "FROM alpine\nENTRYPOINT [\"/app\", 8080]\n",
            &[],
        ),
        (
            "error_unknown_target",
            "FROM alpine AS build\nFROM build AS final\n",
            &["--target", "release"],
        ),
        (
            "error_later_stage",
            "FROM alpine AS app\nCOPY --from=build /out /out\nFROM golang AS build\n",
            &["--target", "app"],
        ),
        (
            "error_stage_index",
            "FROM alpine\nCOPY --from=2 /a /b\n",
            &[],
        ),
        (
            "error_required_arg",
            "FROM scratch\nARG VERSION\nLABEL version=${VERSION:?required}\n",
            &[],
        ),
    ];
    for (name, source, extra) in cases {
        let (code, stderr) = plan_error(source, extra);
        assert_eq!(
            code,
            Some(3),
            "{name}: Dockerfile errors exit with 3: {stderr}"
        );
        snapshot_settings().bind(|| insta::assert_snapshot!(*name, stderr));
    }
}

#[test]
fn plan_without_dockerfile_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run(kbuild()
            .current_dir(dir.path())
            .args(["plan", "-c", ".", "-f", "missing/Dockerfile"]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no Dockerfile at missing/Dockerfile"),
        "{stderr}"
    );
}
