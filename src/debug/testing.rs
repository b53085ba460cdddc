//! Builders for unit tests: reports with chained cache keys, and entries, in the contract's shapes.

use serde_json::{Value, json};

use super::entry::{CacheEntry, EntryKind, LayerRef};
use super::preimage::read_preimage;
use super::report::BuildReport;
use crate::cache::key::{ParentKind, Part, Preimage};

/// One instruction of a test report.
#[derive(Clone)]
pub struct I {
    pub text: String,
    pub extra: Vec<Part>,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub exit_code: Option<i32>,
}

/// A RUN instruction that missed with `no_entry`.
pub fn i(text: &str) -> I {
    I {
        text: text.into(),
        extra: Vec::new(),
        status: "miss",
        reason: Some("no_entry"),
        exit_code: None,
    }
}

impl I {
    pub fn with(mut self, part: Part) -> I {
        self.extra.push(part);
        self
    }
    pub fn hit(mut self) -> I {
        self.status = "hit";
        self.reason = None;
        self
    }
    pub fn reason(mut self, reason: Option<&'static str>) -> I {
        self.reason = reason;
        self
    }
}

pub fn arg(name: &str, value: &str) -> Part {
    Part::Arg {
        name: name.into(),
        value: value.into(),
    }
}

pub fn file(path: &str, content: &str) -> Part {
    Part::File {
        path: path.into(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        content: content.into(),
    }
}

/// The preimage of an instruction.
pub fn preimage(from: ParentKind, parent: &str, text: &str, extra: &[Part]) -> Preimage {
    let mut p = Preimage::new(from, parent);
    p.push(Part::Platform {
        platform: "linux/amd64".into(),
    });
    p.push(Part::Instruction {
        name: text.split_whitespace().next().unwrap_or("RUN").into(),
        text: text.into(),
    });
    for part in extra {
        p.push(part.clone());
    }
    p
}

/// A stage: instructions chained from `base` (a base image digest), with their preimages.
/// Returns the stage JSON and the preimages.
pub fn stage(
    index: usize,
    name: &str,
    base: &str,
    repo: &str,
    instrs: &[I],
) -> (Value, Vec<Preimage>) {
    let mut parent = (ParentKind::BaseImage, base.to_string());
    let mut out = Vec::new();
    let mut preimages = Vec::new();
    for (n, ins) in instrs.iter().enumerate() {
        let p = preimage(parent.0, &parent.1, &ins.text, &ins.extra);
        let key = p.key().to_string();
        out.push(json!({
            "location": format!("Dockerfile:{}", index * 10 + n + 2),
            "original": ins.text, "text": ins.text,
            "exit_code": ins.exit_code,
            "duration_ms": 1,
            "cache": {
                "key": key, "preimage": p, "status": ins.status, "reason": ins.reason,
                "entry": (ins.status == "hit").then(|| format!("{repo}:{}", &key[7..])),
                "created": null,
            }
        }));
        parent = (ParentKind::Instruction, key);
        preimages.push(p);
    }
    let final_key = parent.1.clone();
    (
        json!({"index": index, "name": name, "from": "FROM base", "instructions": out,
               "final_key": final_key, "duration_ms": 1}),
        preimages,
    )
}

/// A report from stages and an outcome.
pub fn report(stages: Vec<Value>, outcome: Value, repo: &str) -> BuildReport {
    let value = json!({"version": 1, "dockerfile": "Dockerfile", "platform": "linux/amd64",
        "stages": stages, "cross_stage_deps": [], "outcome": outcome, "cache_repo": repo});
    BuildReport::parse(value.to_string().as_bytes()).expect("test report parses")
}

/// A kbuild entry for a preimage.
pub fn entry(
    repo: &str,
    p: &Preimage,
    instruction: &str,
    created: &str,
    layer_size: u64,
) -> CacheEntry {
    let key = p.key();
    let preimage = serde_json::to_value(p).expect("preimage serialises");
    CacheEntry {
        tag: key.hex(),
        reference: format!("{repo}:{}", key.hex()),
        kind: EntryKind::Kbuild,
        schema: Some(1),
        instruction: Some(instruction.into()),
        created: Some(created.into()),
        manifest_digest: "sha256:m".into(),
        manifest_media_type: crate::registry::manifest::OCI_MANIFEST.into(),
        config_digest: "sha256:c".into(),
        layers: vec![LayerRef {
            digest: format!("sha256:{}", "0".repeat(64)),
            media_type: crate::registry::manifest::OCI_LAYER_GZIP.into(),
            size: layer_size,
            diff_id: None,
        }],
        key: Some(key.to_string()),
        parts: read_preimage(&preimage),
        preimage: Some(preimage),
        problems: Vec::new(),
    }
}
