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
//! - `type=secret`: a `--secret` value as a read-only file (`/run/secrets/<id>` by default, mode
//!   0400, root) and/or an environment variable (`env=`); a secret nobody gave is skipped unless
//!   `required`. Secrets are in no layer, key, history line or report.
//!
//! Left out: `type=ssh` (no `--ssh` flag yet), and `from`/`source` for cache mounts; each is
//! refused with "not supported yet".

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
    /// Scratch directories (bind copies, private caches, secret files) removed when the RUN is
    /// done.
    scratch: Vec<PathBuf>,
    /// `KEY=VALUE`s the RUN gets on top of its environment (secrets with `env=`).
    pub env: Vec<String>,
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
        env: Vec::new(),
    };
    let workdir = current_workdir(state);
    // The mounts to make, with their targets; a secret given to no `--secret` (not required)
    // or exposed only as a variable makes none.
    let mut planned: Vec<(&Mount, String)> = Vec::new();
    for m in mounts {
        let target = match m.kind {
            MountType::Ssh => return Err(not_supported("RUN --mount=type=ssh")),
            MountType::Secret => match secret_target(state, m, &workdir, location, &mut out)? {
                Some(target) => target,
                None => continue,
            },
            _ => target_of(m, &workdir).filter(|t| t != "/").ok_or_else(|| {
                instruction_err(location, format!("--mount={}: needs a target", m.spec))
            })?,
        };
        // The sandbox mounts these itself; a mount there would land on its tmpfs or on the
        // kernel's own files (/proc/self/root leads to the host).
        if ["/proc", "/sys", "/dev"]
            .iter()
            .any(|top| target == *top || target.starts_with(&format!("{top}/")))
        {
            return Err(instruction_err(
                location,
                format!("--mount={}: {target} belongs to the RUN's sandbox", m.spec),
            ));
        }
        planned.push((m, target));
    }
    let locks = cache_locks(state, &planned, location)?;
    for (i, (m, target)) in planned.iter().enumerate() {
        let kind = match m.kind {
            MountType::Tmpfs => RunMountKind::Tmpfs { size: m.size },
            MountType::Cache => cache_dir(state, m, target, location, &locks, &mut out)?,
            MountType::Bind => bind_copy(state, m, i, location, &mut out)?,
            MountType::Secret => secret_file(state, m, i, location, &mut out)?,
            MountType::Ssh => return Err(not_supported("RUN --mount=type=ssh")),
        };
        out.mounts.push(RunMount {
            target: target.clone(),
            kind,
        });
    }
    out._locks = locks.into_values().flatten().collect();
    // Parents before children, as BuildKit mounts them: `target=.` then `target=node_modules`
    // puts the cache inside the bind, whatever the order written.
    out.mounts.sort_by(|a, b| {
        let depth = |t: &str| t.split('/').filter(|c| !c.is_empty()).count();
        depth(&a.target).cmp(&depth(&b.target))
    });
    stub_nested_targets(&out.mounts, location)?;
    Ok(out)
}

/// A mount inside a read-only bind needs its mount point in the bind's (scratch) copy.
fn stub_nested_targets(mounts: &[RunMount], location: &str) -> Result<(), BuildError> {
    for outer in mounts {
        let RunMountKind::Bind {
            source, dir: true, ..
        } = &outer.kind
        else {
            continue;
        };
        let prefix = format!("{}/", outer.target.trim_end_matches('/'));
        let root = Root::open(source).map_err(fs_err(location))?;
        for inner in mounts {
            let Some(rel) = inner.target.strip_prefix(&prefix) else {
                continue;
            };
            // The copy may hold symlinks; a mount point is never made through one.
            let mut walked = PathBuf::new();
            for part in Path::new(rel).components() {
                walked.push(part);
                let stat = root.try_lstat(&walked).map_err(fs_err(location))?;
                if stat.is_some_and(|s| s.kind == FileKind::Symlink) {
                    return Err(instruction_err(
                        location,
                        format!(
                            "RUN --mount target {}: {}/{} is a symlink (a mount target may not \
                             go through a symlink)",
                            inner.target,
                            outer.target.trim_end_matches('/'),
                            walked.display()
                        ),
                    ));
                }
            }
            let parent_rel = Path::new(rel).parent().unwrap_or(Path::new(""));
            root.create_dir_all(parent_rel, 0o755)
                .map_err(fs_err(location))?;
            if inner.is_dir() {
                root.create_dir_all(rel, 0o755).map_err(fs_err(location))?;
            } else if root.try_lstat(rel).map_err(fs_err(location))?.is_none() {
                root.create_file(rel, 0o644).map_err(fs_err(location))?;
            }
        }
    }
    Ok(())
}

