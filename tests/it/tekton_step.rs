//! kbuild as a Tekton step, simulated (`harness::tekton`): the Task's step (and the StepAction)
//! read from `tekton/`, params substituted as Tekton would, run with the step's exact command,
//! args and env against a real registry that wants the credentials Tekton puts in
//! `/tekton/creds`. Checks what Tekton and a user see: result files byte for byte, where the
//! report is, the commands printed when a build fails at a debug breakpoint, and the files that
//! release the breakpoint.
//!
//! The builds RUN in namespaces, so these tests need root (CI runs as root).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::build::{World, assert_success, write};
use crate::harness::tekton::{Param, Step, load_yaml};
use crate::harness::text;

const TASK: &str = "tekton/task/kbuild/0.1/kbuild.yaml";
const STEP_ACTION: &str = "tekton/stepaction/kbuild/0.1/kbuild.yaml";
/// The Task's one step.
const TASK_STEP: &str = "build-and-push";

/// A registry with a password, and the base image in it.
fn world() -> World {
    World::with_auth("tekton-bot", "s3cret")
}

/// Lays out the step's credentials as Tekton does with a ServiceAccount's docker secret.
fn give_credentials(step: &Step, world: &World) {
    let config = world.docker_config.as_ref().unwrap().join("config.json");
    step.creds(&std::fs::read_to_string(config).unwrap());
}

/// Binds the `source` workspace with a context whose Dockerfile ends with `last`.
fn source(step: &mut Step, last: &str) {
    let dir = step.bind("source", None);
    write(&dir, "app/hello.txt", "hello from the workspace\n");
    write(
        &dir,
        "Dockerfile",
        &format!("ARG BASE\nFROM $BASE\nCOPY app/ /app/\n{last}\n"),
    );
}

/// The params a TaskRun gives: the image, the builder image, and the registry flags this test
/// registry needs (plain HTTP) as EXTRA_ARGS.
fn params(world: &World, image: &str) -> Vec<(&'static str, Param)> {
    vec![
        ("IMAGE", world.image(image).into()),
        ("BUILDER_IMAGE", "registry.example.com/kbuild:0.1.0".into()),
        (
            "EXTRA_ARGS",
            vec![
                format!("--build-arg=BASE={}", world.base()),
                "--insecure".to_string(),
                "--insecure-pull".to_string(),
            ]
            .into(),
        ),
    ]
}

