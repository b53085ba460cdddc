//! `RUN --mount` (BuildKit's syntax): what each mount becomes for the sandbox.
//!
//! - `type=cache`: a directory that outlives the build, under `--cache-dir` when it exists (a
//!   PVC), else under the work root (`--kaniko-dir`), one per `id` (default: the target).
//!   `sharing=locked` holds an exclusive lock on it for the RUN, `private` uses a throw-away
//!   directory when another build holds it, `shared` (the default) neither.
//! - `type=tmpfs`: an empty tmpfs (`size` honoured).
//! - `type=bind`: `source` (default: the root) of the build context, a stage or an image
//!   (`from`), copied into a scratch directory with COPY's rules (`.dockerignore` applies to the
//!   context, owners as COPY gives them) and bound read-only, or writable with `rw` (writes are
//!   discarded with the copy). Its files are part of the RUN's cache key ([`super::keys`]).
//!
//! Relative targets are relative to WORKDIR. Nothing a mount holds reaches a layer: the mounts
//! live in the RUN's mount namespace and their mount points are removed after it.
//!
//! Left out: `type=secret` and `type=ssh` (no `--secret`/`--ssh` flags yet), and `from`/`source`
//! for cache mounts; each is refused with "not supported yet".

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::context::dockerignore::clean;
use crate::dockerfile::run_options::{Mount, MountType, Sharing};
use crate::exec::{RunMount, RunMountKind};
use crate::fs::{FileKind, Root};

use super::BuildError;
use super::add_copy::source_tree;
use super::copy::{self, CopyRequest};
use super::instructions::{current_workdir, fs_err, instruction_err, not_supported};
use super::stage::StageState;

/// The mounts of one RUN and what keeps them valid until it ends.
pub(super) struct PreparedMounts {
    pub mounts: Vec<RunMount>,
    /// Locks held on `sharing=locked` (and `private`) cache directories.
    _locks: Vec<File>,
    /// Scratch directories (bind copies, private caches) removed when the RUN is done.
    scratch: Vec<PathBuf>,
}

impl Drop for PreparedMounts {
    fn drop(&mut self) {
        for dir in &self.scratch {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::debug!("removing {}: {e}", dir.display());
            }
        }
    }
}

/// The absolute target of a mount: relative ones are relative to WORKDIR.
pub(super) fn target_of(m: &Mount, workdir: &str) -> Option<String> {
    let target = m.target.as_deref()?;
    Some(if target.starts_with('/') {
        clean(target)
    } else {
        clean(&format!("{}/{target}", workdir.trim_end_matches('/')))
    })
}

/// Prepares every `--mount` of a RUN (numbered by the stage's `run_counter`).
pub(super) fn prepare(
    state: &StageState,
    mounts: &[Mount],
    location: &str,
) -> Result<PreparedMounts, BuildError> {
    let mut out = PreparedMounts {
        mounts: Vec::new(),
        _locks: Vec::new(),
        scratch: Vec::new(),
    };
    let workdir = current_workdir(state);
    for (i, m) in mounts.iter().enumerate() {
        // A secret or an SSH agent needs a flag to come from; kbuild has none yet. (Checked
        // first: they need no target.)
        let unsupported = || not_supported("RUN --mount=type=secret and type=ssh");
        if matches!(m.kind, MountType::Secret | MountType::Ssh) {
            return Err(unsupported());
        }
        let target = target_of(m, &workdir).filter(|t| t != "/").ok_or_else(|| {
            instruction_err(location, format!("--mount={}: needs a target", m.spec))
        })?;
        let kind = match m.kind {
            MountType::Tmpfs => RunMountKind::Tmpfs { size: m.size },
            MountType::Cache => cache_dir(state, m, &target, location, &mut out)?,
            MountType::Bind => bind_copy(state, m, i, location, &mut out)?,
            MountType::Secret | MountType::Ssh => return Err(unsupported()),
        };
        out.mounts.push(RunMount { target, kind });
    }
    Ok(out)
}

