//! `kbuild cache diff`: two sides (build reports, cache entries, or a report and a cache
//! repository) compared instruction by instruction, preimage part by preimage part.
//!
//! Steps are paired stage by stage; within a stage the instruction lists are aligned with
//! `similar` (an inserted instruction shows as added, not as every later one changed). Each
//! differing part is named in the user's words (base image moved, build arg changed, file
//! changed, producer stage's output changed). Keys chain through their parent part, so one
//! change makes every later key differ: a change whose parent key is an earlier step that already
//! differed is *inherited*, and the first step that differs for a reason of its own is the
//! *cause*. Later steps with reasons of their own are independent divergences, listed as such.
//!
//! Kaniko entries carry no preimage (CONTEXT.md section 3): they are compared by key and
//! instruction text only, and the result says so.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use similar::{Algorithm, DiffOp, capture_diff_slices};

use super::entry::{CacheEntry, EntryKind};
use super::preimage::ReadPart;
use super::report::BuildReport;
use crate::cache::key::{ParentKind, Part};

/// One instruction of a side.
#[derive(Debug, Clone, Default)]
pub struct Step {
    pub stage: usize,
    pub stage_name: String,
    pub location: Option<String>,
    pub instruction: String,
    /// `sha256:<hex>`.
    pub key: Option<String>,
    pub parts: Option<Vec<ReadPart>>,
    /// Why there is no preimage, or where the step comes from.
    pub note: Option<String>,
    pub created: Option<String>,
    /// The build probed the cache for this key and found no entry (so an entry with this key in
    /// the repository now was pushed by that build, after the miss).
    pub missed: bool,
}

/// One side of a comparison.
#[derive(Debug, Clone)]
pub struct Side {
    pub label: String,
    pub steps: Vec<Step>,
}

impl Side {
    /// Every instruction of a report, in stage order.
    pub fn from_report(label: &str, report: &BuildReport) -> Side {
        let mut steps = Vec::new();
        for stage in &report.stages {
            for i in &stage.instructions {
                let cache = i.cache.as_ref();
                steps.push(Step {
                    stage: stage.index,
                    stage_name: report.stage_name(stage.index),
                    location: Some(i.location.clone()).filter(|l| !l.is_empty()),
                    instruction: if i.text.is_empty() {
                        i.original.clone()
                    } else {
                        i.text.clone()
                    },
                    key: cache.and_then(|c| c.key.clone()),
                    parts: cache.and_then(|c| c.parts()),
                    note: match cache {
                        None => Some("the build ran without the cache: no key".into()),
                        Some(c) if c.preimage.is_none() => Some("no preimage recorded".into()),
                        Some(_) => None,
                    },
                    created: cache.and_then(|c| c.created.clone()),
                    missed: cache.is_some_and(|c| c.status == "miss"),
                });
            }
        }
        Side {
            label: label.to_string(),
            steps,
        }
    }

    /// One cache entry as a single step.
    pub fn from_entry(entry: &CacheEntry) -> Side {
        Side {
            label: entry.reference.clone(),
            steps: vec![step_of_entry(entry)],
        }
    }
}

fn step_of_entry(entry: &CacheEntry) -> Step {
    Step {
        stage: 0,
        stage_name: "-".into(),
        location: None,
        instruction: entry.instruction.clone().unwrap_or_default(),
        key: Some(format!("sha256:{}", entry.tag)),
        parts: entry.parts.clone(),
        note: match entry.kind {
            EntryKind::Kaniko => Some(
                "Kaniko entries have no preimage: only their keys and instructions compare".into(),
            ),
            EntryKind::Unknown => Some("not a cache entry kbuild knows".into()),
            EntryKind::Kbuild if entry.parts.is_none() => Some("no readable preimage".into()),
            EntryKind::Kbuild => Some(format!("entry {}", entry.reference)),
        },
        created: entry.created.clone(),
        missed: false,
    }
}

/// What differs in a part, in the user's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The base image's digest moved (a new push of the same tag).
    BaseImage,
    /// The previous instruction's or parent stage's key.
    Parent,
    Platform,
    Schema,
    Instruction,
    Env,
    Arg,
    Option,
    FileAdded,
    FileRemoved,
    FileChanged,
    /// A file copied from another stage changed: that stage's output changed.
    StageOutput,
    Url,
    Other,
}

