//! The sandbox helper: the process `kbuild __sandbox` that isolates and runs one RUN command.
//!
//! It is single-threaded on purpose: it enters the namespaces, then forks the command, and the
//! forked child builds the mount tree and pivots before exec, which is only safe without other
//! threads. It reads a [`SandboxSpec`] from
//! stdin, writes the command's output to its own stdout/stderr (the parent's pipe), and reports a
//! [`SandboxReport`] on fd [`REPORT_FD`] before exiting.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::{Isolation, REPORT_FD, SandboxReport, SandboxSpec};

const NONE: Option<&str> = None;

/// Entry point of `kbuild __sandbox`.
pub fn main() -> ExitCode {
    let mut input = String::new();
    let report = match std::io::stdin().read_to_string(&mut input) {
        Ok(_) => match serde_json::from_str::<SandboxSpec>(&input) {
            Ok(spec) => run(&spec),
            Err(e) => SandboxReport::Failed {
                isolation: Isolation::Auto,
                message: format!("bad sandbox spec: {e}"),
            },
        },
        Err(e) => SandboxReport::Failed {
            isolation: Isolation::Auto,
            message: format!("cannot read sandbox spec: {e}"),
        },
    };
    // SAFETY: the parent dup'ed the report pipe onto REPORT_FD for this process alone.
    let mut out = unsafe { File::from_raw_fd(REPORT_FD) };
    match serde_json::to_vec(&report) {
        Ok(bytes) if out.write_all(&bytes).is_ok() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn run(spec: &SandboxSpec) -> SandboxReport {
    let isolation = match enter(spec.isolation, spec.user.uid, spec.no_network) {
        Ok(isolation) => isolation,
        Err((isolation, message)) => return SandboxReport::Failed { isolation, message },
    };
    if spec.no_network
        && let Err(message) = loopback_up()
    {
        return SandboxReport::Failed { isolation, message };
    }
    match spawn_and_wait(spec, isolation) {
        Ok(code) => SandboxReport::Exited { isolation, code },
        Err(message) => SandboxReport::Failed { isolation, message },
    }
}

/// Everything between fork and exec, in the command's own process: it is PID 1 of the new PID
/// namespace, which `/proc` must be mounted from, and in a user namespace `/proc` can only be
/// mounted while the host's is still visible, so the whole tree is built here.
fn setup_child(spec: &SandboxSpec, isolation: Isolation) -> Result<(), String> {
    if isolation == Isolation::Chroot {
        if !spec.mounts.is_empty() {
            return Err(
                "RUN --mount needs a mount namespace, and chroot isolation has none\nhint: allow \
                 namespaces (or a user namespace) for the build"
                    .into(),
            );
        }
        if !spec.dev_files.is_empty() {
            return Err(
                "this RUN runs a script from /dev (a heredoc with a #! line), and chroot \
                 isolation has no /dev of its own\nhint: run the interpreter explicitly \
                 (RUN python3 <<EOF), or allow namespaces"
                    .into(),
            );
        }
        nix::unistd::chroot(&spec.rootfs)
            .and_then(|()| nix::unistd::chdir("/"))
            .map_err(|e| format!("chroot into {}: {e}", spec.rootfs.display()))?;
    } else {
        mount_rootfs(spec, isolation)?;
        nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    }
    ensure_cwd(&spec.cwd).map_err(|e| format!("working directory {}: {e}", spec.cwd))?;
    nix::unistd::chdir(spec.cwd.as_str()).map_err(|e| format!("chdir {}: {e}", spec.cwd))?;
    if isolation != Isolation::UserNamespace {
        let groups: Vec<Gid> = spec.user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    }
    nix::unistd::setgid(Gid::from_raw(spec.user.gid)).map_err(|e| format!("setgid: {e}"))?;
    nix::unistd::setuid(Uid::from_raw(spec.user.uid)).map_err(|e| format!("setuid: {e}"))
}

/// Enters the strongest isolation allowed, following the fallback chain for `Auto`.
fn enter(wanted: Isolation, uid: u32, no_network: bool) -> Result<Isolation, (Isolation, String)> {
    let net = if no_network {
        CloneFlags::CLONE_NEWNET
    } else {
        CloneFlags::empty()
    };
    let chain: &[Isolation] = match wanted {
        Isolation::Auto => &[
            Isolation::Namespaces,
            Isolation::UserNamespace,
            Isolation::Chroot,
        ],
        Isolation::Namespaces => &[Isolation::Namespaces],
        Isolation::UserNamespace => &[Isolation::UserNamespace],
        Isolation::Chroot => &[Isolation::Chroot],
    };
    let mut last = String::new();
    for &candidate in chain {
        let attempt = match candidate {
            Isolation::Namespaces => {
                unshare(namespaces() | net).map_err(|e| format!("unshare: {e}"))
            }
            Isolation::UserNamespace if uid != 0 => Err(format!(
                "USER {uid} cannot run under user-namespace isolation: only root is mapped inside"
            )),
            Isolation::UserNamespace => enter_user_namespace(net),
            Isolation::Chroot if no_network => Err(
                "RUN --network=none needs a network namespace, and chroot isolation has none"
                    .into(),
            ),
            _ => Ok(()),
        };
        match attempt {
            Ok(()) => return Ok(candidate),
            Err(message) => last = format!("{candidate}: {message}"),
        }
    }
    Err((wanted, last))
}

fn namespaces() -> CloneFlags {
    CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
}

fn enter_user_namespace(extra: CloneFlags) -> Result<(), String> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(CloneFlags::CLONE_NEWUSER | namespaces() | extra)
        .map_err(|e| format!("unshare: {e}"))?;
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))
}

