//! The rules that read a kbuild build report. Each is a pure function of [`Inputs`]: the report,
//! and what the caller could read from the cache repository.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use regex::Regex;

use super::{EntryEvidence, Evidence, Finding, Rule};
use crate::debug::diff::{
    CacheDiff, ChangeKind, PartChange, Role, Side, StepStatus, diff_report_with_entries, diff_sides,
};
use crate::debug::entry::CacheEntry;
use crate::debug::report::{BuildReport, InstructionRecord, StageRecord};
use crate::debug::time::{Age, format_age, format_ttl, parse_rfc3339};

/// What the rules look at.
pub struct Inputs<'a> {
    pub report: &'a BuildReport,
    pub now: SystemTime,
    pub ttl: Duration,
    /// The cache repository's name, when known.
    pub repo: Option<&'a str>,
    /// Its entries, when they could be listed.
    pub entries: Option<&'a [CacheEntry]>,
    /// Answers to [`layer_questions`].
    pub layer_checks: &'a [EntryEvidence],
    /// An earlier report to compare keys with.
    pub baseline: Option<&'a BuildReport>,
}

/// Runs every report rule.
pub fn run(inputs: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    run_failed(inputs.report, &mut out);
    if let Some(missing) = missing_source(inputs.report) {
        cross_stage_source_missing(inputs, &missing, &mut out);
        layer_lacks_path(inputs, &missing, &mut out);
    }
    registry_failure(inputs.report, &mut out);
    cache_misses(inputs, &mut out);
    expired_entries(inputs, &mut out);
    out
}

/// True when an instruction missed the cache for a reason the cache repository can tell: no
/// entry, no reason recorded, or an expired entry whose creation time the report lacks.
pub fn misses_to_explain(report: &BuildReport) -> bool {
    report
        .stages
        .iter()
        .flat_map(|s| &s.instructions)
        .filter_map(|i| i.cache.as_ref())
        .any(|c| {
            c.status == "miss"
                && match c.reason.as_deref() {
                    None | Some("no_entry") => true,
                    Some("expired") => c.created.is_none(),
                    Some(_) => false,
                }
        })
}

/// The layers worth reading: for a cross-stage source the producer stage did not make, the
/// cache entries that stage used, each with the path to look for.
pub fn layer_questions(report: &BuildReport) -> Vec<(String, Vec<String>)> {
    let Some(missing) = missing_source(report) else {
        return Vec::new();
    };
    let Some(stage) = stage_named(report, &missing.producer) else {
        return Vec::new();
    };
    hits(stage)
        .filter_map(|(_, entry)| entry)
        .map(|entry| (entry, vec![missing.path.clone()]))
        .collect()
}

fn hits(stage: &StageRecord) -> impl Iterator<Item = (&InstructionRecord, Option<String>)> {
    stage.instructions.iter().filter_map(|i| {
        let cache = i.cache.as_ref()?;
        (cache.status == "hit").then(|| (i, cache.entry.clone()))
    })
}

fn stage_named<'a>(report: &'a BuildReport, name: &str) -> Option<&'a StageRecord> {
    report
        .stages
        .iter()
        .find(|s| s.name == name || format!("stage-{}", s.index) == name)
}

/// `sha256:abc...` or `abc...` -> the first 12 hex characters.
pub fn short_key(key: &str) -> String {
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    hex.chars().take(12).collect()
}

static RUN_FAILED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\S+): `(.*)` returned a non-zero code: (-?\d+)").expect("valid regex")
});
static MISSING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^stage (\S+) did not produce (.+?), which stage (\S+) copies \((.*)\)$")
        .expect("valid regex")
});

static REGISTRY_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"registry (\S+)").expect("valid regex"));
static TLS_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"certificate|\btls\b|handshake|unknownissuer|x509").expect("valid regex")
});
static REGISTRY_URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"https?://([^/\s]+)/v2/").expect("valid regex"));

fn error_text(report: &BuildReport) -> &str {
    report.outcome.error.as_deref().unwrap_or_default()
}

/// The lines after `last output lines:` in an error message.
fn output_tail(error: &str) -> Vec<String> {
    match error.split_once("last output lines:") {
        Some((_, tail)) => tail
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    }
}

