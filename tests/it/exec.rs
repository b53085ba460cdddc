//! RUN isolation (DESIGN.md decision 1): each test runs real commands in a busybox rootfs through
//! the `kbuild __sandbox` helper. They need root (namespaces, mounts, pivot_root), as CI has.

use std::path::{Path, PathBuf};

use kbuild::exec::{self, Isolation, RunOutcome, RunSpec, User};

use crate::harness::rootfs;

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        rootfs::busybox(&dir.path().join("rootfs"));
        Sandbox { dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            rootfs: self.rootfs(),
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: "/".into(),
            user: User::root(),
            isolation: Isolation::Auto,
            scratch: self.dir.path().join("scratch"),
            helper: Some(PathBuf::from(env!("CARGO_BIN_EXE_kbuild"))),
            hostname: "kbuild".into(),
            dev_files: Vec::new(),
            mounts: Vec::new(),
            no_network: false,
        }
    }

    fn run(&self, spec: &RunSpec) -> (RunOutcome, String) {
        let mut output = String::new();
        let outcome = exec::run(spec, &mut |line| {
            output.push_str(line);
            output.push('\n');
        })
        .unwrap_or_else(|e| panic!("RUN {:?} could not run: {e}", spec.argv));
        (outcome, output)
    }

    fn sh(&self, script: &str) -> (RunOutcome, String) {
        self.run(&self.spec(script))
    }
}

#[test]
fn run_exit_code_and_output_come_back() {
    let sb = Sandbox::new();
    let (outcome, output) = sb.sh("echo hello; echo oops >&2; exit 3");
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(output, "hello\noops\n");
    assert_eq!(outcome.tail, vec!["hello", "oops"]);
    assert_eq!(outcome.isolation, Isolation::Namespaces);
}

#[test]
fn run_tail_keeps_the_last_lines() {
    let sb = Sandbox::new();
    let (outcome, _) = sb.sh("for i in $(seq 1 50); do echo line$i; done; exit 1");
    assert_eq!(outcome.tail.len(), exec::TAIL_LINES);
    assert_eq!(outcome.tail.last().unwrap(), "line50");
    assert_eq!(outcome.tail[0], format!("line{}", 51 - exec::TAIL_LINES));
}

#[test]
fn run_is_pid_1_in_its_own_namespaces() {
    let sb = Sandbox::new();
    let (outcome, output) = sb.sh("echo $$; hostname; ls /proc | grep -c '^[0-9]'");
    assert_eq!(outcome.exit_code, 0, "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "1", "the command is PID 1");
    assert_eq!(lines[1], "kbuild");
    // Only the sandbox's own processes are visible (sh, ls, grep), not the host's.
    let visible: u32 = lines[2].parse().unwrap();
    assert!(visible <= 4, "host processes leaked into /proc: {visible}");
}

#[test]
fn run_has_dev_nodes_pts_and_shm() {
    let sb = Sandbox::new();
    let script = "echo x > /dev/null && head -c 5 /dev/zero | wc -c && test -c /dev/urandom \
                  && test -c /dev/full && test -d /dev/pts && echo shm > /dev/shm/f && cat /dev/shm/f";
    let (outcome, output) = sb.sh(script);
    assert_eq!(outcome.exit_code, 0, "{output}");
    assert_eq!(output.split_whitespace().collect::<Vec<_>>(), ["5", "shm"]);
}

#[test]
fn run_sees_sys_read_only() {
    let sb = Sandbox::new();
    let (outcome, output) =
        sb.sh("test -d /sys/kernel && touch /sys/kbuild-probe 2>&1; echo rc=$?");
    assert_eq!(outcome.exit_code, 0);
    assert!(output.contains("Read-only file system"), "{output}");
    assert!(output.trim_end().ends_with("rc=1"), "{output}");
}

#[test]
fn run_that_changes_nothing_leaves_the_rootfs_identical() {
    let sb = Sandbox::new();
    let before = rootfs::fingerprint(&sb.rootfs());
    let (outcome, _) =
        sb.sh("cat /etc/resolv.conf /etc/hosts >/dev/null && ls /proc/self >/dev/null");
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(rootfs::fingerprint(&sb.rootfs()), before);

    // The same with an /etc that exists but has neither file.
    rootfs::with_users(&sb.rootfs());
    let before = rootfs::fingerprint(&sb.rootfs());
    let (outcome, _) = sb.sh("test -f /etc/resolv.conf && test -f /etc/hosts");
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(rootfs::fingerprint(&sb.rootfs()), before);
}

#[test]
fn run_writes_to_resolv_conf_stay_private() {
    let sb = Sandbox::new();
    let host_before = std::fs::read("/etc/resolv.conf").ok();
    let (outcome, output) =
        sb.sh("echo 'nameserver 192.0.2.1' > /etc/resolv.conf && cat /etc/hosts");
    assert_eq!(outcome.exit_code, 0, "{output}");
    assert!(output.contains("127.0.1.1\tkbuild"), "{output}");
    assert_eq!(std::fs::read("/etc/resolv.conf").ok(), host_before);
    assert!(
        !sb.rootfs().join("etc/resolv.conf").exists(),
        "placeholder left in the layer"
    );
}

#[test]
fn run_as_user_from_the_rootfs_passwd() {
    let sb = Sandbox::new();
    rootfs::with_users(&sb.rootfs());
    let passwd = std::fs::read_to_string(sb.rootfs().join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(sb.rootfs().join("etc/group")).unwrap();
    let mut spec = sb.spec("id -u; id -g; id -G");
    spec.user = exec::user::resolve("app", &passwd, &group).unwrap();
    let (outcome, output) = sb.run(&spec);
    assert_eq!(outcome.exit_code, 0, "{output}");
    assert_eq!(output, "1000\n1000\n1000 50\n");
}

#[test]
fn run_env_cwd_and_default_path() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("echo $GREETING; echo $PATH; pwd");
    spec.env = vec!["GREETING=hi there".into()];
    spec.cwd = "/work/dir".into();
    let (outcome, output) = sb.run(&spec);
    assert_eq!(outcome.exit_code, 0, "{output}");
    assert_eq!(
        output,
        format!("hi there\n{}\n/work/dir\n", exec::DEFAULT_PATH)
    );
    assert!(
        sb.rootfs().join("work/dir").is_dir(),
        "a missing WORKDIR is created, as runc does"
    );
}

#[test]
fn run_of_a_missing_program_exits_127() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("");
    spec.argv = vec!["no-such-tool".into(), "--version".into()];
    let (outcome, output) = sb.run(&spec);
    assert_eq!(outcome.exit_code, 127);
    assert!(
        output.contains("executable file not found in $PATH"),
        "{output}"
    );
}