fn read_report(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the build report {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn bytes(map: &[(&str, String)]) -> BTreeMap<String, Vec<u8>> {
    map.iter()
        .map(|(k, v)| (k.to_string(), v.clone().into_bytes()))
        .collect()
}

#[test]
fn a_successful_task_step_writes_exact_results_and_the_report_to_the_cache_workspace() {
    let world = world();
    let mut step = Step::new(0, TASK_STEP, false);
    give_credentials(&step, &world);
    source(&mut step, "RUN cat /app/hello.txt > /app/copy.txt");
    let cache = step.bind("cache", None);
    let resolved = step.resolve(&load_yaml(TASK), &params(&world, "app:v1"));
    let out = step.run(&resolved);
    assert_success(&out);

    let image = world.pull("app:v1");
    assert_eq!(image.read("/app/copy.txt"), "hello from the workspace\n");
    let digest = image.digest.clone();
    assert_eq!(
        step.task_results(),
        bytes(&[
            ("IMAGE_DIGEST", digest.clone()),
            ("IMAGE_REF", format!("{}@{digest}", world.image("app"))),
            ("IMAGE_URL", world.image("app:v1")),
        ])
    );

    // --report=$(workspaces.cache.path): a directory, so <dir>/report.json; nothing at the
    // default location.
    let report = read_report(&cache.join("report.json"));
    assert_eq!(report["outcome"]["success"], true);
    assert_eq!(report["outcome"]["digest"], digest.as_str());
    assert!(!step.host("/kaniko/report.json").exists());
    // --cache-dir=$(workspaces.cache.path): base image blobs outlive the pod there.
    let blobs = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .count();
    assert!(blobs > 0, "no base image blobs in the cache workspace");
}

#[test]
fn a_failed_task_step_at_a_breakpoint_writes_no_results_and_prints_the_commands_to_run() {
    let world = world();
    let mut step = Step::new(0, TASK_STEP, true);
    give_credentials(&step, &world);
    source(&mut step, "RUN echo compiling; exit 3");
    // No cache workspace: $(workspaces.cache.path) is empty, so --report= and the report goes to
    // the default location, /kaniko/report.json in a pod.
    let resolved = step.resolve(&load_yaml(TASK), &params(&world, "app:v1"));
    assert!(
        resolved.args.iter().any(|a| a == "--report="),
        "{resolved:?}"
    );
    let out = step.run(&resolved);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");

    assert_eq!(
        step.task_results(),
        BTreeMap::new(),
        "no results after a failure"
    );
    let report_path = step.host("/kaniko/report.json");
    let report = read_report(&report_path);
    assert_eq!(report["outcome"]["success"], false);
    assert_eq!(report["outcome"]["exit_code"], 3);

    // The error ends with the commands to run next, naming this pod and this step's container.
    let exec = format!("kubectl exec {} -c step-{TASK_STEP} --", step.pod);
    let expected = format!(
        "the build report is at {report}\n\
         this step (number 0) now pauses at its Tekton debug breakpoint; from a machine with kubectl, \
         run:\n  # why the build failed\n  {exec} /kbuild explain --report={report}\n  \
         # then end the step as failed, or mark it successful\n  \
         {exec} /kbuild debug fail-continue\n  {exec} /kbuild debug continue\n",
        report = report_path.display()
    );
    assert!(stderr.ends_with(&expected), "{stderr}");

    // Run the fail-continue command as kubectl exec would: in the step's container.
    let line = stderr
        .lines()
        .find(|l| l.ends_with("debug fail-continue"))
        .unwrap();
    let command: Vec<&str> = line
        .trim()
        .strip_prefix(&exec)
        .unwrap()
        .split_whitespace()
        .collect();
    let released = step.exec(&command);
    assert!(released.status.success(), "{:?}", text(&released));
    let run = step.host("/tekton/run/0");
    assert!(run.join("out.err").is_file());
    assert!(!run.join("out").exists());
    assert_eq!(
        std::fs::read_to_string(run.join("out.breakpointexit")).unwrap(),
        "1\n"
    );
    // Released once: a second release is refused.
    let again = step.exec(&["/kbuild", "debug", "continue"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).1.contains("not paused"), "{:?}", text(&again));
}

#[test]
fn debug_continue_in_a_paused_task_step_marks_it_successful() {
    let step = Step::new(2, "push", true);
    let out = step.exec(&["/kbuild", "debug", "continue"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("step 2"), "{stdout}");
    let run = step.host("/tekton/run/2");
    assert_eq!(std::fs::read(run.join("out")).unwrap(), b"");
    assert!(!run.join("out.err").exists());
    assert_eq!(
        std::fs::read_to_string(run.join("out.breakpointexit")).unwrap(),
        "0\n"
    );
}

#[test]
fn the_step_action_writes_step_results_and_the_report_to_the_default_location() {
    let world = world();
    let mut step = Step::new(0, "build", false);
    give_credentials(&step, &world);
    source(&mut step, "RUN cat /app/hello.txt > /app/copy.txt");
    let mut params = params(&world, "tool:1.2");
    // What the Task using the StepAction passes (tekton/examples/task-with-stepaction.yaml).
    params.push(("SOURCE", "/workspace/source".into()));
    let resolved = step.resolve(&load_yaml(STEP_ACTION), &params);
    let out = step.run(&resolved);
    assert_success(&out);

    let digest = world.pull("tool:1.2").digest;
    let results = step.host("/tekton/steps/step-build/results");
    let read = |name: &str| std::fs::read(results.join(name)).unwrap();
    assert_eq!(read("IMAGE_DIGEST"), digest.as_bytes());
    assert_eq!(read("IMAGE_URL"), world.image("tool:1.2").as_bytes());
    assert_eq!(
        read("IMAGE_REF"),
        format!("{}@{digest}", world.image("tool")).as_bytes()
    );
    // CACHE_DIR defaults to "", so --report= and the default location.
    let report = read_report(&step.host("/kaniko/report.json"));
    assert_eq!(report["outcome"]["digest"], digest.as_str());
}

/// `--report` as the Task passes it: `$(workspaces.cache.path)` is a directory (report.json in
/// it) or empty (the default location); a path ending in `/` is a directory even before it
/// exists, anything else is the file itself.
#[test]
fn the_report_location_follows_what_the_task_passes() {
    use kbuild::build::report_location;
    use std::path::Path;
    let dir = tempfile::tempdir().unwrap();
    let work = Path::new("/kaniko");
    let at = |given: Option<&Path>| report_location(given, work);
    assert_eq!(at(None), work.join("report.json"));
    assert_eq!(at(Some(Path::new(""))), work.join("report.json"));
    assert_eq!(at(Some(dir.path())), dir.path().join("report.json"));
    let later = dir.path().join("not-yet/");
    assert_eq!(at(Some(&later)), later.join("report.json"));
    let file = dir.path().join("build.json");
    assert_eq!(at(Some(&file)), file);
}
