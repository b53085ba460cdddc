//! The build report (DESIGN.md decision 7): a versioned JSON document written for every build,
//! successful or failed, which `kbuild explain` and `kbuild cache diff` read.
//!
//! It records the plan (stages, cross-stage dependencies and where each was found), per
//! instruction what ran and what it produced (layer digest, diffID, size, files
//! added/changed/deleted, exit code, isolation, duration) and, with the layer cache on, its key,
//! preimage and whether it hit and why not; the isolation RUNs got, the base layers downloaded
//! or found locally, the outputs, and the outcome. The shape is documented in `docs/report.md`;
//! fields are only ever added within a version.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cache::Preimage;
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
    /// The cache repository (`<repo>` or `oci:<path>`), null with the cache off.
    pub cache_repo: Option<String>,
    /// Counts of the instructions' cache statuses, null with the cache off.
    pub cache_summary: Option<CacheSummary>,
    /// The isolation RUNs got (`namespaces`, `user-namespace`, `chroot`); null when no RUN ran.
    pub isolation: Option<String>,
    /// Where each cross-stage source was found, checked right after its producer finished.
    pub cross_stage_found: Vec<FoundSource>,
    /// Base image layers downloaded, and found in the blob store (`--cache-dir`).
    pub base_layers: BaseLayers,
    /// Where the image went.
    pub outputs: Outputs,
}

/// Instructions by cache status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheSummary {
    pub hits: usize,
    pub misses: usize,
    pub disabled: usize,
    pub pushed: usize,
    pub push_failed: usize,
}

/// Base image layers of the whole build (every FROM image and `COPY --from` image).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BaseLayers {
    pub downloaded: usize,
    pub downloaded_bytes: u64,
    /// Layers already in the blob store, not downloaded again.
    pub reused: usize,
    /// The blob store directory: the `--cache-dir` when it exists, else the build's own.
    pub store: String,
}

/// One cross-stage source path and where it was found.
#[derive(Debug, Clone, Serialize)]
pub struct FoundSource {
    pub consumer: usize,
    /// `stage <name>`. (Paths from images are checked by the COPY itself.)
    pub producer: String,
    pub path: String,
    /// The producer stage's final cache key (with the cache on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_key: Option<String>,
    /// The producer's instruction that last wrote under the path, with its layer, when known
    /// (not when the base image, or a cache hit whose layer is too large to list, may have).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// The image's destinations and local outputs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    pub pushed: Vec<PushedOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tar_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_layout_path: Option<String>,
}

/// One destination that received the image.
#[derive(Debug, Clone, Serialize)]
pub struct PushedOutput {
    pub reference: String,
    pub digest: String,
    pub uploaded: usize,
    pub mounted: usize,
    pub existed: usize,
}

/// A cache status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    Hit,
    Miss,
    Disabled,
}

/// Why an instruction did not hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheReason {
    /// No usable entry under the key (the first miss of its chain).
    NoEntry,
    /// An entry older than `--cache-ttl`.
    Expired,
    /// The kind of instruction is not probed (`--cache-run-layers=false`, COPY without
    /// `--cache-copy-layers`, `--single-snapshot`).
    ProbingDisabled,
    /// No entry, and an earlier probed instruction of the chain missed too.
    ParentMissed,
    /// A metadata instruction: it has a key (the chain goes through it) but no layer to cache.
    NotCacheable,
}

/// An instruction's cache key and what the cache did for it.
#[derive(Debug, Clone, Serialize)]
pub struct CacheReport {
    pub key: String,
    pub preimage: Preimage,
    pub status: CacheStatus,
    pub reason: Option<CacheReason>,
    /// `<repo>:<hex>` of the entry used (hit) or stored (miss).
    pub entry: Option<String>,
    /// When the entry used was made (RFC 3339).
    pub created: Option<String>,
    /// What went wrong looking up or storing the entry, beyond its absence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a miss: `pushed`, `failed` or `skipped` (`--no-push-cache`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<String>,
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
    /// The base image's manifest digest for the platform (FROM an image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
    /// The key of the stage's last instruction (the base digest, or the parent stage's final
    /// key, when it has none); what a stage built FROM this one chains on. Null with the cache
    /// off.
    pub final_key: Option<String>,
    pub instructions: Vec<InstructionReport>,
    pub duration_ms: u64,
    /// When the stage started and ended, in milliseconds since the build started: stages that
    /// overlap built in parallel.
    pub start_ms: u64,
    pub end_ms: u64,
    /// The stage stopped before its next instruction because another stage failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// The stage whose error failed the build.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
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
    /// With the cache on: the key, preimage and status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
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
            cache: None,
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
            base_digest: None,
            final_key: None,
            instructions: Vec::new(),
            duration_ms: 0,
            start_ms: 0,
            end_ms: 0,
            stopped: false,
            failed: false,
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
            cache_repo: None,
            cache_summary: None,
            isolation: None,
            cross_stage_found: Vec::new(),
            base_layers: BaseLayers::default(),
            outputs: Outputs::default(),
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

    /// Counts the instructions' cache statuses (with the cache on).
    pub fn summarise_cache(&mut self) {
        if self.cache_repo.is_none() {
            return;
        }
        let mut summary = CacheSummary::default();
        for cache in self
            .stages
            .iter()
            .flat_map(|s| &s.instructions)
            .filter_map(|i| i.cache.as_ref())
        {
            match cache.status {
                CacheStatus::Hit => summary.hits += 1,
                CacheStatus::Miss => summary.misses += 1,
                CacheStatus::Disabled => summary.disabled += 1,
            }
            match cache.push.as_deref() {
                Some("pushed") => summary.pushed += 1,
                Some("failed") => summary.push_failed += 1,
                _ => {}
            }
        }
        self.cache_summary = Some(summary);
    }

    /// Records how the background cache pushes ended, on the instructions they belong to.
    pub fn record_pushes(&mut self, outcomes: &[crate::cache::PushOutcome]) {
        for outcome in outcomes {
            let key = outcome.key.to_string();
            for cache in self
                .stages
                .iter_mut()
                .flat_map(|s| s.instructions.iter_mut())
                .filter_map(|i| i.cache.as_mut())
                .filter(|c| c.key == key && c.status == CacheStatus::Miss)
            {
                match &outcome.error {
                    None => cache.push = Some("pushed".into()),
                    Some(error) => {
                        // `reason` keeps why it missed (what `kbuild explain` follows); the
                        // failed push is `push` and `detail`.
                        cache.push = Some("failed".into());
                        cache.detail = Some(match &cache.detail {
                            Some(d) => format!("{d}; storing the new entry failed: {error}"),
                            None => format!("storing the new entry failed: {error}"),
                        });
                    }
                }
            }
        }
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
