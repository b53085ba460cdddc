//! Building one stage of a plan in its own rootfs directory ([`super::schedule`] decides when).
//!
//! A stage's instructions are keyed up front when the cache is on ([`super::keys`]), every probe
//! is started at once, and then the instructions run in order: a hit is applied from its entry
//! ([`super::cached`]), anything else runs ([`super::instructions`]) and, when it was probed,
//! its new entry is stored in the background.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::cache::{PendingProbe, Probe};
use crate::context::BuildContext;
use crate::digest::Digest;
use crate::dockerfile::expand::Expander;
use crate::dockerfile::{Dockerfile, Instruction};
use crate::fs::{Changes, Root, Snapshotter};
use crate::image::config::History;
use crate::image::{BuiltImage, ImageBuilder, LayerBlob};
use crate::plan::{Base, BuildEnv, Plan};
use crate::platform::Platform;
use crate::registry::manifest::{Descriptor, LayerCompression};
use crate::registry::{BlobStore, RegistryClient, RegistryError};

use super::cached::{self, CacheContext};
use super::instructions::{self as instr, Outcome};
use super::keys::{self, Policy, Prepared, StageStep, StepKey};
use super::report::{BaseLayers, CacheStatus, FoundSource, InstructionReport, StageReport};
use super::{BuildError, BuildRequest};

/// Shared state of one build.
pub(super) struct Executor<'a> {
    pub phases: &'a super::phases::Phases,
    pub request: &'a BuildRequest,
    pub context: &'a BuildContext,
    pub dockerfile: &'a Dockerfile,
    pub plan: &'a Plan,
    pub work: &'a Path,
    pub store: &'a BlobStore,
    pub client: &'a RegistryClient,
    pub handle: tokio::runtime::Handle,
    /// The layer cache; None when it is off.
    pub cache: Option<&'a CacheContext>,
    /// Base image layers downloaded or found in the store, over the whole build.
    pub base_layers: Mutex<BaseLayers>,
    /// External images `COPY --from` reads, pulled once per build: image -> rootfs.
    pub images: Mutex<BTreeMap<String, PathBuf>>,
    /// One lock per image and platform being pulled (see [`Executor::pull`]).
    pub pulls: Mutex<BTreeMap<String, std::sync::Arc<Mutex<()>>>>,
    /// The stages' progress (see [`super::schedule`]).
    pub board: super::schedule::Board,
    /// When the build started: the report's stage times count from here.
    pub started: Instant,
}

/// One instruction's line in a stage's history, for the cross-stage check's messages.
#[derive(Debug, Clone)]
pub(super) struct HistoryEntry {
    /// `Dockerfile:12: RUN make`, or "base image".
    pub what: String,
    /// The layer digest, or "no layer".
    pub layer: String,
    /// Paths the instruction changed; None when not known (a base layer, a cache hit).
    pub paths: Option<Vec<PathBuf>>,
    /// A cache hit: its layer can be listed when the paths are needed.
    pub hit: bool,
}

/// A finished stage: what later stages start from or copy from.
pub(super) struct Finished {
    pub rootfs: PathBuf,
    pub builder: ImageBuilder,
    pub env: BuildEnv,
    pub layers: Vec<Descriptor>,
    pub history: Vec<HistoryEntry>,
    /// The key a stage built FROM this one chains on (None with the cache off).
    pub final_key: Option<Digest>,
    /// Whether the last probed instruction missed.
    pub chain_missed: bool,
}

/// A stage being built.
pub(super) struct StageState<'a> {
    pub exec: &'a Executor<'a>,
    pub index: usize,
    pub name: String,
    pub platform: Platform,
    pub root: Root,
    pub rootfs: PathBuf,
    pub builder: ImageBuilder,
    pub env: BuildEnv,
    pub snapshotter: Snapshotter,
    /// A cache hit changed the rootfs behind the snapshotter's back: re-index before the next
    /// instruction that runs.
    pub index_stale: bool,
    /// The last probed instruction of this chain missed (for `parent_missed`).
    pub chain_missed: bool,
    pub expander: Expander,
    pub history: Vec<HistoryEntry>,
    pub report: StageReport,
    /// Set once a step changed the rootfs under `--single-snapshot` (the layer comes at the end).
    pub pending_single: bool,
    pub run_counter: usize,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

