//! The build report as the debugger reads it: every field optional, unknown fields ignored.
//!
//! `kbuild::build::report` writes the report; this is a separate, tolerant reader on purpose.
//! Reports from before the cache fields (no `cache`, `final_key`, `cache_repo`) and after them
//! both parse, and so does a report from a newer kbuild with fields this one does not know.

use std::path::Path;

use serde::Deserialize;

use super::DebugError;
use super::preimage::{ReadPart, read_preimage};

/// A build report.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BuildReport {
    pub version: u32,
    pub kbuild_version: String,
    pub dockerfile: String,
    pub platform: String,
    pub target: Option<String>,
    pub destinations: Vec<String>,
    pub stages: Vec<StageRecord>,
    pub cross_stage_deps: Vec<DepRecord>,
    pub outcome: OutcomeRecord,
    pub cache_repo: Option<String>,
    pub isolation: Option<String>,
    pub duration_ms: u64,
}

/// One stage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StageRecord {
    pub index: usize,
    pub name: String,
    pub from: String,
    pub instructions: Vec<InstructionRecord>,
    pub final_key: Option<String>,
    /// Stopped because another stage failed (stages build in parallel).
    pub stopped: bool,
    /// The stage whose error failed the build.
    pub failed: bool,
}

/// One instruction.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstructionRecord {
    /// `Dockerfile:12`.
    pub location: String,
    pub original: String,
    pub text: String,
    pub layer: Option<LayerRecord>,
    pub exit_code: Option<i32>,
    pub cache: Option<CacheRecord>,
}

/// The layer an instruction made.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LayerRecord {
    pub digest: Option<String>,
    pub diff_id: Option<String>,
    pub compressed_size: u64,
    pub entries: u64,
}

/// What the cache did for an instruction (the contract's `cache` object).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CacheRecord {
    pub key: Option<String>,
    pub preimage: Option<serde_json::Value>,
    /// `hit`, `miss` or `disabled`.
    pub status: String,
    /// `no_entry`, `expired`, `probing_disabled`, `parent_missed`, `not_cacheable`,
    /// `push_failed`.
    pub reason: Option<String>,
    /// `<repo>:<tag>` of the entry used.
    pub entry: Option<String>,
    pub created: Option<String>,
}

impl CacheRecord {
    /// The preimage's parts, when there is a readable preimage.
    pub fn parts(&self) -> Option<Vec<ReadPart>> {
        self.preimage.as_ref().and_then(read_preimage)
    }

    /// The key's 64 hex characters (the entry's tag).
    pub fn tag(&self) -> Option<&str> {
        self.key
            .as_deref()
            .map(|k| k.strip_prefix("sha256:").unwrap_or(k))
    }
}

/// A cross-stage dependency, as the plan records it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DepRecord {
    pub consumer: usize,
    /// `{"stage": 0}` or `{"image": "ref"}`.
    pub producer: serde_json::Value,
    pub paths: Vec<String>,
    pub line: usize,
    pub instruction: String,
    pub reachable: bool,
}

impl DepRecord {
    /// The producer stage's index, when the producer is a stage.
    pub fn producer_stage(&self) -> Option<usize> {
        self.producer
            .get("stage")
            .and_then(|s| s.as_u64())
            .map(|s| s as usize)
    }
}

/// How the build ended.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OutcomeRecord {
    pub success: bool,
    pub digest: Option<String>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub exit_code: Option<i32>,
}

impl BuildReport {
    /// Reads a report file (or `report.json` in a directory).
    pub fn read(path: &Path) -> Result<BuildReport, DebugError> {
        let file = if path.is_dir() {
            path.join("report.json")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|e| DebugError::Report {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&bytes).map_err(|reason| DebugError::Report { path: file, reason })
    }

    /// Parses report JSON.
    pub fn parse(bytes: &[u8]) -> Result<BuildReport, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("stages").is_none() && value.get("outcome").is_none() {
            return Err("not a kbuild build report (no stages, no outcome)".into());
        }
        serde_json::from_value(value).map_err(|e| format!("unexpected shape: {e}"))
    }

    /// The stage's name, or `stage-N`.
    pub fn stage_name(&self, index: usize) -> String {
        self.stages
            .iter()
            .find(|s| s.index == index)
            .map(|s| s.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("stage-{index}"))
    }

    /// True when any instruction has a cache record.
    pub fn has_cache(&self) -> bool {
        self.stages
            .iter()
            .flat_map(|s| &s.instructions)
            .any(|i| i.cache.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_without_cache_fields_and_with_unknown_ones_parse() {
        let old = br#"{"version":1,"stages":[{"index":0,"name":"builder","from":"FROM a",
            "instructions":[{"location":"Dockerfile:3","original":"RUN x","text":"RUN x",
            "exit_code":2,"duration_ms":5,"isolation":"chroot"}],"duration_ms":9}],
            "cross_stage_deps":[{"consumer":1,"producer":{"stage":0},"paths":["/out"],"line":7,
            "instruction":"COPY --from=builder /out /","reachable":true}],
            "outcome":{"success":false,"error_kind":"run_failed","exit_code":2},
            "phases":[{"name":"run","ms":3}]}"#;
        let r = BuildReport::parse(old).unwrap();
        assert_eq!(r.stages[0].instructions[0].exit_code, Some(2));
        assert!(!r.has_cache());
        assert_eq!(r.cross_stage_deps[0].producer_stage(), Some(0));
        assert_eq!(r.stage_name(0), "builder");
        assert_eq!(r.stage_name(4), "stage-4");

        let new = br#"{"version":1,"cache_repo":"reg/cache","future_field":{"x":1},
            "stages":[{"index":0,"name":"","final_key":"sha256:aa","instructions":[
            {"location":"Dockerfile:2","text":"RUN y","cache":{"key":"sha256:bb",
            "preimage":{"parts":[{"part":"schema","version":1}]},"status":"miss",
            "reason":"no_entry","entry":null,"created":null,"new":true}}]}],"outcome":{}}"#;
        let r = BuildReport::parse(new).unwrap();
        let cache = r.stages[0].instructions[0].cache.as_ref().unwrap();
        assert_eq!(cache.tag(), Some("bb"));
        assert_eq!(cache.parts().unwrap().len(), 1);
        assert!(r.has_cache());
        assert_eq!(r.stage_name(0), "stage-0");
    }

    #[test]
    fn other_json_is_not_a_report() {
        assert!(
            BuildReport::parse(b"{\"a\":1}")
                .unwrap_err()
                .contains("not a kbuild")
        );
        assert!(
            BuildReport::parse(b"nope")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