impl ChangeKind {
    /// A short phrase for text output.
    pub fn describe(self) -> &'static str {
        match self {
            ChangeKind::BaseImage => "base image digest moved",
            ChangeKind::Parent => "parent key changed",
            ChangeKind::Platform => "platform changed",
            ChangeKind::Schema => "cache key schema changed",
            ChangeKind::Instruction => "instruction text changed",
            ChangeKind::Env => "ENV value changed",
            ChangeKind::Arg => "ARG value changed",
            ChangeKind::Option => "instruction option changed",
            ChangeKind::FileAdded => "file added",
            ChangeKind::FileRemoved => "file removed",
            ChangeKind::FileChanged => "file changed",
            ChangeKind::StageOutput => "producer stage's output changed",
            ChangeKind::Url => "downloaded content changed",
            ChangeKind::Other => "part changed",
        }
    }
}

/// One differing part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartChange {
    pub change: ChangeKind,
    /// The part type (`env`, `file`, ...).
    pub part: String,
    /// The variable, file or option it is about (empty for single parts).
    pub name: String,
    pub a: Option<String>,
    pub b: Option<String>,
    /// A consequence of an earlier step's divergence.
    pub inherited: bool,
}

impl PartChange {
    /// The same change seen from the other side (added becomes removed).
    pub fn flipped(&self) -> PartChange {
        PartChange {
            change: match self.change {
                ChangeKind::FileAdded => ChangeKind::FileRemoved,
                ChangeKind::FileRemoved => ChangeKind::FileAdded,
                other => other,
            },
            a: self.b.clone(),
            b: self.a.clone(),
            ..self.clone()
        }
    }
}

/// How two paired steps compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Same,
    Differs,
    OnlyA,
    OnlyB,
    /// At least one side has no preimage.
    NotComparable,
}

/// The part a differing step plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The first step that differs for a reason of its own.
    Cause,
    /// Differs only because an earlier step did.
    Follows,
    /// A later step that also differs for a reason of its own.
    Independent,
}

/// One pair of steps.
#[derive(Debug, Clone, Serialize)]
pub struct StepDiff {
    pub stage: String,
    pub location: Option<String>,
    pub instruction: String,
    pub key_a: Option<String>,
    pub key_b: Option<String>,
    pub status: StepStatus,
    pub changes: Vec<PartChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// For `follows`: the index (in `steps`) of the cause it follows from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The instruction on side B when it differs from A's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction_b: Option<String>,
}

/// A whole comparison (`--format json` of `kbuild cache diff`).
#[derive(Debug, Clone, Serialize)]
pub struct CacheDiff {
    pub version: u32,
    pub a: String,
    pub b: String,
    pub steps: Vec<StepDiff>,
    /// Index of the step marked as the cause.
    pub cause: Option<usize>,
}

impl CacheDiff {
    /// True when every paired step has the same key.
    pub fn all_same(&self) -> bool {
        self.steps.iter().all(|s| s.status == StepStatus::Same)
    }

    /// The same comparison with A and B exchanged.
    pub fn swapped(mut self) -> CacheDiff {
        std::mem::swap(&mut self.a, &mut self.b);
        for s in &mut self.steps {
            std::mem::swap(&mut s.key_a, &mut s.key_b);
            s.status = match s.status {
                StepStatus::OnlyA => StepStatus::OnlyB,
                StepStatus::OnlyB => StepStatus::OnlyA,
                other => other,
            };
            s.changes = s.changes.iter().map(PartChange::flipped).collect();
            if let Some(b) = s.instruction_b.take() {
                s.instruction_b = Some(std::mem::replace(&mut s.instruction, b));
            }
        }
        self
    }
}

