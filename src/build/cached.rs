//! The executor's side of the layer cache: what a hit does to a stage, what a miss stores, and
//! what the report says about each.
//!
//! A hit applies the entry's layer to the rootfs (so the rootfs still equals the layer stack,
//! DESIGN.md decision 2) and adds the blob to the image as it is, with the history entry the
//! instruction would have written; an entry without a layer adds an empty-layer history entry,
//! as the instruction did when it ran. The image is therefore the same whether the instruction
//! hit or ran. After a hit the snapshot index is stale; it is rebuilt once, before the next
//! instruction that runs, so a run of hits costs one walk.

use std::io::BufReader;
use std::time::SystemTime;

use crate::cache::{Background, Entry, EntryLayer, FileCounts, MissReason, NewEntry};
use crate::dockerfile::Instruction;
use crate::fs::{Compression, LayerInfo};
use crate::image::LayerBlob;
use crate::image::config::History;
use crate::registry::RegistryError;
use crate::registry::manifest::{Descriptor, LayerCompression};

use super::BuildError;
use super::keys::{KeyOptions, Policy, StepKey};
use super::report::{CacheReason, CacheReport, CacheStatus};
use super::stage::{Executor, StageState};

/// The cache as a build uses it.
pub(super) struct CacheContext {
    pub background: Background,
    pub options: KeyOptions,
    /// False with `--no-push-cache`.
    pub push: bool,
}

/// The report of a keyed instruction before it is probed or run.
pub(super) fn report_for(key: &StepKey) -> CacheReport {
    let (status, reason) = match key.policy {
        Policy::Probe => (CacheStatus::Miss, Some(CacheReason::NoEntry)),
        Policy::Disabled => (CacheStatus::Disabled, Some(CacheReason::ProbingDisabled)),
        Policy::Metadata => (CacheStatus::Disabled, Some(CacheReason::NotCacheable)),
    };
    CacheReport {
        key: key.key.to_string(),
        preimage: key.preimage.clone(),
        status,
        reason,
        entry: None,
        created: None,
        detail: None,
        push: None,
    }
}

/// Records a miss: `parent_missed` when an earlier probed instruction of the chain missed too.
pub(super) fn record_miss(
    report: &mut CacheReport,
    state: &mut StageState,
    reason: MissReason,
    detail: Option<String>,
    created: Option<String>,
) {
    report.status = CacheStatus::Miss;
    report.reason = Some(match reason {
        MissReason::Expired => CacheReason::Expired,
        MissReason::NoEntry if state.chain_missed => CacheReason::ParentMissed,
        MissReason::NoEntry => CacheReason::NoEntry,
    });
    report.detail = detail;
    report.created = created;
    state.chain_missed = true;
}