/// Brings up `lo` in a new network namespace (it starts down), as container runtimes do, so
/// `RUN --network=none` still has 127.0.0.1.
fn loopback_up() -> Result<(), String> {
    use nix::libc;
    // SAFETY: a plain socket for interface ioctls, closed below; `ifreq` is plain old data and
    // the name is NUL-terminated within IFNAMSIZ.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let result = if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(format!("lo flags: {}", std::io::Error::last_os_error()))
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(format!("lo up: {}", std::io::Error::last_os_error()))
            } else {
                Ok(())
            }
        };
        libc::close(sock);
        result
    }
}

fn mount_err(what: &str, target: &Path, e: nix::Error) -> String {
    format!("mount {what} on {}: {e}", target.display())
}

/// Builds the RUN's mount tree inside the new mount namespace and pivots into it.
fn mount_rootfs(spec: &SandboxSpec, isolation: Isolation) -> Result<(), String> {
    let root = &spec.rootfs;
    // Nothing below may propagate back to the host's mount table.
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE)
        .map_err(|e| mount_err("private propagation", Path::new("/"), e))?;
    mount(
        Some(root),
        root,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(|e| mount_err("bind", root, e))?;
    mount_dev(&root.join("dev"))?;
    for (path, content) in &spec.dev_files {
        let target = root.join("dev").join(path);
        if let Some(parent) = target.parent() {
            // 0755 whatever the umask: a non-root USER must reach the script.
            std::fs::create_dir_all(parent)
                .and_then(|()| {
                    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                })
                .map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, content)
            .and_then(|()| {
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("write {}: {e}", target.display()))?;
    }
    mount_sys(&root.join("sys"), isolation)?;
    let proc = root.join("proc");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &proc, Some("proc"), flags, NONE)
        .map_err(|e| mount_err("proc", &proc, e))?;
    for (source, target) in &spec.files {
        let target = root.join(target.trim_start_matches('/'));
        mount(Some(source), &target, NONE, MsFlags::MS_BIND, NONE)
            .map_err(|e| mount_err("bind", &target, e))?;
    }
    for m in &spec.mounts {
        mount_one(root, m)?;
    }
    nix::unistd::chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    // The old root now sits on top of the new one; detach it so the host tree is unreachable.
    mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
        .map_err(|e| mount_err("slave propagation", Path::new("."), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// Opens `name` below `parent` without following a symlink: a directory (created when missing,
/// say inside an earlier tmpfs or cache mount) or, when `dir` is false, a regular file (created
/// empty when missing). The result is an `O_PATH` descriptor to mount on.
fn open_component(parent: &OwnedFd, name: &str, dir: bool) -> Result<OwnedFd, nix::Error> {
    let path_flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let kind = if dir {
        OFlag::O_DIRECTORY
    } else {
        OFlag::empty()
    };
    match openat(parent.as_fd(), name, path_flags | kind, Mode::empty()) {
        Err(nix::Error::ENOENT) if dir => {
            nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755))?;
        }
        Err(nix::Error::ENOENT) => {
            let create = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW;
            openat(
                parent.as_fd(),
                name,
                create | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )?;
        }
        other => {
            let fd = other?;
            let st = nix::sys::stat::fstat(fd.as_fd())?;
            let is_file = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
            // O_NOFOLLOW with O_PATH opens a symlink itself rather than failing: refuse it.
            return if dir || is_file {
                Ok(fd)
            } else {
                Err(nix::Error::ELOOP)
            };
        }
    }
    openat(parent.as_fd(), name, path_flags | kind, Mode::empty())
}

/// The parent directory of a mount target and the target's last component, reached from the
/// rootfs one component at a time without following a symlink, through earlier mounts too.
fn walk_to_parent<'a>(root: &Path, target: &'a str) -> Result<(OwnedFd, &'a str), String> {
    let parts = super::rel_components(target)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("RUN --mount target {target:?} is not a path in the rootfs"))?;
    let refuse = |e: nix::Error| {
        format!(
            "RUN --mount target {target}: {e} (a mount target may not go through a symlink, \
             and must exist or be creatable)"
        )
    };
    let mut fd: OwnedFd = File::open(root)
        .map_err(|e| format!("open {}: {e}", root.display()))?
        .into();
    let (last, dirs) = parts
        .split_last()
        .ok_or_else(|| refuse(nix::Error::EINVAL))?;
    for part in dirs {
        fd = open_component(&fd, part, true).map_err(refuse)?;
    }
    Ok((fd, last))
}