/// Compares two sides step by step (reports, or single entries).
pub fn diff_sides(a: &Side, b: &Side) -> CacheDiff {
    let mut pairs: Vec<(Option<&Step>, Option<&Step>)> = Vec::new();
    let mut stages: Vec<usize> = a.steps.iter().chain(&b.steps).map(|s| s.stage).collect();
    stages.sort();
    stages.dedup();
    for stage in stages {
        let sa: Vec<&Step> = a.steps.iter().filter(|s| s.stage == stage).collect();
        let sb: Vec<&Step> = b.steps.iter().filter(|s| s.stage == stage).collect();
        let ta: Vec<&str> = sa.iter().map(|s| s.instruction.as_str()).collect();
        let tb: Vec<&str> = sb.iter().map(|s| s.instruction.as_str()).collect();
        for op in capture_diff_slices(Algorithm::Patience, &ta, &tb) {
            let (old, new) = (op.old_range(), op.new_range());
            match op {
                DiffOp::Equal { .. } | DiffOp::Replace { .. } => {
                    let n = old.len().max(new.len());
                    for k in 0..n {
                        pairs.push((
                            sa.get(old.start + k).copied().filter(|_| k < old.len()),
                            sb.get(new.start + k).copied().filter(|_| k < new.len()),
                        ));
                    }
                }
                DiffOp::Delete { .. } => pairs.extend(old.map(|i| (Some(sa[i]), None))),
                DiffOp::Insert { .. } => pairs.extend(new.map(|i| (None, Some(sb[i])))),
            }
        }
    }
    finish(&a.label, &b.label, pairs)
}

/// Compares a report against the entries of a cache repository: a step whose key is a tag of
/// the repository is the same; otherwise it is compared with the nearest entry (same
/// instruction type, same parent first, then most parts in common). A step that missed is
/// never matched with the entry of its own key, which that build pushed after the miss.
pub fn diff_report_with_entries(a: &Side, repo: &str, entries: &[CacheEntry]) -> CacheDiff {
    let tag_of = |s: &Step| {
        s.key
            .as_deref()
            .map(|k| k.strip_prefix("sha256:").unwrap_or(k).to_string())
    };
    let pushed: BTreeSet<String> = a
        .steps
        .iter()
        .filter(|s| s.missed)
        .filter_map(tag_of)
        .collect();
    let by_tag: BTreeMap<&str, &CacheEntry> = entries.iter().map(|e| (e.tag.as_str(), e)).collect();
    let candidates: Vec<Step> = entries
        .iter()
        .filter(|e| !pushed.contains(&e.tag))
        .map(step_of_entry)
        .collect();
    let mut matched: Vec<Option<Step>> = Vec::new();
    for step in &a.steps {
        let found = match tag_of(step).as_deref().and_then(|t| by_tag.get(t)) {
            Some(entry) if !step.missed => Some(step_of_entry(entry)),
            _ => nearest(step, &candidates).cloned(),
        };
        matched.push(found.map(|mut s| {
            s.stage = step.stage;
            s.stage_name = step.stage_name.clone();
            s
        }));
    }
    let pairs: Vec<(Option<&Step>, Option<&Step>)> = a
        .steps
        .iter()
        .zip(&matched)
        .map(|(s, m)| (Some(s), m.as_ref()))
        .collect();
    let mut diff = finish(&a.label, repo, pairs);
    for (s, step) in diff.steps.iter_mut().zip(&a.steps) {
        if s.status == StepStatus::OnlyA {
            s.note = Some(format!("no entry in {repo} is close to this key"));
        } else if step.missed && tag_of(step).is_some_and(|t| by_tag.contains_key(t.as_str())) {
            let pushed = "the build pushed this key after the miss";
            s.note = Some(match s.note.take() {
                Some(n) => format!("{n}; {pushed}"),
                None => pushed.into(),
            });
        }
    }
    diff
}

/// The candidate closest to `step`: the same instruction type, and the same parent or the same
/// instruction text (anything else is a different instruction, not a changed one); the same
/// parent first, then the most equal parts.
pub fn nearest<'a>(step: &Step, candidates: &'a [Step]) -> Option<&'a Step> {
    let parts = step.parts.as_ref()?;
    let name = instruction_name(parts);
    let text = instruction_text(parts);
    let parent_of = |parts: &[ReadPart]| {
        parts
            .iter()
            .find_map(|p| p.parent().map(|(_, k)| k.to_string()))
    };
    let parent = parent_of(parts);
    let wanted: BTreeSet<(String, String, String)> = parts
        .iter()
        .map(|p| (p.kind(), p.identity(), p.value_text()))
        .collect();
    candidates
        .iter()
        .filter_map(|c| {
            let cp = c.parts.as_ref()?;
            if instruction_name(cp) != name {
                return None;
            }
            let same_parent = parent_of(cp) == parent;
            if !same_parent && instruction_text(cp) != text {
                return None;
            }
            let common = cp
                .iter()
                .filter(|p| wanted.contains(&(p.kind(), p.identity(), p.value_text())))
                .count();
            Some(((same_parent, common), c))
        })
        .max_by_key(|(score, _)| *score)
        .map(|(_, c)| c)
}

