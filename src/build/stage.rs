//! Building the stages of a plan, one after another, each in its own rootfs directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::context::BuildContext;
use crate::dockerfile::expand::Expander;
use crate::dockerfile::{Dockerfile, Instruction};
use crate::fs::{Changes, Root, Snapshotter};
use crate::image::config::History;
use crate::image::{BuiltImage, ImageBuilder, LayerBlob};
use crate::plan::{Base, BuildEnv, Plan, Producer};
use crate::registry::manifest::{Descriptor, LayerCompression};
use crate::registry::{BlobStore, Reference, RegistryClient, RegistryError};

use super::instructions::{self as instr, Outcome};
use super::report::{InstructionReport, StageReport};
use super::{BuildError, BuildRequest, MissingSource};

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
}

/// A finished stage: what later stages start from or copy from.
pub(super) struct Finished {
    pub rootfs: PathBuf,
    pub builder: ImageBuilder,
    pub env: BuildEnv,
    pub layers: Vec<Descriptor>,
    /// (location and text, layer digest or "no layer", paths changed) per instruction.
    pub history: Vec<(String, String, Vec<PathBuf>)>,
}

/// A stage being built.
pub(super) struct StageState<'a> {
    pub exec: &'a Executor<'a>,
    pub index: usize,
    pub name: String,
    pub root: Root,
    pub rootfs: PathBuf,
    pub builder: ImageBuilder,
    pub env: BuildEnv,
    pub snapshotter: Snapshotter,
    pub expander: Expander,
    pub history: Vec<(String, String, Vec<PathBuf>)>,
    pub report: StageReport,
    /// Set once a step changed the rootfs under `--single-snapshot` (the layer comes at the end).
    pub pending_single: bool,
    pub run_counter: usize,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    /// The sources of the last COPY/ADD, for its cache key.
    pub copied_sources: Vec<super::copy::SourceFile>,
}

