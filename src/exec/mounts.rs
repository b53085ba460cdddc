//! Parent-side preparation of a rootfs for one RUN: the mount points the sandbox needs, and the
//! private files it binds over `/etc/resolv.conf` and `/etc/hosts`.
//!
//! Whatever is created here is removed after the RUN and the parents' times are restored, so a RUN
//! that changes nothing leaves the rootfs as it found it. Every step opens directories with
//! `O_NOFOLLOW` relative to the rootfs, so a rootfs whose `/etc` is a symlink to the host's `/etc`
//! cannot make kbuild write on the host.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fstatat, mkdirat, utimensat};
use nix::sys::time::TimeSpec;

use super::ExecError;

/// Mount points created for a RUN, to remove afterwards.
pub(crate) struct Prepared {
    rootfs: PathBuf,
    /// rootfs-relative paths created, in creation order.
    created: Vec<(String, bool)>,
    /// Parents of created entries: (rootfs-relative dir, atime and mtime before kbuild touched
    /// it, mtime once the mount points existed).
    times: Vec<(String, TimeSpec, TimeSpec, Option<TimeSpec>)>,
    /// (private host file, rootfs-relative target) to bind-mount.
    pub files: Vec<(PathBuf, String)>,
}

fn err(path: &str, source: impl Into<std::io::Error>) -> ExecError {
    ExecError::Prepare {
        path: path.to_string(),
        source: source.into(),
    }
}

fn open_dir(rootfs: &Path, rel: &str) -> Result<OwnedFd, ExecError> {
    let root = File::open(rootfs).map_err(|e| err("/", e))?;
    let mut fd: OwnedFd = root.into();
    for part in
        super::rel_components(rel).ok_or_else(|| err(rel, std::io::ErrorKind::InvalidInput))?
    {
        let next = openat(
            fd.as_fd(),
            part,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| err(rel, e))?;
        fd = next;
    }
    Ok(fd)
}

enum Kind {
    Missing,
    Dir,
    File,
    Other,
}

fn kind_at(dir: &OwnedFd, name: &str) -> Result<Kind, nix::Error> {
    match fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(
            match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                SFlag::S_IFDIR => Kind::Dir,
                SFlag::S_IFREG => Kind::File,
                _ => Kind::Other,
            },
        ),
        Err(nix::Error::ENOENT) => Ok(Kind::Missing),
        Err(e) => Err(e),
    }
}

impl Prepared {
    fn remember_times(&mut self, dir_rel: &str) -> Result<(), ExecError> {
        if self.times.iter().any(|(d, ..)| d == dir_rel) {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(super::host_path(&self.rootfs, dir_rel))
            .map_err(|e| err(dir_rel, e))?;
        self.times.push((
            dir_rel.to_string(),
            TimeSpec::new(meta.atime(), meta.atime_nsec()),
            TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
            None,
        ));
        Ok(())
    }

    /// Notes each touched parent's mtime once everything is created: if it is the same after the
    /// RUN, the RUN did not change the directory and its original mtime comes back.
    fn note_prepared_times(&mut self) {
        for (rel, _, _, after) in &mut self.times {
            *after = mtime_of(&super::host_path(&self.rootfs, rel));
        }
    }

    /// Makes sure `parent/name` exists as a directory (or a regular file when `dir` is false).
    /// Returns false when it exists as something else, which the caller treats as "skip".
    fn ensure(&mut self, parent: &str, name: &str, dir: bool) -> Result<bool, ExecError> {
        let rel = format!("{}/{name}", parent.trim_end_matches('/'));
        let dir_fd = open_dir(&self.rootfs, parent)?;
        match kind_at(&dir_fd, name).map_err(|e| err(&rel, e))? {
            Kind::Dir => Ok(dir),
            Kind::File => Ok(!dir),
            Kind::Other => Ok(false),
            Kind::Missing => {
                self.remember_times(parent)?;
                if dir {
                    mkdirat(dir_fd.as_fd(), name, Mode::from_bits_truncate(0o755))
                        .map_err(|e| err(&rel, e))?;
                } else {
                    openat(
                        dir_fd.as_fd(),
                        name,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_WRONLY
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map_err(|e| err(&rel, e))?;
                }
                self.created.push((rel, dir));
                Ok(true)
            }
        }
    }

    /// Removes what [`prepare`] created and restores the parents' times.
    pub(crate) fn cleanup(self) -> Result<(), ExecError> {
        let observed: Vec<Option<TimeSpec>> = self
            .times
            .iter()
            .map(|(rel, ..)| mtime_of(&super::host_path(&self.rootfs, rel)))
            .collect();
        for (rel, dir) in self.created.iter().rev() {
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let parent_fd = open_dir(&self.rootfs, if parent.is_empty() { "/" } else { parent })?;
            let flag = if *dir {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                nix::unistd::UnlinkatFlags::NoRemoveDir
            };
            match nix::unistd::unlinkat(parent_fd.as_fd(), name, flag) {
                // A RUN may have put files into a directory kbuild created (say /etc); then the
                // directory is the RUN's output and stays.
                Ok(()) | Err(nix::Error::ENOTEMPTY) | Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(err(rel, e)),
            }
        }
        for ((rel, atime, original, after), observed) in self.times.iter().zip(observed) {
            let path = super::host_path(&self.rootfs, rel);
            // A RUN that changed the directory itself keeps its mtime; otherwise the original.
            let mtime = match observed {
                Some(seen) if Some(seen) != *after => seen,
                _ => *original,
            };
            let mtime = &mtime;
            // The directory may be gone if the RUN removed it; that is the RUN's change.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                utimensat(
                    nix::fcntl::AT_FDCWD,
                    &path,
                    atime,
                    mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| err(rel, e))?;
            }
        }
        Ok(())
    }
}