/// Applies a hit to the stage: its layer onto the rootfs and into the image, and the config
/// change a WORKDIR makes. Returns the layer as the report shows it.
pub(super) fn apply_hit(
    exec: &Executor,
    state: &mut StageState,
    expanded: &Instruction,
    entry: &Entry,
    location: &str,
) -> Result<Option<LayerInfo>, BuildError> {
    let created_by = match expanded {
        Instruction::Run(run) => super::instructions::run_command(state, run, location)?.created_by,
        Instruction::Workdir(path) => {
            let resolved = super::instructions::workdir_path(state, path);
            state.builder.config_mut().config.working_dir = Some(resolved);
            expanded.to_string()
        }
        _ => expanded.to_string(),
    };
    let created = Some(exec.created());
    let Some(layer) = &entry.layer else {
        tracing::info!("{location}: cache hit, no layer");
        return exec.add_empty_history(state, &created_by, location);
    };
    let digest = layer.descriptor.digest;
    let file = exec.store.open_blob(&digest).map_err(RegistryError::from)?;
    let extracted = exec
        .phases
        .time("extract", || {
            crate::fs::extract_layer(&state.root, &digest.to_string(), BufReader::new(file))
        })
        .map_err(|source| BuildError::Fs {
            location: location.to_string(),
            source,
        })?;
    state.index_stale = true;
    if extracted.diff_id != layer.diff_id {
        // The blob is what its digest says; the entry's config is not. The image follows the blob.
        tracing::warn!(
            "{location}: cache entry {} says diffID {} but its layer is {}; using the layer's",
            entry.key,
            layer.diff_id,
            extracted.diff_id
        );
    }
    let zstd = layer.is_zstd();
    state.builder.add_layer(
        LayerBlob {
            digest,
            size: layer.descriptor.size,
            diff_id: extracted.diff_id,
            compression: if zstd {
                LayerCompression::Zstd
            } else {
                LayerCompression::Gzip
            },
        },
        History {
            created,
            created_by: Some(created_by),
            ..History::default()
        },
    );
    let compression = if zstd {
        Compression::Zstd
    } else {
        Compression::Gzip
    };
    let files = entry.files.unwrap_or(FileCounts {
        added: extracted.files,
        changed: 0,
        deleted: extracted.whiteouts,
    });
    tracing::info!(
        "{location}: cache hit, layer {digest} ({} bytes) from {}",
        layer.descriptor.size,
        entry.created
    );
    Ok(Some(LayerInfo {
        diff_id: extracted.diff_id,
        digest,
        compressed_size: layer.descriptor.size,
        uncompressed_size: extracted.tar_bytes,
        compression,
        media_type: compression.media_type(),
        files_added: files.added,
        files_changed: files.changed,
        files_deleted: files.deleted,
        entries: extracted.entries,
    }))
}

/// The layer a cache entry keeps. The empty tar of `--force-build-metadata` is stored as "no
/// layer", so one entry serves builds with and without the flag (a hit without a layer writes
/// the empty tar again). Without the flag a layer is stored as written, even one whose changes
/// all had nothing to put in a tar (sockets): its hit must give the image the miss gave.
fn stored_layer(layer: Option<&LayerInfo>, forced: bool) -> Option<&LayerInfo> {
    layer.filter(|info| !(forced && info.entries == 0))
}

/// Stores the entry of a probed instruction that missed and ran (in the background).
pub(super) fn store_miss(
    cache: &CacheContext,
    state: &StageState,
    key: &StepKey,
    created_by: &str,
    layer: Option<&LayerInfo>,
    report: &mut CacheReport,
) {
    report.entry = Some(cache.background.store().repo().entry_name(&key.key));
    let layer = stored_layer(layer, state.exec.request.force_build_metadata);
    if !cache.push {
        report.push = Some("skipped".into());
        return;
    }
    let entry = NewEntry {
        key: key.key,
        preimage: key.preimage.clone(),
        instruction: created_by.to_string(),
        platform: state.platform.clone(),
        layer: layer.map(|info| EntryLayer {
            descriptor: Descriptor::new(info.media_type, info.digest, info.compressed_size),
            diff_id: info.diff_id,
        }),
        files: layer.map(|info| FileCounts {
            added: info.files_added,
            changed: info.files_changed,
            deleted: info.files_deleted,
        }),
        created: SystemTime::now(),
    };
    cache.background.push(entry);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::fs::Compression;

    fn layer(entries: u64) -> LayerInfo {
        LayerInfo {
            diff_id: Digest::of(b"tar"),
            digest: Digest::of(b"blob"),
            compressed_size: 32,
            uncompressed_size: 1024,
            compression: Compression::Gzip,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
            files_added: 1,
            files_changed: 0,
            files_deleted: 0,
            entries,
        }
    }

    /// Regression test: every 0-entry layer used to be stored as "no layer", so a RUN that only
    /// made a socket (skipped by the tar writer) gave a layer cold and none warm.
    #[test]
    fn only_the_forced_empty_tar_is_stored_as_no_layer() {
        let empty = layer(0);
        let full = layer(3);
        assert!(stored_layer(Some(&empty), false).is_some());
        assert!(stored_layer(Some(&empty), true).is_none());
        assert!(stored_layer(Some(&full), true).is_some());
        assert!(stored_layer(None, false).is_none());
    }
}