/// Where cache mounts live: the persistent `--cache-dir` when it exists, else the work root.
fn cache_root(state: &StageState) -> PathBuf {
    let exec = state.exec;
    match &exec.request.cache_dir {
        Some(dir) if dir.is_dir() => dir.join("run-cache"),
        _ => exec.work.parent().unwrap_or(exec.work).join("run-cache"),
    }
}

fn cache_dir(
    state: &StageState,
    m: &Mount,
    target: &str,
    location: &str,
    out: &mut PreparedMounts,
) -> Result<RunMountKind, BuildError> {
    if m.from.is_some() || m.source.is_some() {
        return Err(not_supported("RUN --mount=type=cache with from or source"));
    }
    let id = m.id.clone().unwrap_or_else(|| target.to_string());
    // The id names a directory by its digest: no id can reach outside the cache root.
    let name = crate::digest::Digest::of(id.as_bytes()).hex();
    let root = cache_root(state);
    let io_err = |path: &Path, source: std::io::Error| BuildError::WorkDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
    let lock_path = root.join(format!("{name}.lock"));
    let lock = File::create(&lock_path).map_err(|e| io_err(&lock_path, e))?;
    let mut dir = root.join(&name);
    match m.sharing.unwrap_or(Sharing::Shared) {
        Sharing::Shared => {}
        Sharing::Locked => {
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| io_err(&lock_path, e.into()))?;
            out._locks.push(lock);
        }
        Sharing::Private => {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => out._locks.push(lock),
                Err(_) => {
                    // Someone else uses it: this RUN gets a cache of its own, thrown away.
                    dir = state
                        .exec
                        .work
                        .join("private-cache")
                        .join(format!("{}-{}-{name}", state.index, state.run_counter));
                    out.scratch.push(dir.clone());
                }
            }
        }
    }
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let mode = m.mode.unwrap_or(0o755);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| io_err(&dir, e))?;
        std::os::unix::fs::chown(&dir, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
            .map_err(|e| io_err(&dir, e))?;
        tracing::info!("{location}: new cache mount {id:?} at {}", dir.display());
    }
    Ok(RunMountKind::Bind {
        source: dir,
        writable: !m.readonly,
        dir: true,
    })
}

/// Copies a bind mount's source into a scratch directory, with COPY's rules.
fn bind_copy(
    state: &StageState,
    m: &Mount,
    i: usize,
    location: &str,
    out: &mut PreparedMounts,
) -> Result<RunMountKind, BuildError> {
    let tree = source_tree(state, m.from.as_deref(), location)?;
    let source = m.source.clone().unwrap_or_else(|| ".".into());
    let dir = state
        .exec
        .work
        .join("mounts")
        .join(format!("{}-{}-{i}", state.index, state.run_counter));
    // 0755 whatever the umask, as BuildKit's mounts: a non-root USER reads them.
    std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        })
        .map_err(|source| BuildError::WorkDir {
            path: dir.clone(),
            source,
        })?;
    out.scratch.push(dir.clone());
    let copy_err = |source| BuildError::Copy {
        location: location.to_string(),
        source,
    };
    let is_dir = tree
        .root
        .stat(clean(&format!("/{source}")).trim_start_matches('/'))
        .map(|s| s.kind == FileKind::Dir)
        .map_err(|e| fs_err(location)(e))?;
    let dst = Root::open(&dir).map_err(fs_err(location))?;
    let patterns = [source.clone()];
    let request = CopyRequest {
        patterns: &patterns,
        inline: &[],
        dest: "/",
        workdir: "/",
        chown: None,
        chmod: None,
        unpack: false,
    };
    state
        .exec
        .phases
        .time("copy", || copy::copy(&tree, &dst, &request))
        .map_err(copy_err)?;
    let bound = if is_dir {
        dir
    } else {
        let name = Path::new(&source)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        dir.join(name)
    };
    Ok(RunMountKind::Bind {
        source: bound,
        writable: !m.readonly,
        dir: is_dir,
    })
}
