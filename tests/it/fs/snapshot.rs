//! Snapshots find exactly what a step changed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kbuild::fs::{
    ChangeKind, Changes, IgnoreList, LayerOptions, Root, SnapshotMode, Snapshotter, write_layer,
};

fn kinds(changes: &Changes) -> Vec<(String, ChangeKind)> {
    changes
        .iter()
        .map(|(p, c)| (p.display().to_string(), c.kind))
        .collect()
}

fn base(dir: &Path) {
    for d in [
        "etc",
        "usr/lib",
        "gone/deep/er",
        "dir2file",
        "recreated/sub",
        "var/run",
        "proc",
        "keep",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for f in [
        "etc/passwd",
        "etc/hosts",
        "etc/chmod-me",
        "etc/delete-me",
        "gone/deep/er/f",
        "dir2file/x",
        "file2dir",
        "recreated/sub/old",
        "usr/lib/restored",
        "keep/same",
    ] {
        std::fs::write(dir.join(f), f.as_bytes()).unwrap();
    }
    std::os::unix::fs::symlink("passwd", dir.join("etc/link")).unwrap();
}

#[test]
fn a_step_that_changes_nothing_gives_no_layer() {
    for mode in [SnapshotMode::Full, SnapshotMode::Redo, SnapshotMode::Time] {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        let root = Root::open(dir.path()).unwrap();
        let mut snap = Snapshotter::new(&root, mode, IgnoreList::new()).unwrap();
        // Reading files changes nothing a layer records.
        std::fs::read(dir.path().join("etc/passwd")).unwrap();
        let changes = snap.snapshot(&root).unwrap();
        assert!(changes.is_empty(), "{mode:?}: {:?}", kinds(&changes));
        let mut sink = Vec::new();
        assert_eq!(
            write_layer(&root, &changes, &LayerOptions::default(), &mut sink).unwrap(),
            None
        );
        assert!(sink.is_empty());
    }
}

#[test]
fn snapshots_report_added_changed_deleted_replaced_and_recreated_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    base(d);
    let root = Root::open(d).unwrap();
    let ignore = IgnoreList::from_flags(true, &["/proc"]);
    let mut snap = Snapshotter::new(&root, SnapshotMode::Redo, ignore).unwrap();
    // Let the clock move past the index so every change below has a later ctime.
    std::thread::sleep(std::time::Duration::from_millis(20));

    std::fs::write(d.join("etc/new"), b"new").unwrap();
    std::fs::write(d.join("etc/hosts"), b"changed").unwrap();
    std::fs::set_permissions(
        d.join("etc/chmod-me"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(d.join("etc/delete-me")).unwrap();
    std::fs::remove_dir_all(d.join("gone")).unwrap();
    std::fs::remove_dir_all(d.join("dir2file")).unwrap();
    std::fs::write(d.join("dir2file"), b"now a file").unwrap();
    std::fs::remove_file(d.join("file2dir")).unwrap();
    std::fs::create_dir(d.join("file2dir")).unwrap();
    std::fs::write(d.join("file2dir/inner"), b"i").unwrap();
    std::fs::rename(d.join("recreated"), d.join("moved-away")).unwrap();
    std::fs::create_dir(d.join("recreated")).unwrap();
    std::fs::write(d.join("recreated/fresh"), b"f").unwrap();
    std::fs::remove_dir_all(d.join("moved-away")).unwrap();
    std::fs::remove_file(d.join("etc/link")).unwrap();
    std::os::unix::fs::symlink("hosts", d.join("etc/link")).unwrap();
    // Same size, mtime put back: only ctime tells.
    let restored = d.join("usr/lib/restored");
    let mtime = std::fs::metadata(&restored).unwrap().modified().unwrap();
    std::fs::write(&restored, b"usr/lib/RESTORED").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&restored)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    // Ignored paths.
    std::fs::write(d.join("var/run/app.pid"), b"1").unwrap();
    std::fs::write(d.join("proc/cpuinfo"), b"x").unwrap();

    let changes = snap.snapshot(&root).unwrap();
    let got = kinds(&changes);
    use ChangeKind::*;
    let want: Vec<(String, ChangeKind)> = [
        ("dir2file", Changed),
        ("etc", Changed),
        ("etc/chmod-me", Changed),
        ("etc/delete-me", Deleted),
        ("etc/hosts", Changed),
        ("etc/link", Changed),
        ("etc/new", Added),
        ("file2dir", Changed),
        ("file2dir/inner", Added),
        ("gone", Deleted),
        ("recreated", Opaque),
        ("recreated/fresh", Added),
        ("usr/lib/restored", Changed),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect();
    assert_eq!(got, want);
    // The next snapshot starts from this one.
    assert!(snap.snapshot(&root).unwrap().is_empty());
}

#[test]
fn recorded_paths_cost_only_themselves_and_are_not_reported_again() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let mut snap = Snapshotter::new(&root, SnapshotMode::Full, IgnoreList::new()).unwrap();
    root.create_dir_all("/app/static", 0o755).unwrap();
    root.write_file("/app/static/index.html", b"<html>", 0o644)
        .unwrap();
    root.write_file("/etc/hosts", b"127.0.0.1 app", 0o644)
        .unwrap();
    let changes = snap.record(&root, ["/app", "/etc/hosts"], true).unwrap();
    assert_eq!(
        kinds(&changes),
        [
            ("app".to_string(), ChangeKind::Added),
            ("app/static".to_string(), ChangeKind::Added),
            ("app/static/index.html".to_string(), ChangeKind::Added),
            ("etc/hosts".to_string(), ChangeKind::Changed),
        ]
    );
    let standalone = Changes::from_paths(&root, ["app/static/index.html"], false).unwrap();
    assert_eq!(standalone.len(), 1);
    // /etc's new mtime went into the index with the recorded paths (and the layer carries it).
    assert!(snap.snapshot(&root).unwrap().is_empty());
}

/// A path ignored for one step only (a mount the executor adds) is neither reported nor
/// whited out, even though the index saw it before.
#[test]
fn paths_ignored_after_indexing_are_not_whited_out() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let mut snap = Snapshotter::new(&root, SnapshotMode::Redo, IgnoreList::new()).unwrap();
    snap.ignore_list_mut().add("/keep");
    let changes = snap.snapshot(&root).unwrap();
    assert!(changes.is_empty(), "{:?}", kinds(&changes));
}
