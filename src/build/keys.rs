//! Cache keys for a stage's instructions, all computed before the first one runs, so every probe
//! can be sent at once (DESIGN.md decision 6).
//!
//! Nothing in a key depends on what an instruction produced, only on what it is given: the key
//! before it (the base image's manifest digest, the producer stage's final key, or the previous
//! instruction's key), the platform, the instruction after expansion, and per kind:
//! - RUN: its heredoc bodies, the ENV values and declared ARG values it sees (proxy build args
//!   and build args no ARG declares stay out, as in Docker);
//! - COPY/ADD: every source as (path from the source root, mode, owner, sha256 or link target)
//!   after `.dockerignore`, for `COPY --from` the same over the producer's files (so a producer
//!   rebuilt into the same bytes still hits), downloaded URLs by their content digest, and the
//!   options that change the result (`--chown`, `--chmod`, the destination after WORKDIR).
//!
//! Metadata instructions (ENV, USER, SHELL, ...) get keys too, since they change what later
//! instructions do; they are never probed. An ARG's key uses the declaration as written: its
//! value enters the keys of the RUNs that see it, so a changed build arg misses from the first
//! RUN on, not from the declaration. The owner recorded for a context file is 0:0 (what COPY
//! gives it), so a checkout by another uid still hits. mtimes never enter a key.
//!
//! The COPY plans and ADD downloads made here are handed to the instructions when they run, so
//! a source tree is walked and a URL fetched once per build.
//!
//! Instructions that make layers also carry the layer format (compression, level, timestamps,
//! ignored paths): a layer written with other settings has other bytes, so reusing it would
//! make a warm image differ from a cold one.

use std::path::PathBuf;

use crate::cache::{ParentKind, Part, Preimage};
use crate::context::dockerignore::clean;
use crate::digest::Digest;
use crate::dockerfile::Instruction;
use crate::dockerfile::instructions::{Add, Copy, Run, Source};
use crate::dockerfile::run_options::MountType;
use crate::plan::BuildEnv;

use super::add_copy::source_tree;
use super::copy::{self, CopyPlan, SourceTree};
use super::instructions::current_workdir;
use super::stage::StageState;

/// One instruction of a stage, owned: ONBUILD triggers of a base image are parsed at run time.
pub(super) struct StageStep {
    pub instruction: Instruction,
    pub original: String,
    pub location: String,
}

/// What the cache does with an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    /// Looked up before it runs; a miss stores a new entry.
    Probe,
    /// Not looked up (`--cache-run-layers=false`, COPY without `--cache-copy-layers`,
    /// `--single-snapshot`), but keyed: the chain goes on through it.
    Disabled,
    /// A metadata instruction: keyed, never a layer.
    Metadata,
}

/// An instruction's key.
#[derive(Debug, Clone)]
pub(super) struct StepKey {
    pub key: Digest,
    pub preimage: Preimage,
    pub policy: Policy,
}

/// Work done while keying that the instruction reuses when it runs.
#[derive(Default)]
pub(super) struct Prepared<'a> {
    /// COPY/ADD from local sources: the tree and the walked, hashed plan.
    pub copy: Option<(SourceTree<'a>, CopyPlan)>,
    /// ADD from URLs: the directory holding the downloads and the file names.
    pub downloads: Option<(PathBuf, Vec<String>)>,
}

/// Which instruction kinds are probed, and how layers are written.
#[derive(Debug, Clone)]
pub(super) struct KeyOptions {
    pub run_layers: bool,
    pub copy_layers: bool,
    pub single_snapshot: bool,
    /// What decides a layer's bytes besides the rootfs: compression, level, timestamps, ignored
    /// paths ([`layer_format`]). Part of every layer-making instruction's key, so an entry
    /// written with other settings is never reused and warm equals cold.
    pub layer_format: String,
}

/// The layer-writing settings as one key part's value.
pub(super) fn layer_format(
    layer: &crate::fs::LayerOptions,
    ignore: &crate::fs::IgnoreList,
) -> String {
    let timestamps = match layer.timestamps {
        crate::fs::Timestamps::Keep => "keep".to_string(),
        crate::fs::Timestamps::Fixed(t) => format!("fixed {t}"),
        crate::fs::Timestamps::Clamp(t) => format!("clamped {t}"),
    };
    let ignored: Vec<String> = ignore
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "{:?} level {} mtimes {timestamps} ignoring [{}]",
        layer.compression,
        layer.level,
        ignored.join(",")
    )
    .to_lowercase()
}