#[test]
fn run_exec_form_finds_programs_on_the_rootfs_path() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("");
    spec.argv = vec!["echo".into(), "exec form".into()];
    let (outcome, output) = sb.run(&spec);
    assert_eq!((outcome.exit_code, output.as_str()), (0, "exec form\n"));
}

#[test]
fn run_falls_back_to_user_namespace_and_chroot_when_asked() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("echo $$; id -u; test -e /proc/self && echo proc");
    spec.isolation = Isolation::UserNamespace;
    let (outcome, output) = sb.run(&spec);
    assert_eq!(outcome.isolation, Isolation::UserNamespace);
    assert_eq!(outcome.exit_code, 0, "{output}");
    assert_eq!(output.lines().next(), Some("1"));

    spec.isolation = Isolation::Chroot;
    let (outcome, output) = sb.run(&spec);
    assert_eq!(outcome.isolation, Isolation::Chroot);
    assert_eq!(
        outcome.exit_code, 1,
        "no /proc under a plain chroot: {output}"
    );
    assert_ne!(output.lines().next(), Some("1"));
}

#[test]
fn run_user_namespace_refuses_non_root_users_clearly() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("true");
    spec.isolation = Isolation::UserNamespace;
    spec.user.uid = 1000;
    let err = exec::run(&spec, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("USER 1000 cannot run under user-namespace isolation"),
        "{err}"
    );
}

#[test]
fn run_leaves_host_mounts_and_files_untouched() {
    let sb = Sandbox::new();
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // /etc in the rootfs points at the host's /etc: kbuild must neither write through it nor mount
    // over it.
    std::os::unix::fs::symlink("/etc", sb.rootfs().join("etc")).unwrap();
    let host_etc = rootfs_listing(Path::new("/etc"));
    let (outcome, output) = sb.sh("echo ok");
    assert_eq!((outcome.exit_code, output.as_str()), (0, "ok\n"));
    assert_eq!(rootfs_listing(Path::new("/etc")), host_etc);
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        mounts_before
    );
}

#[test]
fn run_refuses_a_proc_that_is_not_a_directory() {
    let sb = Sandbox::new();
    std::os::unix::fs::symlink("/proc", sb.rootfs().join("proc")).unwrap();
    let err = exec::run(&sb.spec("true"), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/proc") && err.contains("not a directory"),
        "{err}"
    );
}

fn rootfs_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn run_that_writes_into_etc_keeps_the_directory_mtime_it_caused() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    rootfs::with_users(&sb.rootfs());
    let etc = sb.rootfs().join("etc");
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::open(&etc)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (outcome, _) = sb.sh("echo x > /etc/new-file");
    assert_eq!(outcome.exit_code, 0);
    let mtime = std::fs::metadata(&etc).unwrap().mtime();
    assert!(
        mtime > 1_000_000,
        "the RUN changed /etc, so its mtime is not rolled back"
    );
    assert!(!etc.join("resolv.conf").exists() && etc.join("new-file").exists());
}