/// One `RUN --mount`. The target is reached without following any symlink (a symlink in the
/// rootfs, or one inside an earlier mount, could point at the host while its `/` is still
/// visible) and mounted on through `/proc/self/fd`, so the kernel never resolves the path again.
fn mount_one(root: &Path, m: &super::RunMount) -> Result<(), String> {
    let dir = m.is_dir();
    let (parent, last) = walk_to_parent(root, &m.target)?;
    let refuse = |e: nix::Error| {
        format!(
            "RUN --mount target {}: {e} (a mount target may not go through a symlink, and must \
             exist or be creatable)",
            m.target
        )
    };
    let target_fd = open_component(&parent, last, dir).map_err(refuse)?;
    let target = PathBuf::from(format!("/proc/self/fd/{}", target_fd.as_raw_fd()));
    let shown = Path::new(&m.target);
    match &m.kind {
        super::RunMountKind::Bind {
            source, writable, ..
        } => {
            mount(
                Some(source),
                &target,
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )
            .map_err(|e| mount_err("bind", shown, e))?;
            if !writable {
                // The new mount's root, reached the same careful way, carries the remount; the
                // flags the source filesystem locks (nosuid, nodev, noexec in a user namespace)
                // are kept.
                let mounted = open_component(&parent, last, dir).map_err(refuse)?;
                let at = PathBuf::from(format!("/proc/self/fd/{}", mounted.as_raw_fd()));
                let mut flags = MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV;
                if nix::sys::statvfs::fstatvfs(&mounted)
                    .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC))
                {
                    flags |= MsFlags::MS_NOEXEC;
                }
                mount(NONE, &at, NONE, flags, NONE)
                    .map_err(|e| mount_err("read-only remount", shown, e))?;
            }
        }
        super::RunMountKind::Tmpfs { size } => {
            let options = size.map(|s| format!("size={s}"));
            mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                options.as_deref(),
            )
            .map_err(|e| mount_err("tmpfs", shown, e))?;
        }
    }
    Ok(())
}

