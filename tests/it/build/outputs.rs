//! The flags that shape what a build leaves behind: `--single-snapshot` (one layer per stage),
//! `--force-build-metadata` (a layer per instruction), `--cleanup` (no work directory left).

use super::{World, assert_success, write};

/// A stage that changes files in three instructions and sets config in two.
fn three_changes(world: &World, name: &str) -> std::path::PathBuf {
    let ctx = world.context(name);
    write(&ctx, "f.txt", "from the context\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN echo a > /a\nENV MODE=test\nCOPY f.txt /f.txt\n\
         LABEL stage=one\nRUN echo b > /b && rm /a\n",
    );
    ctx
}

/// The base image's layer and history counts (kbuild's own busybox base: a COPY and a CMD).
fn base_counts(world: &World) -> (usize, usize) {
    let base = world.pull("base:1");
    (base.layers, base.history().len())
}

#[test]
fn build_single_snapshot_makes_one_layer_with_every_change() {
    let world = World::new();
    let ctx = three_changes(&world, "single");
    assert_success(&world.build(&ctx, "single:per-step", &[]));
    assert_success(&world.build(&ctx, "single:one", &["--single-snapshot"]));
    let (base, base_history) = base_counts(&world);
    let per_step = world.pull("single:per-step");
    let single = world.pull("single:one");
    assert_eq!(per_step.layers, base + 3);
    assert_eq!(single.layers, base + 1);
    for image in [&per_step, &single] {
        assert!(!image.exists("/a"), "/a was deleted by the last RUN");
        assert_eq!(image.read("/b"), "b\n");
        assert_eq!(image.read("/f.txt"), "from the context\n");
        assert_eq!(image.config.config.labels.as_ref().unwrap()["stage"], "one");
    }
    // Every instruction keeps its history entry; only the last one of the stage has a layer.
    let history = single.history();
    let layered: Vec<&str> = history
        .iter()
        .skip(base_history)
        .filter(|(_, empty)| !empty)
        .map(|(by, _)| by.as_str())
        .collect();
    assert_eq!(layered, ["kbuild --single-snapshot"], "{history:?}");
    assert_eq!(history.len(), per_step.history().len() + 1, "{history:?}");
}

#[test]
fn build_force_build_metadata_gives_every_instruction_a_layer() {
    let world = World::new();
    let ctx = three_changes(&world, "metadata");
    assert_success(&world.build(&ctx, "metadata:1", &["--force-build-metadata"]));
    let image = world.pull("metadata:1");
    let (base, base_history) = base_counts(&world);
    // Three instructions that change files and two that only change config: five layers.
    assert_eq!(image.layers, base + 5);
    let history = image.history();
    let ours: Vec<&(String, bool)> = history.iter().skip(base_history).collect();
    assert_eq!(ours.len(), 5, "{history:?}");
    assert!(ours.iter().all(|(_, empty)| !empty), "{history:?}");
    assert_eq!(image.read("/b"), "b\n");
    assert_eq!(
        image.config.config.env.as_ref().unwrap().last().unwrap(),
        "MODE=test"
    );
}

#[test]
fn build_cleanup_removes_the_work_directory_and_keeps_the_report() {
    let world = World::new();
    let ctx = three_changes(&world, "cleanup");
    let builds = |world: &World| -> usize {
        match std::fs::read_dir(world.work_dir()) {
            Ok(entries) => entries
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().starts_with("build-")
                })
                .count(),
            Err(_) => 0,
        }
    };
    let before = builds(&world);
    let report = world.dir.path().join("cleanup.json");
    let out = world.build(
        &ctx,
        "cleanup:1",
        &["--cleanup", &format!("--report={}", report.display())],
    );
    assert_success(&out);
    assert_eq!(builds(&world), before, "--cleanup left a build directory");
    assert!(report.is_file(), "the report went with the work directory");
    // Without it, the build's directory stays for inspection, as Kaniko's /kaniko does.
    assert_success(&world.build(&ctx, "cleanup:2", &[]));
    assert_eq!(builds(&world), before + 1);
}