/// KB001: a RUN exited with a non-zero code.
fn run_failed(report: &BuildReport, out: &mut Vec<Finding>) {
    let kind = report.outcome.error_kind.as_deref();
    let failed = report
        .stages
        .iter()
        .flat_map(|s| s.instructions.iter().map(move |i| (s, i)))
        .rfind(|(_, i)| i.exit_code.is_some_and(|c| c != 0));
    if kind != Some("run_failed") && failed.is_none() {
        return;
    }
    let error = error_text(report);
    let parsed = RUN_FAILED.captures(error.lines().next().unwrap_or_default());
    let exit_code = report
        .outcome
        .exit_code
        .or(failed.and_then(|(_, i)| i.exit_code))
        .or_else(|| parsed.as_ref().and_then(|c| c[3].parse().ok()));
    // A failed instruction may not be in the report (the build stops before recording it): its
    // stage is the one marked failed, or (older reports, stages one at a time) the last one.
    let failed_stage = report
        .stages
        .iter()
        .find(|s| s.failed)
        .or_else(|| report.stages.iter().rev().find(|s| !s.stopped));
    let (stage, instruction) = match failed {
        Some((s, i)) => (Some(report.stage_name(s.index)), Some(i)),
        None => (failed_stage.map(|s| report.stage_name(s.index)), None),
    };
    let location = instruction
        .map(|i| i.location.clone())
        .or_else(|| parsed.as_ref().map(|c| c[1].to_string()));
    let text = instruction
        .map(as_written)
        .or_else(|| parsed.as_ref().map(|c| format!("RUN {}", &c[2])));
    let code = exit_code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into());
    let evidence = Evidence {
        stage: stage.clone(),
        instruction: text.clone(),
        location: location.clone(),
        exit_code,
        output: output_tail(error),
        ..Evidence::default()
    };
    let summary = format!(
        "{} failed with exit code {code}{}",
        text.as_deref().unwrap_or("a RUN instruction"),
        location.map(|l| format!(" ({l})")).unwrap_or_default()
    );
    let fix = format!(
        "The command itself failed, and kbuild exits with its exit code. Read its last output \
         lines; reproduce it by building up to that stage (`kbuild build --target {} \
         --no-push ...`) or running the command in the stage's base image. Usual causes: a tool \
         or file missing from the base image, a network call that failed, or shell syntax: RUN \
         uses `/bin/sh -c` unless SHELL says otherwise.",
        stage.as_deref().unwrap_or("STAGE")
    );
    out.push(Finding::new(Rule::RunFailed, summary, evidence, fix));
}

/// The instruction as the Dockerfile has it (the expanded text when the original is missing).
fn as_written(i: &InstructionRecord) -> String {
    if i.original.is_empty() {
        i.text.clone()
    } else {
        i.original.clone()
    }
}

/// A cross-stage source the producer stage did not make, read from the build's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSource {
    pub producer: String,
    pub consumer: String,
    pub path: String,
    /// `Dockerfile:12`.
    pub location: String,
    pub instruction: String,
    /// The rest of the error message (suspects, layers applied).
    pub details: Vec<String>,
}

/// The missing cross-stage source of a failed build, if that is why it failed.
pub fn missing_source(report: &BuildReport) -> Option<MissingSource> {
    if report.outcome.error_kind.as_deref() != Some("missing_cross_stage_source") {
        return None;
    }
    let error = error_text(report);
    let mut lines = error.lines();
    let cap = MISSING.captures(lines.next()?)?;
    let needed_by = cap[4].to_string();
    let (location, instruction) = match needed_by.split_once(": ") {
        Some((l, i)) => (l.to_string(), i.to_string()),
        None => (String::new(), needed_by),
    };
    Some(MissingSource {
        producer: cap[1].to_string(),
        path: cap[2].to_string(),
        consumer: cap[3].to_string(),
        location,
        instruction,
        details: lines
            .filter(|l| !l.starts_with("hint:"))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    })
}