/// Where cache mounts live: the persistent `--cache-dir` when it exists and is writable, else
/// the work root.
fn cache_root(state: &StageState) -> PathBuf {
    let exec = state.exec;
    let fallback = exec.work.parent().unwrap_or(exec.work).join("run-cache");
    match &exec.request.cache_dir {
        Some(dir) if dir.is_dir() => {
            let root = dir.join("run-cache");
            match std::fs::create_dir_all(&root) {
                Ok(()) => root,
                Err(e) => {
                    tracing::warn!(
                        "cache mounts: {} is not usable ({e}); keeping them in {}",
                        root.display(),
                        fallback.display()
                    );
                    fallback
                }
            }
        }
        _ => fallback,
    }
}

/// The directory name of a cache id: its digest, so no id can reach outside the cache root.
fn cache_name(m: &Mount, target: &str) -> String {
    // BuildKit's default id is the target as written (cleaned), relative or not.
    let id =
        m.id.clone()
            .or_else(|| m.target.as_deref().map(clean_relative))
            .unwrap_or_else(|| target.to_string());
    crate::digest::Digest::of(id.as_bytes()).hex()
}

fn clean_relative(target: &str) -> String {
    if target.starts_with('/') {
        clean(target)
    } else {
        clean(&format!("/{target}"))
            .trim_start_matches('/')
            .to_string()
    }
}

/// Takes the locks the RUN's cache mounts ask for, each cache once and in name order (two
/// mounts of one id in a RUN, or two stages taking two ids in opposite orders, cannot deadlock):
/// `locked` exclusive, `private` exclusive if free (else the mount gets a throw-away directory:
/// None here), `shared` shared, so `locked` excludes `shared` users too.
fn cache_locks(
    state: &StageState,
    planned: &[(&Mount, String)],
    location: &str,
) -> Result<std::collections::BTreeMap<String, Option<File>>, BuildError> {
    let mut wanted: std::collections::BTreeMap<String, Sharing> = Default::default();
    for (m, target) in planned {
        if m.kind != MountType::Cache {
            continue;
        }
        let sharing = m.sharing.unwrap_or(Sharing::Shared);
        let rank = |s: Sharing| match s {
            Sharing::Shared => 0,
            Sharing::Private => 1,
            Sharing::Locked => 2,
        };
        let entry = wanted.entry(cache_name(m, target)).or_insert(sharing);
        if rank(sharing) > rank(*entry) {
            *entry = sharing;
        }
    }
    if wanted.is_empty() {
        return Ok(Default::default());
    }
    let root = cache_root(state);
    let err = |path: &Path, e: std::io::Error| {
        instruction_err(location, format!("cache mount {}: {e}", path.display()))
    };
    std::fs::create_dir_all(&root).map_err(|e| err(&root, e))?;
    let mut locks = std::collections::BTreeMap::new();
    for (name, sharing) in wanted {
        let path = root.join(format!("{name}.lock"));
        let file = File::create(&path).map_err(|e| err(&path, e))?;
        use rustix::fs::{FlockOperation, flock};
        let held = match sharing {
            Sharing::Shared => flock(&file, FlockOperation::LockShared).map(|()| true),
            Sharing::Locked => {
                if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
                    tracing::info!("{location}: waiting for the cache mount another build holds");
                    flock(&file, FlockOperation::LockExclusive).map(|()| true)
                } else {
                    Ok(true)
                }
            }
            Sharing::Private => Ok(flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()),
        }
        .map_err(|e| err(&path, e.into()))?;
        locks.insert(name, held.then_some(file));
    }
    Ok(locks)
}