fn instruction_text(parts: &[ReadPart]) -> Option<String> {
    parts.iter().find_map(|p| match p.known() {
        Some(Part::Instruction { text, .. }) => Some(text.clone()),
        _ => None,
    })
}

fn instruction_name(parts: &[ReadPart]) -> Option<String> {
    parts.iter().find_map(|p| match p.known() {
        Some(Part::Instruction { name, .. }) => Some(name.clone()),
        _ => None,
    })
}

fn finish(a: &str, b: &str, pairs: Vec<(Option<&Step>, Option<&Step>)>) -> CacheDiff {
    let mut steps: Vec<StepDiff> = Vec::new();
    let mut cause = None;
    // Keys (on either side) of steps that differed, with the cause each traces back to.
    let mut diverged: BTreeMap<String, usize> = BTreeMap::new();
    // Stage name -> root of its first divergence, for stage_file parts.
    let mut stage_diverged: BTreeMap<String, usize> = BTreeMap::new();
    for (sa, sb) in pairs {
        let any = sa.or(sb).expect("a pair has a side");
        let mut d = StepDiff {
            stage: any.stage_name.clone(),
            location: sa
                .and_then(|s| s.location.clone())
                .or_else(|| sb.and_then(|s| s.location.clone())),
            instruction: any.instruction.clone(),
            key_a: sa.and_then(|s| s.key.clone()),
            key_b: sb.and_then(|s| s.key.clone()),
            status: StepStatus::Same,
            changes: Vec::new(),
            role: None,
            follows: None,
            note: None,
            instruction_b: None,
        };
        if let (Some(x), Some(y)) = (sa, sb)
            && x.instruction != y.instruction
        {
            d.instruction_b = Some(y.instruction.clone());
        }
        let index = steps.len();
        match (sa, sb) {
            (Some(_), None) | (None, Some(_)) if any.parts.is_none() => {
                // Nothing to compare (no cache key): not a cause of anything.
                d.status = StepStatus::NotComparable;
                d.note = any.note.clone();
            }
            (Some(_), None) | (None, Some(_)) => {
                // An instruction on one side only is why the next one's parent differs.
                d.status = if sa.is_some() {
                    StepStatus::OnlyA
                } else {
                    StepStatus::OnlyB
                };
                let root = match cause {
                    None => {
                        cause = Some(index);
                        d.role = Some(Role::Cause);
                        index
                    }
                    Some(_) => {
                        d.role = Some(Role::Independent);
                        index
                    }
                };
                for k in [&d.key_a, &d.key_b].into_iter().flatten() {
                    diverged.insert(k.clone(), root);
                }
                for name in [&any.stage_name, &any.stage.to_string()] {
                    stage_diverged.entry(name.clone()).or_insert(root);
                }
            }
            (Some(x), Some(y)) if x.key.is_some() && x.key == y.key => {
                d.status = StepStatus::Same;
                d.note = y.note.clone().filter(|n| n.starts_with("entry "));
            }
            (Some(x), Some(y)) => match (&x.parts, &y.parts) {
                (Some(pa), Some(pb)) => {
                    d.status = StepStatus::Differs;
                    d.changes = compare_parts(pa, pb);
                    let mut root = None;
                    for c in &mut d.changes {
                        let source = match c.change {
                            ChangeKind::Parent => [&c.a, &c.b]
                                .iter()
                                .filter_map(|k| k.as_deref())
                                .filter_map(|k| k.rsplit(' ').next())
                                .find_map(|k| diverged.get(k).copied()),
                            ChangeKind::StageOutput => c
                                .name
                                .split(':')
                                .next()
                                .and_then(|stage| stage_diverged.get(stage).copied()),
                            _ => None,
                        };
                        if let Some(r) = source {
                            c.inherited = true;
                            root.get_or_insert(r);
                        }
                    }
                    let own = d.changes.iter().any(|c| !c.inherited);
                    let root = if own {
                        d.role = Some(if cause.is_none() {
                            cause = Some(index);
                            Role::Cause
                        } else {
                            Role::Independent
                        });
                        index
                    } else {
                        d.role = Some(Role::Follows);
                        d.follows = root;
                        root.unwrap_or(index)
                    };
                    for k in [&d.key_a, &d.key_b].into_iter().flatten() {
                        diverged.insert(k.clone(), root);
                    }
                    for name in [&x.stage_name, &x.stage.to_string()] {
                        stage_diverged.entry(name.clone()).or_insert(root);
                    }
                }
                _ => {
                    d.status = StepStatus::NotComparable;
                    d.note = x
                        .note
                        .clone()
                        .filter(|_| x.parts.is_none())
                        .or(y.note.clone());
                    if x.instruction != y.instruction {
                        d.changes.push(PartChange {
                            change: ChangeKind::Instruction,
                            part: "instruction".into(),
                            name: String::new(),
                            a: Some(x.instruction.clone()),
                            b: Some(y.instruction.clone()),
                            inherited: false,
                        });
                    }
                }
            },
            (None, None) => {}
        }
        steps.push(d);
    }
    CacheDiff {
        version: super::JSON_VERSION,
        a: a.to_string(),
        b: b.to_string(),
        steps,
        cause,
    }
}