fn mount_dev(dev: &Path) -> Result<(), String> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        nosuid,
        Some("mode=755,size=65536k"),
    )
    .map_err(|e| mount_err("tmpfs", dev, e))?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        File::create(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
        let source = Path::new("/dev").join(node);
        mount(Some(&source), &target, NONE, MsFlags::MS_BIND, NONE)
            .map_err(|e| mount_err("bind", &target, e))?;
    }
    let pts = dev.join("pts");
    let shm = dev.join("shm");
    for dir in [&pts, &shm] {
        std::fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| mount_err("devpts", &pts, e))?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| mount_err("tmpfs", &shm, e))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .map_err(|e| format!("symlink /dev/{link}: {e}"))?;
    }
    Ok(())
}

fn mount_sys(sys: &Path, isolation: Isolation) -> Result<(), String> {
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some("sysfs"), sys, Some("sysfs"), ro, NONE) {
        Ok(()) => Ok(()),
        // A user namespace that does not own the network namespace may not mount sysfs; a
        // read-only bind of the host's /sys is what rootless runtimes use instead.
        Err(_) if isolation == Isolation::UserNamespace => {
            mount(
                Some("/sys"),
                sys,
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )
            .map_err(|e| mount_err("bind /sys", sys, e))?;
            mount(
                NONE,
                sys,
                NONE,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ro,
                NONE,
            )
            .map_err(|e| mount_err("read-only /sys", sys, e))
        }
        Err(e) => Err(mount_err("sysfs", sys, e)),
    }
}

/// runc creates a missing working directory; so does kbuild, so `WORKDIR` in a base image that
/// lacks the directory behaves as in Docker.
fn ensure_cwd(cwd: &str) -> std::io::Result<()> {
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other("not a directory")),
        Err(_) => std::fs::create_dir_all(cwd),
    }
}

fn spawn_and_wait(spec: &SandboxSpec, isolation: Isolation) -> Result<i32, String> {
    let Some(program) = spec.argv.first() else {
        return Err("empty command".into());
    };
    let (err_read, err_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let mut err_write = Some(File::from(err_write));
    let mut command = Command::new(program);
    command
        .args(&spec.argv[1..])
        .env_clear()
        .envs(
            spec.env
                .iter()
                .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), ""))),
        )
        .stdin(Stdio::null());
    let child_spec = spec.clone();
    // SAFETY: this process is single-threaded, so the forked child may allocate and make any
    // syscall before exec.
    unsafe {
        command.pre_exec(move || {
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            setup_child(&child_spec, isolation).map_err(|message| {
                if let Some(mut pipe) = err_write.take() {
                    let _ = pipe.write_all(message.as_bytes());
                }
                std::io::Error::other("sandbox setup failed")
            })
        });
    }
    let spawned = command.spawn();
    drop(command);
    let mut setup_error = String::new();
    let _ = File::from(err_read).read_to_string(&mut setup_error);
    if !setup_error.is_empty() {
        return Err(setup_error);
    }
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            // A missing or unusable program is the command's failure, as a shell reports it.
            let (code, why) = match e.kind() {
                std::io::ErrorKind::NotFound => (127, "executable file not found in $PATH"),
                std::io::ErrorKind::PermissionDenied => (126, "permission denied"),
                _ => return Err(format!("exec {program:?}: {e}")),
            };
            eprintln!("kbuild: exec {program:?}: {why}");
            return Ok(code);
        }
    };
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