fn cache_dir(
    state: &StageState,
    m: &Mount,
    target: &str,
    location: &str,
    locks: &std::collections::BTreeMap<String, Option<File>>,
    out: &mut PreparedMounts,
) -> Result<RunMountKind, BuildError> {
    if m.from.is_some() || m.source.is_some() {
        return Err(not_supported("RUN --mount=type=cache with from or source"));
    }
    let name = cache_name(m, target);
    let err = |path: &Path, e: std::io::Error| {
        instruction_err(location, format!("cache mount {}: {e}", path.display()))
    };
    let dir = match locks.get(&name) {
        // `private` and someone else has it: this RUN gets a cache of its own, thrown away.
        Some(None) => {
            let dir = state
                .exec
                .work
                .join("private-cache")
                .join(format!("{}-{}-{name}", state.index, state.run_counter));
            out.scratch.push(dir.clone());
            dir
        }
        _ => cache_root(state).join(&name),
    };
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        let mode = m.mode.unwrap_or(0o755);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| err(&dir, e))?;
        let (uid, gid) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
        match std::os::unix::fs::chown(&dir, Some(uid), Some(gid)) {
            Ok(()) => {}
            // Not root (a rootless build): the directory stays the builder's, which a user
            // namespace shows as root.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::debug!(
                    "cache mount {}: not owned by {uid}:{gid}: {e}",
                    dir.display()
                );
            }
            Err(e) => return Err(err(&dir, e)),
        }
        tracing::info!("{location}: new cache mount at {}", dir.display());
    }
    Ok(RunMountKind::Bind {
        source: dir,
        writable: !m.readonly,
        dir: true,
    })
}

/// The id of a secret mount (`id`, else `source`, else the target's file name).
fn secret_id(m: &Mount) -> Option<String> {
    m.id.clone().or_else(|| m.source.clone()).or_else(|| {
        m.target
            .as_deref()
            .and_then(|t| Path::new(t).file_name())
            .map(|n| n.to_string_lossy().into_owned())
    })
}

/// Where a secret mount goes (`/run/secrets/<id>` by default); None when there is nothing to
/// mount: the secret was not given and is not required, or it is only a variable (`env=`
/// without a target). A variable is added to the RUN's environment here.
fn secret_target(
    state: &StageState,
    m: &Mount,
    workdir: &str,
    location: &str,
    out: &mut PreparedMounts,
) -> Result<Option<String>, BuildError> {
    let id = secret_id(m).ok_or_else(|| {
        instruction_err(
            location,
            format!("--mount={}: a secret needs an id", m.spec),
        )
    })?;
    let Some(value) = state.exec.request.secrets.get(&id) else {
        if m.required {
            return Err(instruction_err(
                location,
                format!(
                    "--mount={}: the secret {id:?} is required and was not given\nhint: pass \
                     --secret id={id},src=PATH (or env=VAR)",
                    m.spec
                ),
            ));
        }
        tracing::info!("{location}: secret {id:?} not given; the RUN goes without it");
        return Ok(None);
    };
    if let Some(var) = &m.env {
        out.env
            .push(format!("{var}={}", String::from_utf8_lossy(value.bytes())));
        if m.target.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(
        target_of(m, workdir).unwrap_or_else(|| format!("/run/secrets/{id}")),
    ))
}

/// Writes a secret into a private scratch file (mode 0400 and root unless the mount says
/// otherwise) to bind read-only over its target.
fn secret_file(
    state: &StageState,
    m: &Mount,
    i: usize,
    location: &str,
    out: &mut PreparedMounts,
) -> Result<RunMountKind, BuildError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let id = secret_id(m).unwrap_or_default();
    let value = state.exec.request.secrets.get(&id).ok_or_else(|| {
        instruction_err(location, format!("--mount={}: no secret {id:?}", m.spec))
    })?;
    let dir = state
        .exec
        .work
        .join("secrets")
        .join(format!("{}-{}-{i}", state.index, state.run_counter));
    let err = |e: std::io::Error| {
        instruction_err(location, format!("--mount={}: secret file: {e}", m.spec))
    };
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(err)?;
    out.scratch.push(dir.clone());
    let file = dir.join("secret");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(err)?;
    std::io::Write::write_all(&mut f, value.bytes()).map_err(err)?;
    std::fs::set_permissions(
        &file,
        std::fs::Permissions::from_mode(m.mode.unwrap_or(0o400)),
    )
    .map_err(err)?;
    let (uid, gid) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
    if let Err(e) = std::os::unix::fs::chown(&file, Some(uid), Some(gid))
        && e.kind() != std::io::ErrorKind::PermissionDenied
    {
        return Err(err(e));
    }
    Ok(RunMountKind::Bind {
        source: file,
        writable: false,
        dir: false,
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