/// The parts that differ between two preimages, in A's order then B's extra parts.
pub fn compare_parts(a: &[ReadPart], b: &[ReadPart]) -> Vec<PartChange> {
    let ids = |parts: &[ReadPart]| -> Vec<(String, String, usize)> {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        parts
            .iter()
            .map(|p| {
                let n = seen.entry((p.kind(), p.identity())).or_insert(0);
                *n += 1;
                (p.kind(), p.identity(), *n)
            })
            .collect()
    };
    let (ia, ib) = (ids(a), ids(b));
    // Indexed, since a COPY of a large context has a part per file.
    let in_b: BTreeMap<&(String, String, usize), usize> =
        ib.iter().enumerate().map(|(j, id)| (id, j)).collect();
    let in_a: BTreeSet<&(String, String, usize)> = ia.iter().collect();
    let mut out = Vec::new();
    for (i, id) in ia.iter().enumerate() {
        match in_b.get(id) {
            Some(&j) if a[i] == b[j] => {}
            Some(&j) => out.push(change(Some(&a[i]), Some(&b[j]))),
            None => out.push(change(Some(&a[i]), None)),
        }
    }
    for (j, id) in ib.iter().enumerate() {
        if !in_a.contains(id) {
            out.push(change(None, Some(&b[j])));
        }
    }
    out
}

fn change(a: Option<&ReadPart>, b: Option<&ReadPart>) -> PartChange {
    let any = a.or(b).expect("one side");
    let base_image = [a, b]
        .iter()
        .flatten()
        .any(|p| matches!(p.parent(), Some((ParentKind::BaseImage, _))));
    let kind = any.kind();
    let change = match kind.as_str() {
        "schema" => ChangeKind::Schema,
        "parent" if base_image => ChangeKind::BaseImage,
        "parent" => ChangeKind::Parent,
        "platform" => ChangeKind::Platform,
        "instruction" => ChangeKind::Instruction,
        "env" => ChangeKind::Env,
        "arg" => ChangeKind::Arg,
        "option" => ChangeKind::Option,
        "file" if a.is_none() => ChangeKind::FileAdded,
        "file" if b.is_none() => ChangeKind::FileRemoved,
        "file" => ChangeKind::FileChanged,
        "stage_file" => ChangeKind::StageOutput,
        "url" => ChangeKind::Url,
        _ => ChangeKind::Other,
    };
    PartChange {
        change,
        part: kind,
        name: any.identity(),
        a: a.map(ReadPart::value_text),
        b: b.map(ReadPart::value_text),
        inherited: false,
    }
}

#[cfg(test)]
mod tests;