fn mtime_of(path: &Path) -> Option<TimeSpec> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| TimeSpec::new(m.mtime(), m.mtime_nsec()))
}

/// Creates the mount points a sandbox needs in `rootfs`, and private copies of resolv.conf and
/// hosts in `scratch`.
pub(crate) fn prepare(
    rootfs: &Path,
    scratch: &Path,
    hostname: &str,
    targets: &[(String, bool)],
) -> Result<Prepared, ExecError> {
    let mut prepared = Prepared {
        rootfs: rootfs.to_path_buf(),
        created: Vec::new(),
        times: Vec::new(),
        files: Vec::new(),
    };
    let result = prepare_into(&mut prepared, scratch, hostname)
        .and_then(|()| prepare_targets(&mut prepared, targets));
    match result {
        Ok(()) => {
            prepared.note_prepared_times();
            Ok(prepared)
        }
        Err(e) => {
            let _ = prepared.cleanup();
            Err(e)
        }
    }
}

/// Makes every `RUN --mount` target exist: (absolute path in the rootfs, whether it is a
/// directory). A component that exists as anything but a directory (a symlink above all, which
/// could point out of the rootfs) is refused.
fn prepare_targets(prepared: &mut Prepared, targets: &[(String, bool)]) -> Result<(), ExecError> {
    for (target, dir) in targets {
        let parts = super::rel_components(target)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| err(target, std::io::ErrorKind::InvalidInput))?;
        let mut parent = String::from("/");
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let want_dir = !last || *dir;
            if !prepared.ensure(&parent, part, want_dir)? {
                let what = if want_dir { "a directory" } else { "a file" };
                return Err(err(
                    target,
                    std::io::Error::other(format!(
                        "{parent}{part} exists and is not {what} (a RUN --mount target may not \
                         go through a symlink)",
                        parent = if parent == "/" {
                            "/".to_string()
                        } else {
                            format!("{parent}/")
                        }
                    )),
                ));
            }
            parent = if parent == "/" {
                format!("/{part}")
            } else {
                format!("{parent}/{part}")
            };
        }
    }
    Ok(())
}

fn prepare_into(prepared: &mut Prepared, scratch: &Path, hostname: &str) -> Result<(), ExecError> {
    for dir in ["proc", "dev", "sys"] {
        if !prepared.ensure("/", dir, true)? {
            return Err(err(
                &format!("/{dir}"),
                std::io::Error::other("exists and is not a directory"),
            ));
        }
    }
    std::fs::create_dir_all(scratch).map_err(|e| err("scratch", e))?;
    let resolv = scratch.join("resolv.conf");
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(&resolv, host_resolv).map_err(|e| err("scratch resolv.conf", e))?;
    let hosts = scratch.join("hosts");
    let hosts_text = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    std::fs::write(&hosts, hosts_text).map_err(|e| err("scratch hosts", e))?;
    // Without a real /etc directory there is nowhere safe to bind these; the RUN goes without.
    if prepared.ensure("/", "etc", true)? {
        for (source, name) in [(resolv, "resolv.conf"), (hosts, "hosts")] {
            if prepared.ensure("/etc", name, false)? {
                prepared.files.push((source, format!("/etc/{name}")));
            } else {
                tracing::debug!(
                    "/etc/{name} in the rootfs is not a regular file; not providing it"
                );
            }
        }
    }
    Ok(())
}