/// Keys (and prepared work) for `steps`, in order. Stops at the first instruction that cannot be
/// keyed (a word that does not expand, a COPY source that does not exist, a failed download):
/// running it fails the same way, at its turn, so later instructions never need a key.
pub(super) fn stage_keys<'a>(
    state: &StageState<'a>,
    steps: &[StageStep],
    parent: (ParentKind, String),
    options: &KeyOptions,
) -> (Vec<StepKey>, Vec<Prepared<'a>>) {
    let mut env = state.env.clone();
    let mut workdir = current_workdir(state);
    let platform = state.platform.to_string();
    let (mut from, mut parent_key) = parent;
    let mut keys = Vec::new();
    let mut prepared = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let Ok(expansion) = env.expand_instruction(&step.instruction, &state.expander) else {
            break;
        };
        let expanded = expansion.instruction;
        let mut preimage = Preimage::new(from, parent_key.clone());
        preimage.push(Part::Platform {
            platform: platform.clone(),
        });
        let text = match &expanded {
            Instruction::Arg(_) => step.instruction.to_string(),
            _ => expanded.to_string(),
        };
        preimage.push(Part::Instruction {
            name: expanded.keyword().to_string(),
            text,
        });
        if matches!(
            expanded,
            Instruction::Run(_)
                | Instruction::Copy(_)
                | Instruction::Add(_)
                | Instruction::Workdir(_)
        ) {
            preimage.push(Part::Option {
                name: "layer".into(),
                value: options.layer_format.clone(),
            });
        }
        let mut work = Prepared::default();
        let policy = match &expanded {
            Instruction::Run(run) => {
                run_parts(run, &env, &mut preimage);
                // What a bind mount shows the RUN is part of its input, as a COPY's sources.
                let mut complete = true;
                for m in run.mounts.iter().filter(|m| m.kind == MountType::Bind) {
                    preimage.push(Part::Option {
                        name: "mount".into(),
                        value: m.spec.clone(),
                    });
                    let Ok(tree) = source_tree(state, m.from.as_deref(), &step.location) else {
                        complete = false;
                        break;
                    };
                    let source = Source::Path(m.source.clone().unwrap_or_else(|| ".".into()));
                    let planned = plan_sources(
                        state,
                        &tree,
                        std::slice::from_ref(&source),
                        false,
                        &mut preimage.parts,
                        m.from.as_deref(),
                    );
                    if planned.is_none() {
                        complete = false;
                        break;
                    }
                }
                if !complete {
                    break;
                }
                on_if(options.run_layers)
            }
            Instruction::Copy(c) => {
                let found = copy_parts(state, c, &step.location, &workdir);
                let Some((parts, tree, plan)) = found else {
                    break;
                };
                preimage.parts.extend(parts);
                work.copy = Some((tree, plan));
                on_if(options.copy_layers)
            }
            Instruction::Add(a) => {
                let found = add_parts(state, a, &step.location, &workdir, i);
                let Some((parts, done)) = found else {
                    break;
                };
                preimage.parts.extend(parts);
                work = done;
                Policy::Probe
            }
            Instruction::Workdir(path) => {
                workdir = if path.starts_with('/') {
                    clean(path)
                } else {
                    clean(&format!("{}/{path}", workdir.trim_end_matches('/')))
                };
                Policy::Probe
            }
            _ => Policy::Metadata,
        };
        let policy = if options.single_snapshot && policy == Policy::Probe {
            Policy::Disabled
        } else {
            policy
        };
        let key = preimage.key();
        from = ParentKind::Instruction;
        parent_key = key.to_string();
        keys.push(StepKey {
            key,
            preimage,
            policy,
        });
        prepared.push(work);
    }
    (keys, prepared)
}

fn on_if(flag: bool) -> Policy {
    if flag {
        Policy::Probe
    } else {
        Policy::Disabled
    }
}

/// A RUN's heredoc bodies and the ENV and declared ARG values it sees.
fn run_parts(run: &Run, env: &BuildEnv, preimage: &mut Preimage) {
    for h in &run.heredocs {
        preimage.push(Part::Option {
            name: format!("heredoc {}", h.name),
            value: h.content.clone(),
        });
    }
    for kv in env.config_env() {
        let (name, value) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        preimage.push(Part::Env {
            name: name.into(),
            value: value.into(),
        });
    }
    for (name, value) in env.visible_args() {
        preimage.push(Part::Arg { name, value });
    }
}

