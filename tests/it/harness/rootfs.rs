//! Offline base root filesystems for tests: busybox-static and nothing else.

use std::os::unix::fs::symlink;
use std::path::Path;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Fills `dir` with a minimal busybox rootfs: /bin/busybox, a symlink per applet in /bin, and
/// nothing else (no /proc, /dev, /sys or /etc), so tests see exactly what kbuild adds.
pub fn busybox(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox"))
        .unwrap_or_else(|e| panic!("{BUSYBOX} is needed (apt install busybox-static): {e}"));
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            symlink("busybox", bin.join(applet)).unwrap();
        }
    }
}

/// Adds /etc/passwd and /etc/group with root and `app` (1000:1000, also in group `staff` 50).
pub fn with_users(dir: &Path) {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
}

/// Every path under `dir` with its type, mode, owner, size and mtime: a fingerprint to compare
/// before and after an operation that must not change anything.
pub fn fingerprint(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(dir).unwrap().display().to_string();
        let content = if meta.is_file() {
            format!("{:x}", crc(&std::fs::read(&path).unwrap()))
        } else if meta.file_type().is_symlink() {
            std::fs::read_link(&path).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.push(format!(
            "/{rel} mode={:o} uid={} gid={} size={} mtime={}.{} {content}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            if meta.is_dir() { 0 } else { meta.size() },
            meta.mtime(),
            meta.mtime_nsec()
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// A cheap content checksum for fingerprints (not security relevant).
fn crc(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}
