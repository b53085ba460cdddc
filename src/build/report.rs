//! The build report (DESIGN.md decision 7): a versioned JSON document written for every build,
//! successful or failed, which `kbuild explain` and `kbuild cache diff` read.
//!
//! This first version records the plan (stages, cross-stage dependencies), per instruction what
//! ran and what it produced (layer digest, diffID, size, files added/changed/deleted, exit code,
//! isolation, duration), and the outcome. Cache keys and hit/miss reasons join it with the layer
//! cache. The shape is documented in `docs/report.md`.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::fs::LayerInfo;
use crate::plan::{CrossStageDep, Plan};

use super::{BuildError, BuildRequest};

/// The report's schema version.
pub const REPORT_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub kbuild_version: String,
    pub dockerfile: String,
    pub platform: String,
    pub target: Option<String>,
    pub destinations: Vec<String>,
    pub stages: Vec<StageReport>,
    pub cross_stage_deps: Vec<CrossStageDep>,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// Time and kbuild's own peak memory per phase (pull, extract, run, snapshot, copy, layer,
    /// push).
    pub phases: Vec<super::phases::PhaseStat>,
}

/// How the build ended.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Outcome {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's kind: `run_failed`, `missing_cross_stage_source`, `registry`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// One stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub index: usize,
    pub name: String,
    pub from: String,
    pub instructions: Vec<InstructionReport>,
    pub duration_ms: u64,
}

/// One instruction.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionReport {
    /// `Dockerfile:12`.
    pub location: String,
    pub original: String,
    /// After argument expansion.
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    pub duration_ms: u64,
}

impl InstructionReport {
    pub fn new(location: &str, original: &str, text: &str) -> InstructionReport {
        InstructionReport {
            location: location.to_string(),
            original: original.to_string(),
            text: text.to_string(),
            layer: None,
            exit_code: None,
            isolation: None,
            duration_ms: 0,
        }
    }
}

impl StageReport {
    pub fn new(index: usize, name: String, from: String) -> StageReport {
        StageReport {
            index,
            name,
            from,
            instructions: Vec::new(),
            duration_ms: 0,
        }
    }
}

impl Report {
    pub fn new(request: &BuildRequest) -> Report {
        Report {
            version: REPORT_VERSION,
            kbuild_version: env!("CARGO_PKG_VERSION").to_string(),
            dockerfile: request.context.dockerfile.display().to_string(),
            platform: request.platform.to_string(),
            target: request.target.clone(),
            destinations: request
                .publish
                .destinations
                .iter()
                .map(|d| d.to_string())
                .collect(),
            stages: Vec::new(),
            cross_stage_deps: Vec::new(),
            outcome: Outcome::default(),
            duration_ms: 0,
            phases: Vec::new(),
        }
    }

    /// Records what the plan says.
    pub fn plan(&mut self, plan: &Plan) {
        self.cross_stage_deps = plan.deps.clone();
    }

    /// Records how the build ended.
    pub fn finish(&mut self, result: &Result<crate::digest::Digest, BuildError>, took: Duration) {
        self.duration_ms = took.as_millis() as u64;
        self.outcome = match result {
            Ok(digest) => Outcome {
                success: true,
                digest: Some(digest.to_string()),
                ..Outcome::default()
            },
            Err(e) => Outcome {
                success: false,
                error: Some(e.to_string()),
                error_kind: Some(error_kind(e).to_string()),
                exit_code: e.run_exit_code(),
                ..Outcome::default()
            },
        };
    }

    /// Writes the report as pretty JSON (atomically: a temp file renamed into place).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

fn error_kind(e: &BuildError) -> &'static str {
    match e {
        BuildError::Context(_) => "context",
        BuildError::Dockerfile(_) => "dockerfile",
        BuildError::Plan(_) => "plan",
        BuildError::Registry(_) => "registry",
        BuildError::Publish(_) => "publish",
        BuildError::Image(_) => "image",
        BuildError::Fs { .. } => "filesystem",
        BuildError::Copy { .. } => "copy",
        BuildError::Exec { .. } => "exec",
        BuildError::User { .. } => "user",
        BuildError::Instruction { .. } => "instruction",
        BuildError::RunFailed { .. } => "run_failed",
        BuildError::MissingCrossStageSource(_) => "missing_cross_stage_source",
        BuildError::NotSupported { .. } => "not_supported",
        BuildError::WorkDir { .. } => "work_dir",
    }
}
