//! Independent stages build at the same time; the report's stage times show it (the tests
//! assert overlap, never durations), and the image is the one a one-at-a-time build makes.

use std::path::Path;

use super::{World, assert_success, write};
use crate::harness::text;

/// Two stages that need nothing from each other, each sleeping in a RUN, and a final stage that
/// copies from both.
fn two_branches(world: &World) -> std::path::PathBuf {
    let ctx = world.context("branches");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\n\
         FROM $BASE AS left\nRUN echo left working && sleep 1 && echo left > /left\n\
         FROM $BASE AS right\nRUN sleep 1 && echo right > /right\n\
         FROM $BASE\nCOPY --from=left /left /out/left\nCOPY --from=right /right /out/right\n",
    );
    ctx
}

/// (start_ms, end_ms) of each stage in the report, by stage index.
fn stage_times(report: &Path) -> Vec<(u64, u64)> {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["start_ms"].as_u64().unwrap(),
                s["end_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn build_independent_stages_overlap_and_give_the_one_at_a_time_image() {
    let world = World::new();
    let ctx = two_branches(&world);
    let parallel_report = world.dir.path().join("parallel.json");
    let out = world.build(
        &ctx,
        "branches:parallel",
        &[
            "--max-parallel-stages=2",
            "--reproducible",
            &format!("--report={}", parallel_report.display()),
        ],
    );
    assert_success(&out);
    // RUN output says which stage it comes from while stages build at once.
    let (_, stderr) = text(&out);
    assert!(stderr.contains("[left] left working"), "{stderr}");
    let times = stage_times(&parallel_report);
    let (left, right, last) = (times[0], times[1], times[2]);
    assert!(
        left.0 < right.1 && right.0 < left.1,
        "left {left:?} and right {right:?} did not overlap"
    );
    assert!(
        last.0 >= left.1.max(right.1),
        "the final stage {last:?} started before its producers ended"
    );
    // Both branches start from the base at once; its one layer is still downloaded once.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&parallel_report).unwrap()).unwrap();
    assert_eq!(
        report["base_layers"]["downloaded"], 1,
        "{}",
        report["base_layers"]
    );

    let sequential_report = world.dir.path().join("sequential.json");
    let out = world.build(
        &ctx,
        "branches:sequential",
        &[
            "--max-parallel-stages=1",
            "--reproducible",
            &format!("--report={}", sequential_report.display()),
        ],
    );
    assert_success(&out);
    let (_, stderr) = text(&out);
    assert!(
        stderr.lines().any(|l| l == "left working"),
        "one at a time, RUN output is as the RUN wrote it: {stderr}"
    );
    let times = stage_times(&sequential_report);
    assert!(
        times[0].1 <= times[1].0,
        "one at a time, yet stages overlapped: {times:?}"
    );

    let (parallel, sequential) = (
        world.pull("branches:parallel"),
        world.pull("branches:sequential"),
    );
    assert_eq!(parallel.read("/out/left"), "left\n");
    assert_eq!(parallel.read("/out/right"), "right\n");
    assert_eq!(parallel.digest, sequential.digest);
}

#[test]
fn build_failing_stage_stops_its_parallel_sibling_before_the_next_instruction() {
    let world = World::new();
    let ctx = world.context("sibling-fails");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\n\
         FROM $BASE AS slow\nRUN sleep 3\nRUN echo never > /never\n\
         FROM $BASE AS broken\nRUN sleep 1 && exit 7\n\
         FROM $BASE\nCOPY --from=slow /never /never\nCOPY --from=broken /etc/passwd /p\n",
    );
    let report_path = world.dir.path().join("report.json");
    let report = &report_path;
    let out = world.build(
        &ctx,
        "sibling-fails:1",
        &[
            "--max-parallel-stages=2",
            &format!("--report={}", report.display()),
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("Dockerfile:6"), "{stderr}");
    assert!(stderr.contains("returned a non-zero code: 7"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2, "the final stage never started: {stages:?}");
    let slow = &stages[0];
    assert_eq!(slow["stopped"], true, "{slow}");
    let ran: Vec<&str> = slow["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["original"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["RUN sleep 3"]);
    assert_eq!(stages[1]["failed"], true, "{}", stages[1]);
    assert_eq!(report["outcome"]["exit_code"], 7);

    // `kbuild explain` names the stage that failed, not the last one in the report.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("explain")
        .arg(format!("--report={}", report_path.display()))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(stdout.contains("KB001"), "{stdout}");
    let stage_line = stdout
        .lines()
        .find(|l| l.contains("stage"))
        .unwrap_or_default();
    assert!(stage_line.contains("broken"), "{stdout}");
}
