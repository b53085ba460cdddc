//! `kbuild explain`: findings about a build, each a typed [`Rule`] with a stable ID, a one-line
//! summary, evidence and a fix, and a page `docs/explain/<ID>.md`.
//!
//! The rules themselves ([`rules`] for kbuild reports, [`super::kaniko`] for Kaniko logs and
//! Dockerfiles) are pure functions of what was read; this module gathers the input. For a
//! report that means, where useful, the cache repository: its entries (to name why a key
//! missed, and which entries expired) and the layers of cache hits in a stage whose output
//! lacked a file a later stage needed. A registry that cannot be reached is a note in the
//! output, never a failure of `explain` itself: the report alone still explains a lot.

pub mod rules;

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::diff::PartChange;
use super::entry::CacheEntry;
use super::layer::{PathMatcher, walk_layer};
use super::repo::{CacheRepo, parse_target};
use super::report::BuildReport;

/// Every rule `kbuild explain` knows. The IDs are stable: a rule may be retired, never renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    RunFailed,
    CrossStageSourceMissing,
    RegistryAuth,
    RegistryTls,
    MissBaseImage,
    MissInstruction,
    MissEnv,
    MissArg,
    MissFiles,
    MissProducerStage,
    MissOther,
    MissNoEntry,
    EntryExpired,
    LayerLacksPath,
    KanikoPoisonedCache,
    KanikoDepNotSaved,
    MountPointPath,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Rule {
    pub const ALL: [Rule; 17] = [
        Rule::RunFailed,
        Rule::CrossStageSourceMissing,
        Rule::RegistryAuth,
        Rule::RegistryTls,
        Rule::MissBaseImage,
        Rule::MissInstruction,
        Rule::MissEnv,
        Rule::MissArg,
        Rule::MissFiles,
        Rule::MissProducerStage,
        Rule::MissOther,
        Rule::MissNoEntry,
        Rule::EntryExpired,
        Rule::LayerLacksPath,
        Rule::KanikoPoisonedCache,
        Rule::KanikoDepNotSaved,
        Rule::MountPointPath,
    ];

    /// The stable ID (`KB001`).
    pub fn id(self) -> &'static str {
        match self {
            Rule::RunFailed => "KB001",
            Rule::CrossStageSourceMissing => "KB002",
            Rule::RegistryAuth => "KB003",
            Rule::RegistryTls => "KB004",
            Rule::MissBaseImage => "KB010",
            Rule::MissInstruction => "KB011",
            Rule::MissEnv => "KB012",
            Rule::MissArg => "KB013",
            Rule::MissFiles => "KB014",
            Rule::MissProducerStage => "KB015",
            Rule::MissOther => "KB016",
            Rule::MissNoEntry => "KB017",
            Rule::EntryExpired => "KB020",
            Rule::LayerLacksPath => "KB021",
            Rule::KanikoPoisonedCache => "KB030",
            Rule::KanikoDepNotSaved => "KB031",
            Rule::MountPointPath => "KB032",
        }
    }

    /// A short kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::RunFailed => "run-failed",
            Rule::CrossStageSourceMissing => "cross-stage-source-missing",
            Rule::RegistryAuth => "registry-auth",
            Rule::RegistryTls => "registry-tls",
            Rule::MissBaseImage => "cache-miss-base-image",
            Rule::MissInstruction => "cache-miss-instruction",
            Rule::MissEnv => "cache-miss-env",
            Rule::MissArg => "cache-miss-arg",
            Rule::MissFiles => "cache-miss-files",
            Rule::MissProducerStage => "cache-miss-producer-stage",
            Rule::MissOther => "cache-miss-other",
            Rule::MissNoEntry => "cache-miss-no-entry",
            Rule::EntryExpired => "cache-entry-expired",
            Rule::LayerLacksPath => "cache-layer-lacks-path",
            Rule::KanikoPoisonedCache => "kaniko-poisoned-cache",
            Rule::KanikoDepNotSaved => "kaniko-dependency-not-saved",
            Rule::MountPointPath => "path-under-mount-point",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::RunFailed
            | Rule::CrossStageSourceMissing
            | Rule::RegistryAuth
            | Rule::RegistryTls
            | Rule::LayerLacksPath
            | Rule::KanikoPoisonedCache
            | Rule::KanikoDepNotSaved => Severity::Error,
            Rule::MountPointPath => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// The rule's documentation page, relative to the repository root.
    pub fn doc(self) -> String {
        format!("docs/explain/{}.md", self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// A cache entry looked at for a finding, and what its layer holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EntryEvidence {
    /// `<repo>:<key>`.
    pub entry: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Entries in the layer, when it was read (0: an empty layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_entries: Option<u64>,
    /// Whether the layer holds the path in question, when it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_path: Option<bool>,
    /// Why the layer could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a finding rests on. Only the fields that apply are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// `Dockerfile:12`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last output lines of a failed command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// Preimage parts that differ from the closest entry or earlier build.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PartChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<EntryEvidence>,
    /// Anything else, one fact per line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: Rule,
    pub rule: &'static str,
    pub severity: Severity,
    pub summary: String,
    pub evidence: Evidence,
    pub fix: String,
    /// Exact commands that carry out the fix (deleting poisoned entries), if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    pub doc: String,
}

impl Finding {
    pub fn new(
        rule: Rule,
        summary: impl Into<String>,
        evidence: Evidence,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            id: rule,
            rule: rule.name(),
            severity: rule.severity(),
            summary: summary.into(),
            evidence,
            fix: fix.into(),
            commands: Vec::new(),
            doc: rule.doc(),
        }
    }
}

impl Finding {
    /// Adds the commands that carry out the fix.
    pub fn with_commands(mut self, commands: Vec<String>) -> Finding {
        self.commands = commands;
        self
    }
}

/// The command that deletes a cache entry (`<repo>:<tag>`) from its registry.
pub fn delete_command(entry: &str) -> String {
    format!("skopeo delete docker://{entry}")
}

/// How the explained build ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildSummary {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `kbuild explain` prints (`--format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub version: u32,
    /// What was explained: `report`, `kaniko-log` or `dockerfile`.
    pub subject: String,
    /// The file read.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSummary>,
    pub findings: Vec<Finding>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

impl Explanation {
    pub fn new(subject: &str, source: &str) -> Explanation {
        Explanation {
            version: super::JSON_VERSION,
            subject: subject.to_string(),
            source: source.to_string(),
            build: None,
            findings: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Orders findings: errors first, then by rule ID, keeping each rule's own order.
    pub fn sort(&mut self) {
        self.findings.sort_by_key(|f| (f.severity, f.id));
    }
}

/// How to explain a report.
pub struct ReportOptions {
    /// The cache repository to consult; None uses the report's `cache_repo`.
    pub cache_repo: Option<String>,
    /// False skips every registry access.
    pub use_registry: bool,
    pub ttl: Duration,
    pub now: SystemTime,
    /// An earlier report to compare cache keys with.
    pub baseline: Option<BuildReport>,
}

/// Explains a report, consulting the cache repository where a rule needs it. Layers are read
/// through `handle` from the calling (non-async) thread.
pub fn explain_report(
    report: &BuildReport,
    source: &str,
    client: &crate::registry::RegistryClient,
    handle: &tokio::runtime::Handle,
    options: &ReportOptions,
) -> Explanation {
    let mut out = Explanation::new("report", source);
    out.build = Some(BuildSummary {
        success: report.outcome.success,
        error_kind: report.outcome.error_kind.clone(),
        exit_code: report.outcome.exit_code,
        error: report
            .outcome
            .error
            .as_deref()
            .and_then(|e| e.lines().next())
            .map(str::to_string),
    });
    let repo_name = options
        .cache_repo
        .clone()
        .or_else(|| report.cache_repo.clone())
        .filter(|r| !r.is_empty());
    let questions = rules::layer_questions(report);
    // The listing is only worth its cost when a miss needs explaining.
    let wants_registry = rules::misses_to_explain(report) || !questions.is_empty();
    let mut entries: Option<Vec<CacheEntry>> = None;
    let mut checks = Vec::new();
    match (&repo_name, options.use_registry && wants_registry) {
        (_, false) => {
            if wants_registry {
                out.notes
                    .push("the registry was not consulted (--offline)".into());
            }
        }
        (None, true) => out.notes.push(
            "the report names no cache repository: pass --cache-repo to check cache entries".into(),
        ),
        (Some(name), true) => match parse_target(name) {
            Err(e) => out
                .notes
                .push(format!("cannot use cache repository {name}: {e}")),
            Ok(target) => {
                let repo = CacheRepo::new(target.location, client.clone());
                match handle.block_on(repo.all_entries()) {
                    Ok(list) => entries = Some(list),
                    Err(e) => out.notes.push(format!(
                        "could not list cache repository {name}, so cache entries were not \
                         checked: {}",
                        first_line(&e.to_string())
                    )),
                }
                for (entry_ref, paths) in &questions {
                    checks.push(check_layer(
                        &repo,
                        handle,
                        entry_ref,
                        paths,
                        entries.as_deref(),
                    ));
                }
            }
        },
    }
    let inputs = rules::Inputs {
        report,
        now: options.now,
        ttl: options.ttl,
        repo: repo_name.as_deref(),
        entries: entries.as_deref(),
        layer_checks: &checks,
        baseline: options.baseline.as_ref(),
    };
    out.findings = rules::run(&inputs);
    out.sort();
    out
}

/// Reads the layer of the entry `entry_ref` (`<repo>:<tag>`) and says whether each path is in it.
pub fn check_layer(
    repo: &CacheRepo,
    handle: &tokio::runtime::Handle,
    entry_ref: &str,
    paths: &[String],
    known: Option<&[CacheEntry]>,
) -> EntryEvidence {
    let tag = entry_ref
        .rsplit(':')
        .next()
        .unwrap_or(entry_ref)
        .to_string();
    let mut evidence = EntryEvidence {
        entry: entry_ref.to_string(),
        ..EntryEvidence::default()
    };
    let entry = match known.and_then(|k| k.iter().find(|e| e.tag == tag)) {
        Some(e) => Ok(e.clone()),
        None => handle.block_on(repo.entry(&tag)),
    };
    let entry = match entry {
        Ok(e) => e,
        Err(e) => {
            evidence.error = Some(first_line(&e.to_string()));
            return evidence;
        }
    };
    evidence.instruction = entry.instruction.clone();
    let Some(layer) = entry.layers.first() else {
        evidence.layer_entries = Some(0);
        evidence.has_path = Some(false);
        return evidence;
    };
    evidence.layer = Some(layer.digest.clone());
    let matchers: Vec<PathMatcher> = paths
        .iter()
        .filter_map(|p| PathMatcher::new(p).ok())
        .collect();
    let mut found = false;
    let result = repo.layer_reader(handle, layer).and_then(|reader| {
        let digest = layer.digest.parse().ok();
        walk_layer(reader, &entry.reference, digest.as_ref(), |f| {
            found |= matchers.iter().any(|m| m.matches(&f.path))
                && !matches!(
                    f.kind,
                    super::layer::FileType::Whiteout | super::layer::FileType::Opaque
                );
            Ok(())
        })
    });
    match result {
        Ok(summary) => {
            evidence.layer_entries = Some(summary.entries);
            evidence.has_path = Some(found);
        }
        Err(e) => evidence.error = Some(first_line(&e.to_string())),
    }
    evidence
}

/// The first line of a multi-line message.
pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_unique_id_and_its_documentation_page() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/explain");
        let mut ids = std::collections::BTreeSet::new();
        for rule in Rule::ALL {
            assert!(ids.insert(rule.id()), "duplicate ID {}", rule.id());
            let page = std::fs::read_to_string(docs.join(format!("{}.md", rule.id())))
                .unwrap_or_else(|e| panic!("{}: {e}", rule.doc()));
            let title = format!("# {} {}:", rule.id(), rule.name());
            assert!(
                page.starts_with(&title),
                "{} must start with {title:?}",
                rule.doc()
            );
            let severity = serde_json::to_value(rule.severity()).unwrap();
            assert!(
                page.contains(&format!("Severity: {}.", severity.as_str().unwrap())),
                "{} states another severity",
                rule.doc()
            );
        }
        let pages = std::fs::read_dir(&docs).unwrap().count();
        assert_eq!(
            pages,
            Rule::ALL.len(),
            "a page without a rule in {}",
            docs.display()
        );
    }
}
