//! The build plan: what a Dockerfile will build for a set of build args, a target and a platform,
//! worked out before anything is pulled or run.
//!
//! [`Plan::new`] resolves meta ARGs and FROM lines, names every stage's base (an image, an earlier
//! stage or `scratch`) and platform, finds the target and the stages it needs, expands every
//! instruction in its stage's environment ([`env::BuildEnv`]), runs ONBUILD triggers of a base
//! stage in the stages built on it, and lists the cross-stage dependencies: which stage needs which
//! paths from which stage or image, and on which line. This is Kaniko's `Built cross stage deps`
//! made readable, and the static half of `kbuild explain`.
//!
//! What the plan cannot know it says: base images are not pulled, so their ENV values stay as
//! `$NAME` text (see [`mod@env`]). ONBUILD triggers stored in a base *image* are run by the executor,
//! not listed here.
//!
//! # JSON shape (version 1)
//!
//! ```text
//! { "version": 1, "dockerfile": "Dockerfile", "platform": "linux/amd64",
//!   "build_platform": "linux/amd64", "target": 1,
//!   "meta_args": [{"name": "GO", "value": "1.22", "line": 1}],
//!   "stages": [{"index": 0, "name": "builder", "base": {"image": "golang:1.22"},
//!               "platform": "linux/amd64", "reachable": true, "line": 2,
//!               "from": "FROM golang:1.22 AS builder",
//!               "instructions": [{"line": 3, "end_line": 3, "text": "RUN go version",
//!                                 "original": "RUN go version", "args": {"GOPROXY": "..."},
//!                                 "unknown": ["HOME"], "onbuild_of": 0,
//!                                 "heredocs": [{"name": "EOF", "content": "..."}]}]}],
//!   "deps": [{"consumer": 1, "producer": {"stage": 0}, "paths": ["/workspace/app"],
//!             "line": 9, "instruction": "COPY --from=builder /workspace/app /app",
//!             "reachable": true}],
//!   "warnings": ["..."] }
//! ```
//!
//! `base` is `{"image": ref}`, `{"stage": index}` or `"scratch"`; `producer` is `{"stage": index}`
//! or `{"image": ref}`. `args`, `unknown`, `heredocs` and `onbuild_of` appear only when they
//! have content.
//! Fields may be added in later versions; none is removed or changes meaning without a new
//! `version`.

pub mod env;
pub mod error;
pub mod expand;
pub mod graph;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::dockerfile::expand::Expander;
use crate::dockerfile::{Dockerfile, Instruction, Source, Spanned};
use crate::platform::Platform;

pub use env::{ArgScope, BuildEnv, PROXY_ARGS};
pub use error::PlanError;
pub use expand::{ExpandFailure, Expansion};

/// The version of the plan's JSON shape.
pub const PLAN_VERSION: u32 = 1;

/// What to plan for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg` values (a bare `NAME` already read from the environment by the caller).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: a stage name (case-insensitive) or index; the last stage when None.
    pub target: Option<String>,
    /// The platform to build for (`TARGETPLATFORM`).
    pub platform: Platform,
    /// The platform building (`BUILDPLATFORM`).
    pub build_platform: Platform,
}

/// A planned build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub version: u32,
    pub dockerfile: String,
    #[serde(serialize_with = "as_string")]
    pub platform: Platform,
    #[serde(serialize_with = "as_string")]
    pub build_platform: Platform,
    /// Index of the target stage.
    pub target: usize,
    pub meta_args: Vec<PlannedArg>,
    pub stages: Vec<PlannedStage>,
    pub deps: Vec<CrossStageDep>,
    pub warnings: Vec<String>,
    /// The global ARG scope, for the executor to build each stage's [`BuildEnv`].
    #[serde(skip)]
    pub scope: ArgScope,
}

/// A meta ARG (before the first FROM) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedArg {
    pub name: String,
    pub value: Option<String>,
    pub line: usize,
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    #[serde(serialize_with = "as_string")]
    pub platform: Platform,
    /// True when the target needs this stage.
    pub reachable: bool,
    /// Line of the FROM instruction.
    pub line: usize,
    /// The FROM instruction after expansion.
    pub from: String,
    pub instructions: Vec<PlannedInstruction>,
}

impl PlannedStage {
    /// The stage's name, or `stage-N` as Docker calls an unnamed stage.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    Image(String),
    Stage(usize),
    Scratch,
}