impl Executor<'_> {
    /// The stages this build runs: those the target needs with `--skip-unused-stages`, else every
    /// stage up to the target (Kaniko's default).
    fn selected(&self) -> Vec<usize> {
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

    /// Builds every selected stage and returns the target's image.
    pub fn run_stages(&self) -> (Result<BuiltImage, BuildError>, Vec<StageReport>) {
        let mut finished: BTreeMap<usize, Finished> = BTreeMap::new();
        let mut reports = Vec::new();
        let mut images: BTreeMap<String, PathBuf> = BTreeMap::new();
        for index in self.selected() {
            let stage = &self.plan.stages[index];
            tracing::info!(
                "building stage {} ({}) from {}",
                index,
                stage.display_name(),
                stage.from
            );
            let (result, report) = self.build_stage(index, &finished, &mut images);
            reports.push(report);
            match result {
                Ok(done) => {
                    if let Err(e) = self.check_cross_stage(index, &done) {
                        return (Err(e), reports);
                    }
                    finished.insert(index, done);
                }
                Err(e) => return (Err(e), reports),
            }
        }
        let target = self.plan.target;
        let Some(done) = finished.remove(&target) else {
            return (
                Err(BuildError::Instruction {
                    location: self.dockerfile.file.clone(),
                    message: format!("target stage {target} was not built"),
                }),
                reports,
            );
        };
        let mut builder = done.builder;
        if !self.request.labels.is_empty() {
            let labels = builder.config_mut().config.labels.get_or_insert_default();
            for (k, v) in &self.request.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        let created = self.created();
        builder.config_mut().created = Some(created);
        (builder.build().map_err(BuildError::from), reports)
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

    fn location(&self, line: usize) -> String {
        format!("{}:{line}", self.dockerfile.file)
    }

    /// Builds one stage; its report comes back whether it succeeded or not.
    fn build_stage(
        &self,
        index: usize,
        finished: &BTreeMap<usize, Finished>,
        images: &mut BTreeMap<String, PathBuf>,
    ) -> (Result<Finished, BuildError>, StageReport) {
        let planned = &self.plan.stages[index];
        let report = StageReport::new(index, planned.display_name(), planned.from.clone());
        let started = Instant::now();
        let rootfs = self
            .work
            .join("stages")
            .join(index.to_string())
            .join("rootfs");
        let fail = |e: BuildError, report: StageReport| (Err(e), report);
        if let Err(source) = std::fs::create_dir_all(&rootfs) {
            return fail(
                BuildError::WorkDir {
                    path: rootfs,
                    source,
                },
                report,
            );
        }
        let base = match self.prepare_base(index, &rootfs, finished) {
            Ok(base) => base,
            Err(e) => return fail(e, report),
        };
        let (mut builder, env, base_layers) = base;
        // As BuildKit: an image whose base defines no PATH gets the default one.
        let env_now = env.config_env();
        if builder.config().config.env.as_deref().unwrap_or_default() != env_now.as_slice() {
            builder.config_mut().config.env = Some(env_now);
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
            root,
            rootfs: rootfs.clone(),
            builder,
            env,
            snapshotter,
            expander: Expander::new(self.dockerfile.escape),
            history: Vec::new(),
            report,
            pending_single: false,
            run_counter: 0,
            cmd_set: false,
            copied_sources: Vec::new(),
        };
        for desc in &base_layers {
            state
                .history
                .push(("base image".into(), desc.digest.to_string(), Vec::new()));
        }
        // ONBUILD triggers stored in a base *image* run first; a base *stage*'s are in the steps.
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
        for trigger in triggers {
            if let Err(e) = self.run_trigger(&mut state, &trigger, planned.line, images, finished) {
                return fail(e, state.report);
            }
        }
        let steps = crate::plan::steps(self.dockerfile, index, &planned.base);
        for step in steps {
            let location = self.location(step.lines.0);
            let result = self.run_step(
                &mut state,
                step.instruction,
                step.original,
                &location,
                images,
                finished,
            );
            if let Err(e) = result {
                return fail(e, state.report);
            }
        }
        if let Err(e) = instr::finish_single_snapshot(&mut state) {
            return fail(e, state.report);
        }
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
            }),
            state.report,
        )
    }

    fn fs_err(&self, line: usize, source: crate::fs::FsError) -> BuildError {
        BuildError::Fs {
            location: self.location(line),
            source,
        }
    }

    /// Fills the stage rootfs with its base and returns the image builder and environment.
    fn prepare_base(
        &self,
        index: usize,
        rootfs: &Path,
        finished: &BTreeMap<usize, Finished>,
    ) -> Result<(ImageBuilder, BuildEnv, Vec<Descriptor>), BuildError> {
        let planned = &self.plan.stages[index];
        match &planned.base {
            Base::Scratch => Ok((
                ImageBuilder::scratch(self.store, &planned.platform),
                BuildEnv::scratch(&self.plan.scope),
                Vec::new(),
            )),
            Base::Stage(parent) => {
                let parent_done = finished
                    .get(parent)
                    .ok_or_else(|| BuildError::Instruction {
                        location: self.location(planned.line),
                        message: format!("stage {parent} must be built before stage {index}"),
                    })?;
                self.apply_layers(rootfs, &parent_done.layers, planned.line)?;
                Ok((
                    parent_done.builder.clone(),
                    BuildEnv::inherit(&parent_done.env),
                    parent_done.layers.clone(),
                ))
            }
            Base::Image(image) => {
                let pulled = self.pull(image, &planned.platform, planned.line)?;
                self.apply_layers(rootfs, pulled.layers(), planned.line)?;
                let builder = ImageBuilder::from_base(self.store, &pulled)?;
                let env = builder.config().config.env.clone().unwrap_or_default();
                let layers = pulled.layers().to_vec();
                Ok((builder, BuildEnv::new(Some(&env), &self.plan.scope), layers))
            }
        }
    }

    pub fn pull(
        &self,
        image: &str,
        platform: &crate::platform::Platform,
        line: usize,
    ) -> Result<crate::registry::PulledImage, BuildError> {
        let reference: Reference = image
            .parse()
            .map_err(|e| BuildError::Registry(RegistryError::from(e)))?;
        tracing::info!("pulling {reference} for {platform}");
        let _ = line;
        Ok(self.phases.time("pull", || {
            self.handle.block_on(crate::registry::pull_image(
                self.client,
                &reference,
                platform,
                self.store,
            ))
        })?)
    }

    /// Extracts layer blobs from the store into a rootfs, in order.
    pub fn apply_layers(
        &self,
        rootfs: &Path,
        layers: &[Descriptor],
        line: usize,
    ) -> Result<(), BuildError> {
        let root = Root::open(rootfs).map_err(|e| self.fs_err(line, e))?;
        for layer in layers {
            let file = self
                .store
                .open_blob(&layer.digest)
                .map_err(RegistryError::from)?;
            self.phases
                .time("extract", || {
                    crate::fs::extract_layer(
                        &root,
                        &layer.digest.to_string(),
                        std::io::BufReader::new(file),
                    )
                })
                .map_err(|e| self.fs_err(line, e))?;
        }
        Ok(())
    }

    /// The rootfs of an external image used by `COPY --from`, pulled and extracted once.
    pub fn image_rootfs(
        &self,
        image: &str,
        line: usize,
        images: &mut BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, BuildError> {
        if let Some(dir) = images.get(image) {
            return Ok(dir.clone());
        }
        let dir = self
            .work
            .join("images")
            .join(images.len().to_string())
            .join("rootfs");
        std::fs::create_dir_all(&dir).map_err(|source| BuildError::WorkDir {
            path: dir.clone(),
            source,
        })?;
        let pulled = self.pull(image, &self.request.platform, line)?;
        self.apply_layers(&dir, pulled.layers(), line)?;
        images.insert(image.to_string(), dir.clone());
        Ok(dir)
    }

    fn run_trigger(
        &self,
        state: &mut StageState,
        trigger: &str,
        line: usize,
        images: &mut BTreeMap<String, PathBuf>,
        finished: &BTreeMap<usize, Finished>,
    ) -> Result<(), BuildError> {
        let location = format!("{} (ONBUILD of the base image)", self.location(line));
        let parsed = crate::dockerfile::parse(&format!("FROM scratch\n{trigger}\n"), "ONBUILD")
            .map_err(|e| BuildError::Instruction {
                location: location.clone(),
                message: format!("cannot parse the trigger {trigger:?}: {e}"),
            })?;
        let Some(spanned) = parsed.stages.first().and_then(|s| s.instructions.first()) else {
            return Ok(());
        };
        self.run_step(state, &spanned.node, trigger, &location, images, finished)
    }

    fn run_step(
        &self,
        state: &mut StageState,
        instruction: &Instruction,
        original: &str,
        location: &str,
        images: &mut BTreeMap<String, PathBuf>,
        finished: &BTreeMap<usize, Finished>,
    ) -> Result<(), BuildError> {
        let started = Instant::now();
        let expansion = state
            .env
            .expand_instruction(instruction, &state.expander)
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
        let outcome = instr::execute(state, &expanded, location, images, finished)?;
        let mut entry = InstructionReport::new(location, original, &expanded.to_string());
        entry.duration_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Outcome::Config { created_by } => {
                state.builder.add_empty_history(&created_by);
                if let Some(h) = state.builder.config_mut().history.last_mut() {
                    h.created = Some(self.created());
                }
                state.history.push((
                    format!("{location}: {expanded}"),
                    "no layer".into(),
                    Vec::new(),
                ));
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
                let described = match &layer {
                    Some(info) => {
                        entry.layer = Some(info.clone());
                        info.digest.to_string()
                    }
                    None => "no layer".into(),
                };
                state
                    .history
                    .push((format!("{location}: {expanded}"), described, paths));
            }
        }
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
            state.builder.add_empty_history(created_by);
            if let Some(h) = state.builder.config_mut().history.last_mut() {
                h.created = Some(self.created());
            }
            return Ok(None);
        }
        self.write_stage_layer(state, changes, created_by, location)
    }

    /// Writes `changes` as a layer into the store and adds it to the stage's image.
    pub fn write_stage_layer(
        &self,
        state: &mut StageState,
        changes: &Changes,
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
                crate::fs::write_layer(&state.root, changes, &self.request.layer, &mut writer)
            })
            .map_err(fs_err)?;
        let Some(info) = info else {
            state.builder.add_empty_history(created_by);
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

    /// After a producer stage: every path a later, selected stage copies from it must exist.
    fn check_cross_stage(&self, index: usize, done: &Finished) -> Result<(), BuildError> {
        let selected = self.selected();
        let root = Root::open(&done.rootfs).map_err(|e| self.fs_err(0, e))?;
        for dep in &self.plan.deps {
            if dep.producer != Producer::Stage(index) || !selected.contains(&dep.consumer) {
                continue;
            }
            for path in &dep.paths {
                if instr::source_exists(&root, path) {
                    continue;
                }
                return Err(BuildError::MissingCrossStageSource(Box::new(
                    missing_source(self, index, dep, path, done),
                )));
            }
        }
        Ok(())
    }
}