/// KB002: a stage needs a file its producer stage did not make.
fn cross_stage_source_missing(inputs: &Inputs, m: &MissingSource, out: &mut Vec<Finding>) {
    let mut evidence = Evidence {
        stage: Some(m.consumer.clone()),
        instruction: Some(m.instruction.clone()),
        location: Some(m.location.clone()).filter(|l| !l.is_empty()),
        path: Some(m.path.clone()),
        notes: m.details.clone(),
        ..Evidence::default()
    };
    if let Some(stage) = stage_named(inputs.report, &m.producer) {
        let used: Vec<EntryEvidence> = hits(stage)
            .map(|(i, entry)| {
                let entry = entry.unwrap_or_else(|| "(entry not recorded)".into());
                // What the layer check found, when the layer was read.
                let checked = inputs.layer_checks.iter().find(|c| c.entry == entry);
                EntryEvidence {
                    instruction: Some(i.text.clone()),
                    ..checked.cloned().unwrap_or(EntryEvidence {
                        entry,
                        ..EntryEvidence::default()
                    })
                }
            })
            .collect();
        if !used.is_empty() {
            evidence.notes.push(format!(
                "stage {} took {} instruction(s) from the cache instead of running them",
                m.producer,
                used.len()
            ));
            evidence.entries = used;
        }
    }
    for check in inputs.layer_checks.iter().filter(|c| c.error.is_some()) {
        evidence.notes.push(format!(
            "could not read the layer of {}: {}",
            check.entry,
            check.error.as_deref().unwrap_or_default()
        ));
    }
    let summary = format!(
        "stage {} did not produce {}, which stage {} copies",
        m.producer, m.path, m.consumer
    );
    let fix = format!(
        "Make stage {} write {} at exactly that path: check the RUN or COPY meant to create it \
         (the error lists the layers the stage applied), e.g. an output directory or binary name \
         that differs, or a step that deletes it later. Build the stage alone to look: `kbuild \
         build --target {} --no-push --tar-path=stage.tar ...`.",
        m.producer, m.path, m.producer
    );
    out.push(Finding::new(
        Rule::CrossStageSourceMissing,
        summary,
        evidence,
        fix,
    ));
}

/// KB021: the producer stage used cache entries and none of their layers has the path.
fn layer_lacks_path(inputs: &Inputs, m: &MissingSource, out: &mut Vec<Finding>) {
    let read: Vec<&EntryEvidence> = inputs
        .layer_checks
        .iter()
        .filter(|c| c.has_path.is_some())
        .collect();
    if read.is_empty() || read.iter().any(|c| c.has_path == Some(true)) {
        return;
    }
    // The poisoned entries: those of the instructions the build error names as the ones that
    // should have made the path; else the RUNs (COPY layers hold the context's files); else all.
    let locations: Vec<(String, String)> = stage_named(inputs.report, &m.producer)
        .map(|s| {
            hits(s)
                .filter_map(|(i, e)| Some((e?, i.location.clone())))
                .collect()
        })
        .unwrap_or_default();
    let location_of = |c: &EntryEvidence| {
        locations
            .iter()
            .find(|(e, _)| *e == c.entry)
            .map(|(_, l)| l.clone())
    };
    let suspects = m
        .details
        .iter()
        .find_map(|d| d.strip_prefix("the instruction that should have made it: "))
        .unwrap_or_default();
    let named: Vec<&EntryEvidence> = read
        .iter()
        .copied()
        .filter(|c| location_of(c).is_some_and(|l| suspects.contains(&format!("{l}:"))))
        .collect();
    let runs: Vec<&EntryEvidence> = read
        .iter()
        .copied()
        .filter(|c| {
            c.instruction
                .as_deref()
                .is_some_and(|i| i.starts_with("RUN"))
        })
        .collect();
    let poisoned = [named, runs]
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| read.clone());
    let first = poisoned
        .iter()
        .find(|c| c.layer_entries == Some(0))
        .unwrap_or(&poisoned[0]);
    let what = if first.layer_entries == Some(0) {
        "has an empty layer"
    } else {
        "has a layer without it"
    };
    let summary = format!(
        "cache entry {} for `{}` {what}: {} is not in it, yet stage {} needs it",
        short_key(first.entry.rsplit(':').next().unwrap_or_default()),
        first.instruction.as_deref().unwrap_or("?"),
        m.path,
        m.consumer
    );
    let evidence = Evidence {
        stage: Some(m.producer.clone()),
        path: Some(m.path.clone()),
        entries: poisoned.iter().map(|c| (*c).clone()).collect(),
        ..Evidence::default()
    };
    let fix = format!(
        "The build took the instruction from the cache instead of running it, and the cached \
         layer does not create {}. An entry like this is poisoned: it was made by a build whose \
         RUN wrote outside what was snapshotted (Kaniko's mount points, see KB030). Delete it \
         (the commands below) and build again.",
        m.path
    );
    let commands = poisoned
        .iter()
        .map(|c| super::delete_command(&c.entry))
        .collect();
    out.push(Finding::new(Rule::LayerLacksPath, summary, evidence, fix).with_commands(commands));
}

