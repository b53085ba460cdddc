//! RUN: executing a command inside a stage rootfs, isolated from the host (DESIGN.md decision 1).
//!
//! The command runs in a helper process, `kbuild __sandbox` (a re-exec of the kbuild binary, like
//! runc's `init`), because a PID namespace only applies to the children of the process that enters
//! it and a multi-threaded parent (the tokio runtime) must not do mount work between fork and exec.
//! The helper reads a [`SandboxSpec`] from stdin, enters new mount, PID, UTS and IPC namespaces,
//! mounts `/proc`, `/dev` (tmpfs with null, zero, full, random, urandom, tty, pts and shm), `/sys`
//! read-only and private copies of `/etc/resolv.conf` and `/etc/hosts`, pivots into the rootfs, and
//! runs the command as PID 1 with the requested user. Everything it mounts dies with its namespace,
//! so nothing of it reaches the rootfs or the host.
//!
//! When namespaces are refused, the chain falls back to a user namespace, then to a plain chroot
//! (no `/proc`, `/dev` or `/sys`), and reports which [`Isolation`] it got. Running in the container's
//! own `/` (Kaniko's model, DESIGN.md decision 1's last resort) is deliberately left out: it would be
//! one more step of this chain.
//!
//! The network is shared with the step, as Docker's default build network is.
//!
//! The parent side ([`run`]) prepares the mount points the rootfs lacks and removes them afterwards,
//! restoring their parent directories' times, so a RUN that changes nothing leaves nothing behind.

mod mounts;
pub mod sandbox;
pub mod user;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

pub use user::{User, UserError};

/// The default PATH Docker and BuildKit give a RUN whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Lines of a failed RUN's output kept for the error message.
pub const TAIL_LINES: usize = 20;

/// How strongly a RUN was (or must be) separated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Try namespaces, then a user namespace, then a plain chroot.
    #[default]
    Auto,
    /// New mount, PID, UTS and IPC namespaces and pivot_root into the rootfs.
    Namespaces,
    /// The same inside a new user namespace (for unprivileged callers); only the caller's own uid
    /// and gid exist inside, mapped to root.
    UserNamespace,
    /// chroot only: no /proc, /dev or /sys for the command.
    Chroot,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Auto => "auto",
            Isolation::Namespaces => "namespaces",
            Isolation::UserNamespace => "user-namespace",
            Isolation::Chroot => "chroot",
        })
    }
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The stage rootfs; never the host's `/`.
    pub rootfs: PathBuf,
    /// The command, already in exec form (shell form is `[SHELL..., "cmd"]`).
    pub argv: Vec<String>,
    /// Environment, `KEY=VALUE`, in order; PATH defaults to [`DEFAULT_PATH`] when absent.
    pub env: Vec<String>,
    /// Working directory inside the rootfs (absolute).
    pub cwd: String,
    pub user: User,
    pub isolation: Isolation,
    /// A scratch directory outside the rootfs for this RUN's private files (resolv.conf, hosts).
    pub scratch: PathBuf,
    /// The kbuild binary that provides `__sandbox`; `None` means the current executable.
    pub helper: Option<PathBuf>,
    pub hostname: String,
    /// Executable files created in the RUN's private `/dev`: (path below `/dev`, content). A RUN
    /// heredoc with a `#!` line runs from `/dev/pipes/<name>`, as BuildKit runs it. Needs a
    /// mount namespace: chroot isolation has no `/dev` of its own, and such a RUN fails clearly.
    pub dev_files: Vec<(String, String)>,
    /// `RUN --mount`s, mounted in this order. Need a mount namespace: chroot isolation refuses
    /// a RUN that has any.
    pub mounts: Vec<RunMount>,
    /// `RUN --network=none`: a network namespace of its own with only loopback (up). Chroot
    /// isolation refuses it.
    pub no_network: bool,
}

/// One mount of a RUN (`RUN --mount`), prepared by the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMount {
    /// Absolute path inside the rootfs. Every existing component must be a directory (the
    /// last one a file for a file bind), never a symlink; missing ones are created for the RUN
    /// and removed after it.
    pub target: String,
    pub kind: RunMountKind,
}

/// What a [`RunMount`] mounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RunMountKind {
    /// A host directory or file (outside the rootfs), read-only unless `writable`.
    Bind {
        source: PathBuf,
        writable: bool,
        dir: bool,
    },
    /// An empty tmpfs, `size` bytes at most (the kernel's default when None).
    Tmpfs { size: Option<u64> },
}

impl RunMount {
    /// Whether the mount (and so its target) is a directory; a file bind is not.
    pub fn is_dir(&self) -> bool {
        match &self.kind {
            RunMountKind::Bind { dir, .. } => *dir,
            RunMountKind::Tmpfs { .. } => true,
        }
    }
}

/// How a RUN ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The command's exit code; 128 + signal number when it was killed by a signal.
    pub exit_code: i32,
    /// The isolation the command actually got.
    pub isolation: Isolation,
    /// The last [`TAIL_LINES`] lines of its output.
    pub tail: Vec<String>,
}