/// One instruction of a stage, expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedInstruction {
    pub line: usize,
    pub end_line: usize,
    /// The instruction after argument expansion, in canonical form.
    pub text: String,
    /// The instruction as written.
    pub original: String,
    /// The ARG values a RUN sees (they reach its environment and its cache key, not the image).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Variables left unexpanded because their value comes from an unseen base image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// Heredoc bodies: expanded for COPY and ADD (unless the delimiter was quoted), as written for
    /// RUN (the shell expands them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heredocs: Vec<PlannedHeredoc>,
    /// Set for an ONBUILD trigger of the base stage with this index, run before the stage's own
    /// instructions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onbuild_of: Option<usize>,
    /// The expanded instruction itself (an ARG's defaults replaced by the values they resolved to).
    #[serde(skip)]
    pub instruction: Instruction,
}

/// A heredoc body of an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedHeredoc {
    pub name: String,
    pub content: String,
}

/// The heredoc bodies of an expanded instruction, as the build uses them.
fn heredocs_of(instruction: &Instruction) -> Vec<PlannedHeredoc> {
    let planned = |h: &crate::dockerfile::Heredoc| PlannedHeredoc {
        name: h.name.clone(),
        content: h.body(),
    };
    let sources = |sources: &[Source]| {
        sources
            .iter()
            .filter_map(|s| match s {
                Source::Heredoc(h) => Some(planned(h)),
                Source::Path(_) => None,
            })
            .collect()
    };
    match instruction {
        Instruction::Run(r) => r.heredocs.iter().map(planned).collect(),
        Instruction::Copy(c) => sources(&c.sources),
        Instruction::Add(a) => sources(&a.sources),
        _ => Vec::new(),
    }
}

/// Where a stage takes files from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Producer {
    Stage(usize),
    Image(String),
}

/// Files one instruction of a stage needs from another stage or an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossStageDep {
    pub consumer: usize,
    pub producer: Producer,
    /// Source paths in the producer's filesystem, absolute; wildcards kept as patterns.
    pub paths: Vec<String>,
    pub line: usize,
    pub instruction: String,
    /// True when the consuming stage is needed by the target.
    pub reachable: bool,
}

fn as_string<S: serde::Serializer>(p: &Platform, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

/// One instruction a stage runs, as written.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// First and last line in the Dockerfile.
    pub lines: (usize, usize),
    pub original: &'a str,
    pub instruction: &'a Instruction,
    /// For an ONBUILD trigger inherited from the base stage: that stage's index.
    pub onbuild_of: Option<usize>,
}

/// The instructions stage `stage` runs, unexpanded, in order: the ONBUILD triggers of its base
/// stage first (as Docker runs them), then its own. The executor walks these with a
/// [`BuildEnv`] holding the base image's real environment.
pub fn steps<'a>(df: &'a Dockerfile, stage: usize, base: &Base) -> Vec<Step<'a>> {
    let mut out = Vec::new();
    if let Base::Stage(parent) = base {
        for i in &df.stages[*parent].instructions {
            if let Instruction::Onbuild(ob) = &i.node {
                out.push(Step {
                    lines: (i.lines.start, i.lines.end),
                    original: &ob.expression,
                    instruction: &ob.instruction,
                    onbuild_of: Some(*parent),
                });
            }
        }
    }
    out.extend(
        df.stages[stage]
            .instructions
            .iter()
            .map(|i: &Spanned<Instruction>| Step {
                lines: (i.lines.start, i.lines.end),
                original: &i.original,
                instruction: &i.node,
                onbuild_of: None,
            }),
    );
    out
}

/// The `--from` values an instruction uses (COPY --from, RUN --mount=from=).
fn from_refs(instruction: &Instruction) -> Vec<&str> {
    match instruction {
        Instruction::Copy(c) => c.from.as_deref().into_iter().collect(),
        Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
        _ => Vec::new(),
    }
}

