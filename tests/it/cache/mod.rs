//! The layer cache end to end: keys checked against the build report, warm builds equal to cold
//! ones, concurrent builds, and the OCI layout store.

mod equivalence;
mod keys;
mod stores;

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::build::{World, assert_success};

/// A build with the cache on, its report written to `<world>/reports/<name>.json`.
pub(crate) fn cached_build(
    world: &World,
    context: &Path,
    name: &str,
    extra: &[&str],
) -> (Output, Report) {
    let report = world
        .dir
        .path()
        .join("reports")
        .join(format!("{name}.json"));
    let mut args = vec![
        "--cache=true".to_string(),
        "--reproducible".to_string(),
        format!("--report={}", report.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = world.build(context, name, &args);
    let json = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", report.display()));
    (out, Report(serde_json::from_str(&json).unwrap()))
}

/// A build report, with accessors for what tests look at.
pub(crate) struct Report(pub serde_json::Value);

/// One instruction's cache status: (stage name, instruction text, status, reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub stage: String,
    pub text: String,
    pub status: String,
    pub reason: String,
    pub key: String,
}

impl Report {
    pub fn statuses(&self) -> Vec<Status> {
        let mut out = Vec::new();
        for stage in self.0["stages"].as_array().unwrap() {
            for i in stage["instructions"].as_array().unwrap() {
                let cache = &i["cache"];
                out.push(Status {
                    stage: stage["name"].as_str().unwrap().to_string(),
                    text: i["text"].as_str().unwrap().to_string(),
                    status: cache["status"].as_str().unwrap_or("none").to_string(),
                    reason: cache["reason"].as_str().unwrap_or("").to_string(),
                    key: cache["key"].as_str().unwrap_or("").to_string(),
                });
            }
        }
        out
    }

    /// The status of the instruction whose text starts with `prefix`.
    pub fn status_of(&self, prefix: &str) -> Status {
        self.statuses()
            .into_iter()
            .find(|s| s.text.starts_with(prefix))
            .unwrap_or_else(|| panic!("no instruction {prefix:?} in {:#?}", self.statuses()))
    }

    pub fn digest(&self) -> String {
        self.0["outcome"]["digest"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Writes several files into a context.
pub(crate) fn files(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    for (path, content) in files {
        crate::build::write(dir, path, content);
    }
    dir.to_path_buf()
}

#[test]
fn cache_warm_build_hits_every_run_and_gives_the_cold_image() {
    let world = World::new();
    let ctx = files(
        &world.context("warm"),
        &[
            (
                "Dockerfile",
                "ARG BASE\nFROM $BASE\nCOPY app.txt /app/\nRUN cat /app/app.txt > /app/copy && echo built >> /app/copy\nRUN true\nWORKDIR /srv\nENV A=1\n",
            ),
            ("app.txt", "hello\n"),
        ],
    );
    let (cold_out, cold) = cached_build(&world, &ctx, "warm:1", &[]);
    assert_success(&cold_out);
    let (warm_out, warm) = cached_build(&world, &ctx, "warm:2", &[]);
    assert_success(&warm_out);
    assert_eq!(
        cold.digest(),
        warm.digest(),
        "a warm build gives the cold build's image"
    );
    let run = warm.status_of("RUN cat");
    assert_eq!(run.status, "hit", "{:#?}", warm.statuses());
    assert_eq!(warm.status_of("RUN true").status, "hit");
    assert_eq!(warm.status_of("WORKDIR").status, "hit");
    assert_eq!(warm.status_of("COPY").status, "disabled");
    assert_eq!(cold.status_of("RUN cat").reason, "no_entry");
    let image = world.pull("warm:2");
    assert_eq!(image.read("/app/copy"), "hello\nbuilt\n");
}
