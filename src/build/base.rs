//! What a stage starts from and what it hands on: the base (scratch, an image or a finished
//! stage) with the key its cache chain starts from, images pulled for `COPY --from`, and the
//! check, right after a producer stage, that every path later stages copy from it exists.

use std::path::{Path, PathBuf};

use crate::cache::ParentKind;
use crate::fs::Root;
use crate::image::ImageBuilder;
use crate::plan::{Base, BuildEnv, Producer};
use crate::registry::manifest::Descriptor;
use crate::registry::{BlobStore, Reference, RegistryError};

use super::report::FoundSource;
use super::stage::{Executor, Finished, HistoryEntry};
use super::{BuildError, MissingSource};

/// A stage's starting point.
pub(super) struct PreparedBase {
    pub builder: ImageBuilder,
    pub env: BuildEnv,
    pub layers: Vec<Descriptor>,
    /// Where the stage's cache chain starts: None when the parent stage has no final key.
    pub parent: Option<(ParentKind, String)>,
    /// The base image's manifest digest (FROM an image).
    pub digest: Option<String>,
    /// Whether the producer stage's chain ended on a miss (FROM a stage).
    pub chain_missed: bool,
}

impl Executor<'_> {
    /// Fills the stage rootfs with its base.
    pub(super) fn prepare_base(
        &self,
        index: usize,
        rootfs: &Path,
    ) -> Result<PreparedBase, BuildError> {
        let planned = &self.plan.stages[index];
        match &planned.base {
            Base::Scratch => Ok(PreparedBase {
                builder: ImageBuilder::scratch(self.store, &planned.platform),
                env: BuildEnv::scratch(&self.plan.scope),
                layers: Vec::new(),
                parent: Some((ParentKind::Scratch, "scratch".into())),
                digest: None,
                chain_missed: false,
            }),
            Base::Stage(parent) => {
                let parent_done =
                    self.board
                        .finished(*parent)
                        .ok_or_else(|| BuildError::Instruction {
                            location: self.location(planned.line),
                            message: format!("stage {parent} must be built before stage {index}"),
                        })?;
                self.apply_layers(rootfs, &parent_done.layers, planned.line)?;
                Ok(PreparedBase {
                    builder: parent_done.builder.clone(),
                    env: BuildEnv::inherit(&parent_done.env),
                    layers: parent_done.layers.clone(),
                    parent: parent_done
                        .final_key
                        .map(|k| (ParentKind::Stage, k.to_string())),
                    digest: None,
                    chain_missed: parent_done.chain_missed,
                })
            }
            Base::Image(image) => {
                let pulled = self.pull(image, &planned.platform, planned.line)?;
                self.apply_layers(rootfs, pulled.layers(), planned.line)?;
                let builder = ImageBuilder::from_base(self.store, &pulled)?;
                let env = builder.config().config.env.clone().unwrap_or_default();
                let digest = pulled.digest().to_string();
                Ok(PreparedBase {
                    builder,
                    env: BuildEnv::new(Some(&env), &self.plan.scope),
                    layers: pulled.layers().to_vec(),
                    parent: Some((ParentKind::BaseImage, digest.clone())),
                    digest: Some(digest),
                    chain_missed: false,
                })
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
        // Stages building at once from one image pull it one after the other: the second finds
        // the blobs in the store instead of downloading them again.
        let gate = self
            .pulls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(format!("{reference} {platform}"))
            .or_default()
            .clone();
        let _pulling = gate.lock().unwrap_or_else(|e| e.into_inner());
        let pulled = self.phases.time("pull", || {
            self.handle.block_on(crate::registry::pull_image(
                self.client,
                &reference,
                platform,
                self.store,
            ))
        })?;
        let reused = pulled.layers().len() - pulled.layers_downloaded;
        if reused > 0 {
            tracing::info!(
                "{reference}: {reused} of {} layers already in the blob store {}, not downloaded",
                pulled.layers().len(),
                self.store.root().display()
            );
        }
        if let Ok(mut stats) = self.base_layers.lock() {
            stats.downloaded += pulled.layers_downloaded;
            stats.downloaded_bytes += pulled.bytes_downloaded;
            stats.reused += reused;
        }
        Ok(pulled)
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
    pub fn image_rootfs(&self, image: &str, line: usize) -> Result<PathBuf, BuildError> {
        // Held through the pull, so two stages copying from one image pull it once.
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
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

    /// After a producer stage: every path a later, selected stage copies from it must exist.
    /// Returns where each was found.
    pub(super) fn check_cross_stage(
        &self,
        index: usize,
        done: &Finished,
    ) -> Result<Vec<FoundSource>, BuildError> {
        let selected = self.selected();
        let root = Root::open(&done.rootfs).map_err(|e| self.fs_err(0, e))?;
        let mut found = Vec::new();
        for dep in &self.plan.deps {
            if dep.producer != Producer::Stage(index) || !selected.contains(&dep.consumer) {
                continue;
            }
            for path in &dep.paths {
                if !super::instructions::source_exists(&root, path) {
                    return Err(BuildError::MissingCrossStageSource(Box::new(
                        missing_source(self, index, dep, path, done),
                    )));
                }
                let writer = writer_of(self.store, &done.history, path);
                found.push(FoundSource {
                    consumer: dep.consumer,
                    producer: format!("stage {}", self.plan.stages[index].display_name()),
                    path: path.clone(),
                    producer_key: done.final_key.map(|k| k.to_string()),
                    written_by: writer.map(|h| h.what.clone()),
                    layer: writer.map(|h| h.layer.clone()),
                });
            }
        }
        Ok(found)
    }
}

/// The instruction that last wrote at or under `path` (wildcards cut off). Instructions that ran
/// list the paths they changed; a cache hit's layer is listed here, on demand (only layers up
/// to [`LISTED_LAYER_LIMIT`], so a huge layer is never read twice); meeting a base layer or an
/// unlisted layer first means "unknown".
fn writer_of<'h>(
    store: &BlobStore,
    history: &'h [HistoryEntry],
    path: &str,
) -> Option<&'h HistoryEntry> {
    let literal: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .take_while(|c| !super::glob::has_wildcard(c))
        .collect();
    let prefix = PathBuf::from(literal.join("/"));
    for entry in history.iter().rev() {
        let wrote = match &entry.paths {
            Some(paths) => paths.iter().any(|p| p.starts_with(&prefix)),
            None if entry.hit => layer_writes_under(store, &entry.layer, &prefix)?,
            None => return None,
        };
        if wrote {
            return Some(entry);
        }
    }
    None
}

/// Cache-hit layers larger than this are not listed for the report.
const LISTED_LAYER_LIMIT: u64 = 256 << 20;

/// Whether the layer blob `digest` (gzip or zstd) has an entry at or under `prefix`; None when
/// it cannot be told (no layer, too large, unreadable).
fn layer_writes_under(store: &BlobStore, digest: &str, prefix: &Path) -> Option<bool> {
    if digest == "no layer" {
        return Some(false);
    }
    let digest: crate::digest::Digest = digest.parse().ok()?;
    if store.size(&digest).ok()? > LISTED_LAYER_LIMIT {
        return None;
    }
    let mut file = std::io::BufReader::new(store.open_blob(&digest).ok()?);
    let magic = std::io::BufRead::fill_buf(&mut file).ok()?.to_vec();
    let reader: Box<dyn std::io::Read> = if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(file).ok()?)
    } else {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().ok()? {
        let entry = entry.ok()?;
        let name = entry.path().ok()?;
        let name = name.strip_prefix("./").unwrap_or(&name);
        if name.starts_with(prefix) {
            return Some(true);
        }
    }
    Some(false)
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
        .filter(|h| {
            if parent.as_os_str().is_empty() {
                return false;
            }
            match &h.paths {
                Some(paths) => paths.iter().any(|p| p.starts_with(&parent)),
                None => h.hit && layer_writes_under(exec.store, &h.layer, &parent) == Some(true),
            }
        })
        .map(|h| h.what.clone())
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
            .map(|h| (h.what.clone(), h.layer.clone()))
            .collect(),
    }
}