fn missing_source(
    exec: &Executor,
    index: usize,
    dep: &crate::plan::CrossStageDep,
    path: &str,
    done: &Finished,
) -> MissingSource {
    let root = Root::open(&done.rootfs).ok();
    // The closest parent that exists: the instructions that wrote under it are the suspects.
    let mut parent = PathBuf::from(path.trim_start_matches('/'));
    while let Some(p) = parent.parent().map(Path::to_path_buf) {
        parent = p;
        if parent.as_os_str().is_empty()
            || root
                .as_ref()
                .is_some_and(|r| r.try_lstat(&parent).ok().flatten().is_some())
        {
            break;
        }
    }
    let suspects: Vec<String> = done
        .history
        .iter()
        .filter(|(_, _, paths)| {
            paths
                .iter()
                .any(|p| p.starts_with(&parent) && !parent.as_os_str().is_empty())
        })
        .map(|(what, _, _)| what.clone())
        .collect();
    let suspects = suspects.last().cloned().into_iter().collect();
    MissingSource {
        producer: exec.plan.stages[index].display_name(),
        consumer: exec.plan.stages[dep.consumer].display_name(),
        path: path.to_string(),
        needed_by: format!("{}: {}", exec.location(dep.line), dep.instruction),
        suspects,
        layers: done
            .history
            .iter()
            .map(|(what, layer, _)| (what.clone(), layer.clone()))
            .collect(),
    }
}