/// KB003 and KB004: the registry refused the credentials, or TLS failed.
fn registry_failure(report: &BuildReport, out: &mut Vec<Finding>) {
    if report.outcome.success || report.outcome.error_kind.as_deref() == Some("run_failed") {
        return;
    }
    registry_findings(error_text(report), out);
}

/// KB003 and KB004 from an error message (kbuild's or Kaniko's).
pub fn registry_findings(error: &str, out: &mut Vec<Finding>) {
    let first = super::first_line(error);
    let lower = error.to_ascii_lowercase();
    let registry = REGISTRY_NAME
        .captures(error)
        .or_else(|| REGISTRY_URL.captures(error))
        .map(|c| c[1].trim_end_matches(':').to_string());
    // "denied" alone would also match a file's "permission denied".
    let auth = [
        "http 401",
        "http 403",
        "unauthorized",
        "refused the credentials",
        "denied:",
        "access to the resource is denied",
    ];
    let evidence = Evidence {
        notes: error.lines().map(str::to_string).collect(),
        ..Evidence::default()
    };
    let host = registry.clone().unwrap_or_else(|| "REGISTRY".into());
    if auth.iter().any(|a| lower.contains(a)) {
        out.push(Finding::new(
            Rule::RegistryAuth,
            format!("registry {host} did not accept the credentials: {first}"),
            evidence,
            format!(
                "Give kbuild credentials for {host}. It reads the first of $DOCKER_CONFIG/config.json, \
                 $HOME/.docker/config.json, /kaniko/.docker/config.json and \
                 /tekton/creds/.docker/config.json (an `auths` entry for {host}, a `credHelpers` \
                 entry, or `credsStore`). In Tekton, link a docker-registry secret to the \
                 ServiceAccount or mount it as the `dockerconfig` workspace. HTTP 403 means the \
                 account lacks push or pull rights on the repository."
            ),
        ));
    } else if TLS_ERROR.is_match(&lower) {
        out.push(Finding::new(
            Rule::RegistryTls,
            format!("TLS with registry {host} failed: {first}"),
            evidence,
            format!(
                "Trust the registry's CA: `--registry-certificate={host}=/path/ca.pem`. For a \
                 registry with a self-signed certificate you cannot get, \
                 `--skip-tls-verify-registry={host}` (no verification); for plain HTTP, \
                 `--insecure-registry={host}`. A client certificate goes in \
                 `--registry-client-cert={host}=cert.pem,key.pem`."
            ),
        ));
    }
}

fn rule_for(change: ChangeKind) -> Rule {
    match change {
        ChangeKind::BaseImage => Rule::MissBaseImage,
        ChangeKind::Instruction => Rule::MissInstruction,
        ChangeKind::Env => Rule::MissEnv,
        ChangeKind::Arg => Rule::MissArg,
        ChangeKind::FileAdded | ChangeKind::FileRemoved | ChangeKind::FileChanged => {
            Rule::MissFiles
        }
        ChangeKind::StageOutput => Rule::MissProducerStage,
        _ => Rule::MissOther,
    }
}