/// What running the stages produced.
pub(super) struct StagesOutcome {
    pub image: Result<BuiltImage, BuildError>,
    pub stages: Vec<StageReport>,
    pub found: Vec<FoundSource>,
}

impl Executor<'_> {
    /// The stages this build runs: those the target needs with `--skip-unused-stages`, else every
    /// stage up to the target (Kaniko's default).
    pub(super) fn selected(&self) -> Vec<usize> {
        self.plan
            .stages
            .iter()
            .filter(|s| {
                if self.request.skip_unused_stages {
                    s.reachable
                } else {
                    s.index <= self.plan.target
                }
            })
            .map(|s| s.index)
            .collect()
    }

    /// The image of the target stage, with `--label`s and the build's `created` time.
    pub(super) fn final_image(
        &self,
        done: Option<std::sync::Arc<Finished>>,
    ) -> Result<BuiltImage, BuildError> {
        let target = self.plan.target;
        let done = done.ok_or_else(|| BuildError::Instruction {
            location: self.dockerfile.file.clone(),
            message: format!("target stage {target} was not built"),
        })?;
        let mut builder = std::sync::Arc::try_unwrap(done)
            .map(|d| d.builder)
            .unwrap_or_else(|shared| shared.builder.clone());
        if !self.request.labels.is_empty() {
            let labels = builder.config_mut().config.labels.get_or_insert_default();
            for (k, v) in &self.request.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        builder.config_mut().created = Some(self.created());
        builder.build().map_err(BuildError::from)
    }

    /// The `created` time of configs and history entries: the epoch (or SOURCE_DATE_EPOCH) under
    /// `--reproducible`, else now.
    pub fn created(&self) -> String {
        let secs = if self.request.reproducible {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        )
        .to_string()
    }

    pub(super) fn location(&self, line: usize) -> String {
        format!("{}:{line}", self.dockerfile.file)
    }

    pub(super) fn fs_err(&self, line: usize, source: crate::fs::FsError) -> BuildError {
        BuildError::Fs {
            location: self.location(line),
            source,
        }
    }

    /// Builds one stage; its report comes back whether it succeeded or not.
    pub(super) fn build_stage(&self, index: usize) -> (Result<Finished, BuildError>, StageReport) {
        let planned = &self.plan.stages[index];
        let mut report = StageReport::new(index, planned.display_name(), planned.from.clone());
        let started = Instant::now();
        let rootfs = self
            .work
            .join("stages")
            .join(index.to_string())
            .join("rootfs");
        let fail = |e: BuildError, report: StageReport| (Err(e), report);
        // The image's `/` is 0755 whatever kbuild's umask (a base layer may still set it): under
        // umask 077 a non-root USER could not even reach its own files.
        let made = std::fs::create_dir_all(&rootfs).and_then(|()| {
            std::fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        });
        if let Err(source) = made {
            return fail(
                BuildError::WorkDir {
                    path: rootfs,
                    source,
                },
                report,
            );
        }
        let base = match self.prepare_base(index, &rootfs) {
            Ok(base) => base,
            Err(e) => return fail(e, report),
        };
        report.base_digest = base.digest.clone();
        let mut base = base;
        // As BuildKit: an image whose base defines no PATH gets the default one.
        let env_now = base.env.config_env();
        if base
            .builder
            .config()
            .config
            .env
            .as_deref()
            .unwrap_or_default()
            != env_now.as_slice()
        {
            base.builder.config_mut().config.env = Some(env_now);
        }
        let root = match Root::open(&rootfs) {
            Ok(root) => root,
            Err(e) => return fail(self.fs_err(planned.line, e), report),
        };
        let snapshotter = match Snapshotter::new(
            &root,
            self.request.snapshot_mode,
            self.request.ignore.clone(),
        ) {
            Ok(s) => s,
            Err(e) => return fail(self.fs_err(planned.line, e), report),
        };
        let mut state = StageState {
            exec: self,
            index,
            name: planned.display_name(),
            platform: planned.platform.clone(),
            root,
            rootfs: rootfs.clone(),
            builder: base.builder,
            env: base.env,
            snapshotter,
            index_stale: false,
            chain_missed: base.chain_missed,
            expander: Expander::new(self.dockerfile.escape),
            history: Vec::new(),
            report,
            pending_single: false,
            run_counter: 0,
            cmd_set: false,
        };
        for desc in &base.layers {
            state.history.push(HistoryEntry {
                what: "base image".into(),
                layer: desc.digest.to_string(),
                paths: None,
                hit: false,
            });
        }
        let steps = match self.stage_steps(&mut state, planned.line) {
            Ok(steps) => steps,
            Err(e) => return fail(e, state.report),
        };
        let (keys, prepared) = match (self.cache, &base.parent) {
            (Some(cache), Some(parent)) => {
                keys::stage_keys(&state, &steps, parent.clone(), &cache.options)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let mut probes: Vec<Option<PendingProbe>> = keys
            .iter()
            .map(|k| match self.cache {
                Some(cache) if k.policy == Policy::Probe => Some(cache.background.probe(k.key)),
                _ => None,
            })
            .collect();
        let mut prepared = prepared.into_iter();
        for (i, step) in steps.iter().enumerate() {
            if self.board.stopping() {
                state.report.stopped = true;
                let err = BuildError::Instruction {
                    location: step.location.clone(),
                    message: "stopped: another stage failed".into(),
                };
                return fail(err, state.report);
            }
            let probe = probes.get_mut(i).and_then(Option::take);
            let work = prepared.next().unwrap_or_default();
            let result = self.run_step(&mut state, step, keys.get(i), probe, work);
            if let Err(e) = result {
                return fail(e, state.report);
            }
        }
        if let Err(e) = instr::finish_single_snapshot(&mut state) {
            return fail(e, state.report);
        }
        let final_key = match (keys.last(), &base.parent) {
            _ if self.cache.is_none() || keys.len() != steps.len() => None,
            (Some(k), _) => Some(k.key),
            (None, Some((_, parent))) => parent.parse().ok(),
            (None, None) => None,
        };
        state.report.final_key = final_key.map(|k| k.to_string());
        state.report.duration_ms = started.elapsed().as_millis() as u64;
        let layers = match state.builder.clone().build() {
            Ok(image) => image.layers,
            Err(e) => return fail(e.into(), state.report),
        };
        (
            Ok(Finished {
                rootfs,
                builder: state.builder,
                env: state.env,
                layers,
                history: state.history,
                final_key,
                chain_missed: state.chain_missed,
            }),
            state.report,
        )
    }

    /// The stage's instructions: ONBUILD triggers stored in a base *image* first (a base
    /// *stage*'s are among the plan's steps), then the Dockerfile's.
    fn stage_steps(
        &self,
        state: &mut StageState,
        line: usize,
    ) -> Result<Vec<StageStep>, BuildError> {
        let planned = &self.plan.stages[state.index];
        let triggers = match &planned.base {
            Base::Image(_) => state
                .builder
                .config()
                .config
                .on_build
                .clone()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if !triggers.is_empty() {
            state.builder.config_mut().config.on_build = None;
        }
        let mut steps = Vec::new();
        for trigger in triggers {
            let location = format!("{} (ONBUILD of the base image)", self.location(line));
            let parsed = crate::dockerfile::parse(&format!("FROM scratch\n{trigger}\n"), "ONBUILD")
                .map_err(|e| BuildError::Instruction {
                    location: location.clone(),
                    message: format!("cannot parse the trigger {trigger:?}: {e}"),
                })?;
            if let Some(spanned) = parsed.stages.first().and_then(|s| s.instructions.first()) {
                steps.push(StageStep {
                    instruction: spanned.node.clone(),
                    original: trigger.clone(),
                    location,
                });
            }
        }
        for step in crate::plan::steps(self.dockerfile, state.index, &planned.base) {
            steps.push(StageStep {
                instruction: step.instruction.clone(),
                original: step.original.to_string(),
                location: self.location(step.lines.0),
            });
        }
        Ok(steps)
    }

    fn run_step<'a>(
        &self,
        state: &mut StageState<'a>,
        step: &StageStep,
        key: Option<&StepKey>,
        probe: Option<PendingProbe>,
        prepared: Prepared<'a>,
    ) -> Result<(), BuildError> {
        let started = Instant::now();
        let location = step.location.as_str();
        let expansion = state
            .env
            .expand_instruction(&step.instruction, &state.expander)
            .map_err(|e| BuildError::Instruction {
                location: location.to_string(),
                message: match e {
                    crate::plan::ExpandFailure::Word { word, source } => {
                        format!("cannot expand {word:?}: {source}")
                    }
                    crate::plan::ExpandFailure::Invalid { message } => message,
                },
            })?;
        let expanded = expansion.instruction;
        tracing::info!("{location}: {expanded}");
        let mut entry = InstructionReport::new(location, &step.original, &expanded.to_string());
        let mut cache_report = key.map(cached::report_for);
        if let (Some(probe), Some(report)) = (probe, cache_report.as_mut()) {
            let waited = Instant::now();
            let found = probe.wait(&self.handle);
            self.phases.add("cache", waited, 0);
            match found {
                Probe::Hit(hit) => {
                    let layer = cached::apply_hit(self, state, &expanded, &hit, location)?;
                    report.status = CacheStatus::Hit;
                    report.reason = None;
                    report.entry = self
                        .cache
                        .map(|c| c.background.store().repo().entry_name(&hit.key));
                    report.created = Some(hit.created.clone());
                    state.chain_missed = false;
                    state.history.push(HistoryEntry {
                        what: format!("{location}: {expanded} (cache hit)"),
                        layer: layer
                            .as_ref()
                            .map_or("no layer".into(), |l| l.digest.to_string()),
                        paths: None,
                        hit: true,
                    });
                    entry.layer = layer;
                    entry.cache = cache_report;
                    entry.duration_ms = started.elapsed().as_millis() as u64;
                    state.report.instructions.push(entry);
                    return Ok(());
                }
                Probe::Miss {
                    reason,
                    detail,
                    created,
                } => {
                    let why = match reason {
                        crate::cache::MissReason::NoEntry => "no entry",
                        crate::cache::MissReason::Expired => "entry expired",
                    };
                    tracing::info!("{location}: cache miss ({why})");
                    cached::record_miss(report, state, reason, detail, created);
                }
            }
        }
        let touches_rootfs = matches!(
            expanded,
            Instruction::Run(_)
                | Instruction::Copy(_)
                | Instruction::Add(_)
                | Instruction::Workdir(_)
        );
        if state.index_stale && touches_rootfs {
            let fresh = self.phases.time("snapshot", || {
                Snapshotter::new(
                    &state.root,
                    self.request.snapshot_mode,
                    state.snapshotter.ignore_list().clone(),
                )
            });
            state.snapshotter = fresh.map_err(|source| BuildError::Fs {
                location: location.to_string(),
                source,
            })?;
            state.index_stale = false;
        }
        let outcome = instr::execute(state, &expanded, location, prepared)?;
        match outcome {
            Outcome::Config { created_by } => {
                let layer = self.add_empty_history(state, &created_by, location)?;
                state.history.push(HistoryEntry {
                    what: format!("{location}: {expanded}"),
                    layer: layer
                        .as_ref()
                        .map_or("no layer".into(), |l| l.digest.to_string()),
                    paths: Some(Vec::new()),
                    hit: false,
                });
                entry.layer = layer;
            }
            Outcome::Changes {
                changes,
                created_by,
                exit_code,
                isolation,
            } => {
                entry.exit_code = exit_code;
                entry.isolation = isolation.map(|i| i.to_string());
                let paths: Vec<PathBuf> = changes.iter().map(|(p, _)| p.to_path_buf()).collect();
                let layer = self.commit_layer(state, &changes, &created_by, location)?;
                state.history.push(HistoryEntry {
                    what: format!("{location}: {expanded}"),
                    layer: layer
                        .as_ref()
                        .map_or("no layer".into(), |l| l.digest.to_string()),
                    paths: Some(paths),
                    hit: false,
                });
                if let (Some(cache), Some(key), Some(report)) =
                    (self.cache, key, cache_report.as_mut())
                    && report.status == CacheStatus::Miss
                {
                    cached::store_miss(cache, state, key, &created_by, layer.as_ref(), report);
                }
                entry.layer = layer;
            }
        }
        entry.cache = cache_report;
        entry.duration_ms = started.elapsed().as_millis() as u64;
        state.report.instructions.push(entry);
        Ok(())
    }

    /// Adds `changes` to the image as a layer; no changes, no layer (an empty-layer history
    /// entry instead).
    fn commit_layer(
        &self,
        state: &mut StageState,
        changes: &Changes,
        created_by: &str,
        location: &str,
    ) -> Result<Option<crate::fs::LayerInfo>, BuildError> {
        if changes.is_empty() {
            return self.add_empty_history(state, created_by, location);
        }
        self.write_stage_layer(state, changes, created_by, location)
    }

    /// The history entry of a step that changed no file, dated as every other one: an
    /// empty-layer entry, or with `--force-build-metadata` (as Kaniko) a layer holding an empty
    /// tar, so every instruction has a layer of its own.
    pub(super) fn add_empty_history(
        &self,
        state: &mut StageState,
        created_by: &str,
        location: &str,
    ) -> Result<Option<crate::fs::LayerInfo>, BuildError> {
        if self.request.force_build_metadata {
            let options = crate::fs::LayerOptions {
                allow_empty: true,
                ..self.request.layer
            };
            let layer = self.layer_with(state, &Changes::new(), &options, created_by, location)?;
            if layer.is_some() {
                return Ok(layer);
            }
        }
        state.builder.add_empty_history(created_by);
        if let Some(h) = state.builder.config_mut().history.last_mut() {
            h.created = Some(self.created());
        }
        Ok(None)
    }

    /// Writes `changes` as a layer into the store and adds it to the stage's image; nothing to
    /// write gives the step's empty history entry instead.
    pub fn write_stage_layer(
        &self,
        state: &mut StageState,
        changes: &Changes,
        created_by: &str,
        location: &str,
    ) -> Result<Option<crate::fs::LayerInfo>, BuildError> {
        match self.layer_with(state, changes, &self.request.layer, created_by, location)? {
            Some(info) => Ok(Some(info)),
            // Dated like every other empty-layer entry, so a cache hit of this (empty) step
            // writes the same history.
            None => self.add_empty_history(state, created_by, location),
        }
    }

    /// Writes `changes` as a layer with `options`; None when there was nothing to write.
    fn layer_with(
        &self,
        state: &mut StageState,
        changes: &Changes,
        options: &crate::fs::LayerOptions,
        created_by: &str,
        location: &str,
    ) -> Result<Option<crate::fs::LayerInfo>, BuildError> {
        let fs_err = |source| BuildError::Fs {
            location: location.to_string(),
            source,
        };
        let mut writer = self.store.writer().map_err(RegistryError::from)?;
        let info = self
            .phases
            .time("layer", || {
                crate::fs::write_layer(&state.root, changes, options, &mut writer)
            })
            .map_err(fs_err)?;
        let Some(info) = info else {
            return Ok(None);
        };
        let (digest, size) = writer.commit().map_err(RegistryError::from)?;
        let compression = match info.compression {
            crate::fs::Compression::Zstd => LayerCompression::Zstd,
            _ => LayerCompression::Gzip,
        };
        state.builder.add_layer(
            LayerBlob {
                digest,
                size,
                diff_id: info.diff_id,
                compression,
            },
            History {
                created: Some(self.created()),
                created_by: Some(created_by.to_string()),
                ..History::default()
            },
        );
        tracing::info!(
            "{location}: layer {digest} ({} files added, {} changed, {} deleted, {size} bytes)",
            info.files_added,
            info.files_changed,
            info.files_deleted
        );
        Ok(Some(info))
    }
}