/// A RUN that could not be started or supervised (a failing command is not an error here: it is
/// a [`RunOutcome`] with a non-zero exit code).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start the sandbox helper {helper}: {source}")]
    Spawn {
        helper: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare {path} in the rootfs for RUN: {source}")]
    Prepare {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox setup failed ({isolation}): {message}{}", hint_for(message))]
    Sandbox {
        isolation: Isolation,
        message: String,
    },
    #[error("the sandbox helper died without reporting (status {status})")]
    HelperDied { status: String },
    #[error("sandbox I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn hint_for(message: &str) -> &'static str {
    if message.contains("EPERM") || message.contains("not permitted") {
        "\nhint: the step may lack CAP_SYS_ADMIN and user namespaces; try --isolation=chroot, or \
         allow unprivileged user namespaces on the node"
    } else {
        ""
    }
}

/// The spec the helper reads from stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub rootfs: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
    pub isolation: Isolation,
    pub hostname: String,
    /// Host files bind-mounted (as private copies) over rootfs paths: (source, target in rootfs).
    pub files: Vec<(PathBuf, String)>,
    /// See [`RunSpec::dev_files`].
    #[serde(default)]
    pub dev_files: Vec<(String, String)>,
    /// See [`RunSpec::mounts`].
    #[serde(default)]
    pub mounts: Vec<RunMount>,
    /// See [`RunSpec::no_network`].
    #[serde(default)]
    pub no_network: bool,
}

/// What the helper reports on fd 3 when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SandboxReport {
    Exited {
        isolation: Isolation,
        code: i32,
    },
    Failed {
        isolation: Isolation,
        message: String,
    },
}

/// The fd number on which the helper writes its [`SandboxReport`].
pub const REPORT_FD: i32 = 3;

/// Runs a command in the rootfs, passing each output line (stdout and stderr merged, as Docker
/// prints them) to `on_line`, and returns how it ended.
pub fn run(spec: &RunSpec, on_line: &mut dyn FnMut(&str)) -> Result<RunOutcome, ExecError> {
    let targets: Vec<(String, bool)> = spec
        .mounts
        .iter()
        .map(|m| (m.target.clone(), m.is_dir()))
        .collect();
    let prepared = mounts::prepare(&spec.rootfs, &spec.scratch, &spec.hostname, &targets)?;
    let result = run_prepared(spec, &prepared, on_line);
    let cleanup = prepared.cleanup();
    let outcome = result?;
    cleanup?;
    Ok(outcome)
}

fn run_prepared(
    spec: &RunSpec,
    prepared: &mounts::Prepared,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunOutcome, ExecError> {
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let sandbox_spec = SandboxSpec {
        rootfs: spec.rootfs.clone(),
        argv: spec.argv.clone(),
        env,
        cwd: spec.cwd.clone(),
        user: spec.user.clone(),
        isolation: spec.isolation,
        hostname: spec.hostname.clone(),
        files: prepared.files.clone(),
        dev_files: spec.dev_files.clone(),
        mounts: spec.mounts.clone(),
        no_network: spec.no_network,
    };
    let helper = match &spec.helper {
        Some(path) => path.clone(),
        None => std::env::current_exe()?,
    };
    // Close-on-exec: stages run RUNs at the same time, and a helper started by another thread
    // between these pipes' creation and this spawn must not inherit their write ends (the
    // reader here would wait for that other RUN to end, and it could write into this log).
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (out_read, out_write) = nix::unistd::pipe2(cloexec).map_err(std::io::Error::from)?;
    let (report_read, report_write) = nix::unistd::pipe2(cloexec).map_err(std::io::Error::from)?;
    let out_write2 = out_write.try_clone()?;
    let report_raw = report_write.as_raw_fd();
    let mut command = Command::new(&helper);
    command
        .arg("__sandbox")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_write))
        .stderr(Stdio::from(out_write2));
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto another number clears close-on-exec on the copy; onto itself it does
            // nothing, so the flag is cleared by hand.
            let kept = if report_raw == REPORT_FD {
                nix::libc::fcntl(REPORT_FD, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(report_raw, REPORT_FD)
            };
            if kept < 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        helper: helper.clone(),
        source,
    })?;
    drop(command);
    drop(report_write);
    if let Some(mut stdin) = child.stdin.take() {
        serde_json::to_writer(&mut stdin, &sandbox_spec).map_err(std::io::Error::from)?;
        stdin.flush()?;
    }
    let tail = read_lines(out_read, on_line)?;
    let status = child.wait()?;
    let mut report = String::new();
    std::fs::File::from(report_read).read_to_string(&mut report)?;
    match serde_json::from_str::<SandboxReport>(&report) {
        Ok(SandboxReport::Exited { isolation, code }) => Ok(RunOutcome {
            exit_code: code,
            isolation,
            tail,
        }),
        Ok(SandboxReport::Failed { isolation, message }) => {
            Err(ExecError::Sandbox { isolation, message })
        }
        Err(_) => Err(ExecError::HelperDied {
            status: match status.signal() {
                Some(sig) => format!("signal {sig}"),
                None => format!("exit {}", status.code().unwrap_or(-1)),
            },
        }),
    }
}

/// Reads output lines until every writer has closed the pipe, keeping the last [`TAIL_LINES`].
fn read_lines(fd: OwnedFd, on_line: &mut dyn FnMut(&str)) -> Result<Vec<String>, ExecError> {
    let mut reader = BufReader::new(std::fs::File::from(fd));
    let mut tail = std::collections::VecDeque::with_capacity(TAIL_LINES);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        on_line(line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }
    Ok(tail.into())
}

/// Splits `rootfs`-relative absolute paths into components, refusing `..`.
pub(crate) fn rel_components(path: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        None
    } else {
        Some(parts)
    }
}

/// The path of `rel` (absolute inside the rootfs) on the host, for messages and plain opens.
pub(crate) fn host_path(rootfs: &Path, rel: &str) -> PathBuf {
    rootfs.join(rel.trim_start_matches('/'))
}