fn miss_fix(rule: Rule, changes: &[&PartChange]) -> String {
    let names: Vec<String> = changes
        .iter()
        .map(|c| c.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    let names = names.join(", ");
    match rule {
        Rule::MissBaseImage => "The base image tag now points at another digest, so every key \
            built on it changed. Pin the base image by digest (`FROM image@sha256:...`) to control \
            when this happens; the new keys are cached after this build."
            .into(),
        Rule::MissInstruction => "The instruction's text changed (after argument expansion), so \
            its key and every later key of the stage changed. Expected after an edit; if the text \
            changes on every build, look for a build arg or variable that does (a date, a commit)."
            .into(),
        Rule::MissEnv => format!(
            "ENV {names} has another value than when the entry was made. ENV values reach every \
             later key of the stage; set values that change per build (versions, dates) as late \
             as possible, in the stage that needs them."
        ),
        Rule::MissArg => format!(
            "Build arg {names} has another value than when the entry was made, and every RUN after \
             its ARG line sees it. Pass the same --build-arg value to hit the cache, or declare \
             the ARG just before the instruction that needs it so earlier steps stay cached."
        ),
        Rule::MissFiles => format!(
            "Files copied from the context differ: {names}. Expected when sources changed; if \
             they should not matter, leave them out with .dockerignore, or copy dependency \
             manifests first (`COPY go.mod go.sum ./` before `COPY . .`)."
        ),
        Rule::MissProducerStage => format!(
            "Files copied from another stage differ ({names}): that stage's output changed. Look \
             at why that stage missed first; if its output changes on every build (timestamps, \
             build IDs embedded in binaries), make it reproducible."
        ),
        _ => "A part of the key other than the instruction and its inputs changed (platform, \
            an instruction option, the key schema of a newer kbuild, or downloaded content); the \
            change list says which."
            .into(),
    }
}

/// KB010-KB017: why instructions missed the cache, from the closest entry or an earlier build.
fn cache_misses(inputs: &Inputs, out: &mut Vec<Finding>) {
    let report = inputs.report;
    if !report.has_cache() {
        return;
    }
    let side = Side::from_report("this build", report);
    // Changes are oriented old (cache or earlier build) -> new (this build).
    let (diff, flip, against): (Option<CacheDiff>, bool, String) =
        match (inputs.baseline, inputs.entries) {
            (Some(base), _) => (
                Some(diff_sides(&Side::from_report("earlier build", base), &side)),
                false,
                "the earlier build".into(),
            ),
            (None, Some(entries)) => {
                let repo = inputs.repo.unwrap_or("the cache repository");
                (
                    Some(diff_report_with_entries(&side, repo, entries)),
                    true,
                    format!("the closest entry in {repo}"),
                )
            }
            (None, None) => (None, false, String::new()),
        };
    let mut reported_no_entry = false;
    for (index, step) in side.steps.iter().enumerate() {
        let record = report
            .stages
            .iter()
            .flat_map(|s| &s.instructions)
            .nth(index)
            .and_then(|i| i.cache.as_ref());
        let Some(cache) = record else { continue };
        if cache.status != "miss" || !matches!(cache.reason.as_deref(), None | Some("no_entry")) {
            continue;
        }
        let mut evidence = Evidence {
            stage: Some(step.stage_name.clone()),
            instruction: Some(step.instruction.clone()),
            location: step.location.clone(),
            key: step.key.clone(),
            ..Evidence::default()
        };
        let Some(diff) = &diff else {
            if !reported_no_entry {
                reported_no_entry = true;
                evidence.notes.push(
                    "nothing to compare the key with: the cache repository could not be read and \
                     no earlier report was given (--compare)"
                        .into(),
                );
                out.push(no_entry(evidence, step.instruction.as_str()));
            }
            continue;
        };
        let key = step.key.as_deref();
        let found = diff.steps.iter().enumerate().find(|(_, d)| {
            (if flip {
                d.key_a.as_deref()
            } else {
                d.key_b.as_deref()
            }) == key
        });
        let Some((di, d)) = found else { continue };
        match (d.status, d.role) {
            (StepStatus::Differs, Some(Role::Cause | Role::Independent)) => {
                let other = if flip { &d.key_b } else { &d.key_a };
                evidence.entry = other.clone().map(|k| match (flip, inputs.repo) {
                    (true, Some(repo)) => {
                        format!("{repo}:{}", k.strip_prefix("sha256:").unwrap_or(&k))
                    }
                    _ => k,
                });
                let followers = diff.steps.iter().filter(|s| s.follows == Some(di)).count();
                if followers > 0 {
                    evidence.notes.push(format!(
                        "{followers} later instruction(s) missed only because this one did"
                    ));
                }
                let own: Vec<PartChange> = d
                    .changes
                    .iter()
                    .filter(|c| !c.inherited)
                    .map(|c| if flip { c.flipped() } else { c.clone() })
                    .collect();
                let mut by_rule: BTreeMap<Rule, Vec<&PartChange>> = BTreeMap::new();
                for c in &own {
                    by_rule.entry(rule_for(c.change)).or_default().push(c);
                }
                for (rule, changes) in by_rule {
                    let mut ev = evidence.clone();
                    ev.changes = changes.iter().map(|c| (*c).clone()).collect();
                    let what: Vec<String> = changes
                        .iter()
                        .map(|c| match c.name.is_empty() {
                            true => c.change.describe().to_string(),
                            false => format!("{} {}", c.change.describe(), c.name),
                        })
                        .collect();
                    let summary = format!(
                        "`{}` missed the cache: {} (compared with {against})",
                        step.instruction,
                        what.join(", ")
                    );
                    out.push(Finding::new(rule, summary, ev, miss_fix(rule, &changes)));
                }
            }
            (StepStatus::OnlyA | StepStatus::OnlyB | StepStatus::NotComparable, _)
                if d.follows.is_none() =>
            {
                if let Some(note) = &d.note {
                    evidence.notes.push(note.clone());
                }
                out.push(no_entry(evidence, step.instruction.as_str()));
            }
            _ => {}
        }
    }
}

fn no_entry(evidence: Evidence, instruction: &str) -> Finding {
    Finding::new(
        Rule::MissNoEntry,
        format!("`{instruction}` missed the cache and no comparable entry exists"),
        evidence,
        "The cache has no entry for this key and none close enough to compare: a first build, an \
         instruction never built with the cache before, entries deleted, or a different \
         --cache-repo. It is cached after this build unless --no-push-cache is set.",
    )
}

/// KB020: an entry was there but older than --cache-ttl.
fn expired_entries(inputs: &Inputs, out: &mut Vec<Finding>) {
    for stage in &inputs.report.stages {
        for i in &stage.instructions {
            let Some(cache) = &i.cache else { continue };
            if cache.status != "miss" {
                continue;
            }
            let tag = cache.tag().unwrap_or_default();
            let listed = inputs
                .entries
                .and_then(|es| es.iter().find(|e| e.tag == tag));
            let created = cache
                .created
                .clone()
                .or_else(|| listed.and_then(|e| e.created.clone()));
            let age = created
                .as_deref()
                .and_then(parse_rfc3339)
                .map(|c| Age::of(c, inputs.now, inputs.ttl));
            let expired = cache.reason.as_deref() == Some("expired")
                || (cache.reason.is_none() && age.is_some_and(|a| a.expired));
            if !expired {
                continue;
            }
            let entry = cache
                .entry
                .clone()
                .or_else(|| listed.map(|e| e.reference.clone()));
            let mut evidence = Evidence {
                stage: Some(inputs.report.stage_name(stage.index)),
                instruction: Some(i.text.clone()),
                location: Some(i.location.clone()),
                key: cache.key.clone(),
                entry,
                ..Evidence::default()
            };
            if let Some(c) = &created {
                evidence.notes.push(format!("created {c}"));
            }
            let age_text = age
                .map(|a| format!(", {} old", format_age(a.age)))
                .unwrap_or_default();
            out.push(Finding::new(
                Rule::EntryExpired,
                format!(
                    "the cache entry for `{}` expired{age_text} (--cache-ttl {})",
                    i.text,
                    format_ttl(inputs.ttl)
                ),
                evidence,
                "Entries are valid for --cache-ttl (336h by default) after they were created, and \
                 a hit does not extend that. Raise --cache-ttl, or build on a schedule so entries \
                 are renewed; this build pushed a fresh entry unless --no-push-cache is set.",
            ));
        }
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