impl Plan {
    /// Plans `dockerfile` for `options`.
    pub fn new(dockerfile: &Dockerfile, options: &PlanOptions) -> Result<Plan, PlanError> {
        let df = dockerfile;
        let file = df.file.as_str();
        let ex = Expander::new(df.escape);
        let mut scope = ArgScope::new(
            options.build_args.clone(),
            &options.platform,
            &options.build_platform,
        );
        let mut declared: BTreeSet<String> = BTreeSet::new();

        let mut meta_args = Vec::new();
        for m in &df.meta_args {
            for decl in &m.node {
                declared.insert(decl.name.clone());
                let resolved = scope
                    .declare(&decl.name, decl.default.as_deref(), &ex)
                    .map_err(|source| PlanError::Expand {
                        file: file.into(),
                        line: m.lines.start,
                        instruction: m.original.clone(),
                        word: decl.default.clone().unwrap_or_default(),
                        source: Box::new(source),
                    })?;
                meta_args.push(PlannedArg {
                    name: resolved.name,
                    value: resolved.value,
                    line: m.lines.start,
                });
            }
        }

        // FROM lines: base and platform of every stage, in the global scope.
        let names: Vec<Option<String>> = df.stages.iter().map(|s| s.from.name.clone()).collect();
        let mut bases = Vec::new();
        let mut platforms: Vec<Platform> = Vec::new();
        let mut from_texts = Vec::new();
        for stage in &df.stages {
            let from = &stage.from;
            let line = from.lines.start;
            let expand_err = |word: &str, source| PlanError::Expand {
                file: file.into(),
                line,
                instruction: from.original.clone(),
                word: word.to_string(),
                source: Box::new(source),
            };
            let image = ex
                .word(&from.image, &scope)
                .map_err(|e| expand_err(&from.image, e))?;
            if image.is_empty() {
                return Err(PlanError::BlankBase {
                    file: file.into(),
                    line,
                    image: from.image.clone(),
                });
            }
            let lower = image.to_ascii_lowercase();
            let earlier = names[..stage.index]
                .iter()
                .position(|n| n.as_deref() == Some(&lower));
            let base = match earlier {
                Some(p) => Base::Stage(p),
                None if image == "scratch" => Base::Scratch,
                None => Base::Image(image.clone()),
            };
            let platform = match &from.platform {
                Some(raw) => {
                    let value = ex.word(raw, &scope).map_err(|e| expand_err(raw, e))?;
                    value
                        .parse::<Platform>()
                        .map_err(|source| PlanError::Platform {
                            file: file.into(),
                            line,
                            value: value.clone(),
                            source,
                        })?
                }
                None => match base {
                    Base::Stage(p) => platforms[p].clone(),
                    _ => options.platform.clone(),
                },
            };
            let mut expanded = from.node.clone();
            expanded.image = image;
            expanded.platform = from.platform.as_ref().map(|_| platform.to_string());
            from_texts.push(Instruction::From(expanded).to_string());
            bases.push(base);
            platforms.push(platform);
        }

        // The stage graph, from the `--from` values as written.
        let mut refs: Vec<Vec<(usize, Producer)>> = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let mut stage_refs = Vec::new();
            for step in steps(df, i, base) {
                for from in from_refs(step.instruction) {
                    let producer = graph::resolve_from(from, &names, file, step.lines.0)?;
                    stage_refs.push((step.lines.0, producer));
                }
            }
            refs.push(stage_refs);
        }
        let edges = graph::edges(&bases, &refs);
        if let Some((stage, line)) = graph::find_cycle(&edges) {
            return Err(PlanError::Cycle {
                file: file.into(),
                line: if line == 0 {
                    df.stages[stage].from.lines.start
                } else {
                    line
                },
                stage: stage_label(&names, stage),
            });
        }
        let target = resolve_target(options.target.as_deref(), &names, file)?;
        let reachable = graph::reachable(&edges, target);
        for (consumer, stage_refs) in refs.iter().enumerate() {
            if !reachable[consumer] {
                continue;
            }
            for (line, producer) in stage_refs {
                if let Producer::Stage(p) = producer
                    && *p > consumer
                {
                    return Err(PlanError::LaterStage {
                        file: file.into(),
                        line: *line,
                        from: stage_label(&names, *p),
                        consumer: stage_label(&names, consumer),
                    });
                }
            }
        }

        // Walk every stage in its environment.
        let mut finals: Vec<BuildEnv> = Vec::new();
        let mut stages = Vec::new();
        let mut deps = Vec::new();
        let mut warnings: Vec<String> = df
            .warnings
            .iter()
            .map(|w| format!("{file}:{}: {}", w.line, w.message))
            .collect();
        for (i, base) in bases.iter().enumerate() {
            let mut env = match base {
                Base::Stage(p) => BuildEnv::inherit(&finals[*p]),
                Base::Scratch => BuildEnv::scratch(&scope),
                Base::Image(_) => BuildEnv::new(None, &scope),
            };
            let mut instructions = Vec::new();
            for step in steps(df, i, base) {
                if let Instruction::Arg(decls) = step.instruction {
                    declared.extend(decls.iter().map(|d| d.name.clone()));
                }
                let expansion = match env.expand_instruction(step.instruction, &ex) {
                    Ok(e) => e,
                    Err(failure) if reachable[i] => {
                        return Err(expand_error(file, step.lines.0, step.original, failure));
                    }
                    // A stage the target does not need may use ARGs this build does not give.
                    Err(_) => Expansion {
                        instruction: step.instruction.clone(),
                        unknown: BTreeSet::new(),
                    },
                };
                let text = expansion.instruction.to_string();
                let args = match &expansion.instruction {
                    Instruction::Run(_) => env.visible_args().into_iter().collect(),
                    _ => BTreeMap::new(),
                };
                for dep in stage_deps(&expansion.instruction, &names, file, step.lines.0)? {
                    deps.push(CrossStageDep {
                        consumer: i,
                        producer: dep.0,
                        paths: dep.1,
                        line: step.lines.0,
                        instruction: text.clone(),
                        reachable: reachable[i],
                    });
                }
                if let Some(from) = from_refs(&expansion.instruction).first()
                    && let Ok(Producer::Image(image)) =
                        graph::resolve_from(from, &names, file, step.lines.0)
                    && let Some(near) = near_stage(&image, &names)
                {
                    warnings.push(format!(
                        "{file}:{}: --from={image} names no stage, so it is pulled as an image; \
                         did you mean stage {near}?",
                        step.lines.0
                    ));
                }
                instructions.push(PlannedInstruction {
                    line: step.lines.0,
                    end_line: step.lines.1,
                    text,
                    original: step.original.to_string(),
                    args,
                    unknown: expansion.unknown.into_iter().collect(),
                    heredocs: heredocs_of(&expansion.instruction),
                    onbuild_of: step.onbuild_of,
                    instruction: expansion.instruction,
                });
            }
            finals.push(env);
            stages.push(PlannedStage {
                index: i,
                name: names[i].clone(),
                base: base.clone(),
                platform: platforms[i].clone(),
                reachable: reachable[i],
                line: df.stages[i].from.lines.start,
                from: from_texts[i].clone(),
                instructions,
            });
        }