/// A COPY's options and sources, and the plan that found them; None when the sources cannot be
/// found (the COPY then fails when it runs).
fn copy_parts<'a>(
    state: &StageState<'a>,
    c: &Copy,
    location: &str,
    workdir: &str,
) -> Option<(Vec<Part>, SourceTree<'a>, CopyPlan)> {
    let tree = source_tree(state, c.from.as_deref(), location).ok()?;
    let mut parts = options(&[
        ("from", c.from.clone()),
        ("chown", c.chown.clone()),
        ("chmod", c.chmod.clone()),
        ("destination", Some(destination(&c.dest, workdir))),
    ]);
    let plan = plan_sources(
        state,
        &tree,
        &c.sources,
        false,
        &mut parts,
        c.from.as_deref(),
    )?;
    Some((parts, tree, plan))
}

/// An ADD's options and sources: local files planned as for COPY, URLs downloaded (into the
/// directory the ADD then copies from) and keyed by their content digest.
fn add_parts<'a>(
    state: &StageState<'a>,
    a: &Add,
    location: &str,
    workdir: &str,
    step: usize,
) -> Option<(Vec<Part>, Prepared<'a>)> {
    let mut parts = options(&[
        ("chown", a.chown.clone()),
        ("chmod", a.chmod.clone()),
        ("checksum", a.checksum.clone()),
        ("unpack", a.unpack.map(|u| u.to_string())),
        ("destination", Some(destination(&a.dest, workdir))),
    ]);
    let urls = super::add_copy::url_sources(&a.sources);
    if urls.is_empty() {
        let tree = super::add_copy::context_tree(state, location).ok()?;
        let unpack = a.unpack.unwrap_or(true);
        let plan = plan_sources(state, &tree, &a.sources, unpack, &mut parts, None)?;
        let prepared = Prepared {
            copy: Some((tree, plan)),
            downloads: None,
        };
        return Some((parts, prepared));
    }
    if urls.len() != a.sources.len() {
        return None;
    }
    let dir = super::add_copy::download_dir(state, step);
    std::fs::create_dir_all(&dir).ok()?;
    let mut names = Vec::new();
    for url in urls {
        let (name, digest) =
            super::download::fetch(state.exec, url, a.checksum.as_deref(), &dir).ok()?;
        parts.push(Part::Url {
            url: url.to_string(),
            digest: digest.to_string(),
        });
        names.push(name);
    }
    let prepared = Prepared {
        copy: None,
        downloads: Some((dir, names)),
    };
    Some((parts, prepared))
}

/// The destination as COPY resolves it (after WORKDIR), with its trailing slash kept.
fn destination(dest: &str, workdir: &str) -> String {
    let (path, dir) = copy::destination(dest, workdir);
    let text = path.display().to_string();
    if dir && text != "/" {
        format!("{text}/")
    } else {
        text
    }
}

/// Option parts for the options that are set.
fn options(list: &[(&str, Option<String>)]) -> Vec<Part> {
    list.iter()
        .filter_map(|(name, value)| {
            value.as_ref().map(|value| Part::Option {
                name: (*name).into(),
                value: value.clone(),
            })
        })
        .collect()
}

/// Plans the sources of a COPY/ADD with hashing and adds one part per source file (heredoc
/// files included). None when the sources cannot be planned.
fn plan_sources(
    state: &StageState,
    tree: &SourceTree,
    sources: &[Source],
    unpack: bool,
    parts: &mut Vec<Part>,
    from: Option<&str>,
) -> Option<CopyPlan> {
    let (patterns, inline) = super::add_copy::split_sources(sources);
    let phases = state.exec.phases;
    let plan = phases
        .time("key", || copy::plan(tree, &patterns, unpack, true))
        .ok()?;
    for f in plan
        .sources()
        .into_iter()
        .chain(copy::inline_sources(&inline, None))
    {
        parts.push(match from {
            Some(stage) => Part::StageFile {
                stage: stage.to_string(),
                path: f.path,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                content: f.content,
            },
            None => Part::File {
                path: f.path,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                content: f.content,
            },
        });
    }
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_keep_their_directory_slash() {
        assert_eq!(destination("app/", "/srv"), "/srv/app/");
        assert_eq!(destination("app", "/srv"), "/srv/app");
        assert_eq!(destination(".", "/"), "/");
    }
}