        for name in options.build_args.keys() {
            let predefined = env::platform_args(&options.platform, &options.build_platform)
                .iter()
                .any(|(k, _)| k == name);
            if !declared.contains(name) && !predefined && !PROXY_ARGS.contains(&name.as_str()) {
                warnings.push(format!(
                    "build arg {name} was not consumed: no ARG {name} in {file}"
                ));
            }
        }

        Ok(Plan {
            version: PLAN_VERSION,
            dockerfile: file.to_string(),
            platform: options.platform.clone(),
            build_platform: options.build_platform.clone(),
            target,
            meta_args,
            stages,
            deps,
            warnings,
            scope,
        })
    }

    /// The target stage.
    pub fn target_stage(&self) -> &PlannedStage {
        &self.stages[self.target]
    }
}

fn stage_label(names: &[Option<String>], index: usize) -> String {
    names[index]
        .clone()
        .unwrap_or_else(|| format!("stage-{index}"))
}

fn resolve_target(
    target: Option<&str>,
    names: &[Option<String>],
    file: &str,
) -> Result<usize, PlanError> {
    let Some(target) = target else {
        return Ok(names.len() - 1);
    };
    let lower = target.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| n.as_deref() == Some(&lower)) {
        return Ok(i);
    }
    match target.parse::<usize>() {
        Ok(i) if i < names.len() => Ok(i),
        _ => Err(PlanError::UnknownTarget {
            file: file.into(),
            target: target.to_string(),
            available: names.iter().flatten().cloned().collect(),
        }),
    }
}

fn expand_error(file: &str, line: usize, original: &str, failure: ExpandFailure) -> PlanError {
    match failure {
        ExpandFailure::Word { word, source } => PlanError::Expand {
            file: file.into(),
            line,
            instruction: original.to_string(),
            word,
            source: Box::new(source),
        },
        ExpandFailure::Invalid { message } => PlanError::Invalid {
            file: file.into(),
            line,
            instruction: original.to_string(),
            message,
        },
    }
}

/// The producers and source paths an expanded instruction needs.
fn stage_deps(
    instruction: &Instruction,
    names: &[Option<String>],
    file: &str,
    line: usize,
) -> Result<Vec<(Producer, Vec<String>)>, PlanError> {
    let mut out = Vec::new();
    match instruction {
        Instruction::Copy(c) => {
            if let Some(from) = &c.from {
                let paths = c
                    .sources
                    .iter()
                    .filter_map(|s| match s {
                        Source::Path(p) => Some(graph::root_path(p)),
                        Source::Heredoc(_) => None,
                    })
                    .collect();
                out.push((graph::resolve_from(from, names, file, line)?, paths));
            }
        }
        Instruction::Run(r) => {
            for m in &r.mounts {
                if let Some(from) = &m.from {
                    let path = graph::root_path(m.source.as_deref().unwrap_or("/"));
                    out.push((graph::resolve_from(from, names, file, line)?, vec![path]));
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// A stage name a mistyped `--from` value was probably meant to be.
fn near_stage(image: &str, names: &[Option<String>]) -> Option<String> {
    let lower = image.to_ascii_lowercase();
    names
        .iter()
        .flatten()
        .map(|n| (strsim::levenshtein(n, &lower), n))
        .filter(|(d, _)| *d > 0 && *d <= 2)
        .min()
        .map(|(_, n)| n.clone())
}

#[cfg(test)]
mod tests;
