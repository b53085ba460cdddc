use super::*;
use crate::cache::key::Preimage;
use crate::debug::preimage::ReadPart;
use crate::debug::testing::{I, arg, entry, file, i, preimage, report, stage};
use serde_json::json;

const REPO: &str = "reg.local/app/cache";

fn side(label: &str, stages: Vec<serde_json::Value>) -> Side {
    Side::from_report(label, &report(stages, json!({"success": true}), REPO))
}

fn builder(goproxy: &str) -> Vec<I> {
    vec![
        i("COPY go.mod /src/").with(file("go.mod", "sha256:1")),
        i("RUN go build -o /out/app").with(arg("GOPROXY", goproxy)),
        i("RUN strip /out/app"),
    ]
}

fn final_stage(app_content: &str) -> Vec<I> {
    vec![
        i("COPY --from=builder /out/app /app").with(Part::StageFile {
            stage: "builder".into(),
            path: "/out/app".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            content: app_content.into(),
        }),
    ]
}

#[test]
fn an_arg_change_is_the_cause_and_later_keys_follow_from_it() {
    let a = side(
        "a.json",
        vec![
            stage(0, "builder", "sha256:base", REPO, &builder("https://a")).0,
            stage(1, "final", "sha256:slim", REPO, &final_stage("sha256:app1")).0,
        ],
    );
    let b = side(
        "b.json",
        vec![
            stage(0, "builder", "sha256:base", REPO, &builder("https://b")).0,
            stage(1, "final", "sha256:slim", REPO, &final_stage("sha256:app2")).0,
        ],
    );
    let d = diff_sides(&a, &b);
    let statuses: Vec<(StepStatus, Option<Role>)> =
        d.steps.iter().map(|s| (s.status, s.role)).collect();
    assert_eq!(
        statuses,
        [
            (StepStatus::Same, None),
            (StepStatus::Differs, Some(Role::Cause)),
            (StepStatus::Differs, Some(Role::Follows)),
            (StepStatus::Differs, Some(Role::Follows)),
        ]
    );
    assert_eq!(d.cause, Some(1));
    let cause = &d.steps[1];
    assert_eq!(cause.changes.len(), 1, "{:?}", cause.changes);
    assert_eq!(cause.changes[0].change, ChangeKind::Arg);
    assert_eq!(cause.changes[0].name, "GOPROXY");
    assert_eq!(cause.changes[0].a.as_deref(), Some("https://a"));
    assert_eq!(d.steps[2].follows, Some(1));
    let copy = &d.steps[3];
    assert_eq!(copy.changes[0].change, ChangeKind::StageOutput);
    assert!(
        copy.changes[0].inherited,
        "the producer stage diverged first"
    );
    assert_eq!(copy.follows, Some(1));
    assert!(!d.all_same());
}

#[test]
fn a_moved_base_image_is_a_cause_of_its_own() {
    let a = side(
        "a",
        vec![stage(0, "b", "sha256:old", REPO, &builder("p")).0],
    );
    let b = side(
        "b",
        vec![stage(0, "b", "sha256:new", REPO, &builder("p")).0],
    );
    let d = diff_sides(&a, &b);
    assert_eq!(d.cause, Some(0));
    assert_eq!(d.steps[0].changes[0].change, ChangeKind::BaseImage);
    assert!(d.steps[1..].iter().all(|s| s.role == Some(Role::Follows)));
}

#[test]
fn an_inserted_instruction_is_aligned_not_a_cascade_of_changes() {
    let mut more = builder("p");
    more.insert(1, i("RUN apt-get update"));
    let a = side("a", vec![stage(0, "b", "sha256:x", REPO, &builder("p")).0]);
    let b = side("b", vec![stage(0, "b", "sha256:x", REPO, &more).0]);
    let d = diff_sides(&a, &b);
    let statuses: Vec<StepStatus> = d.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Same,
            StepStatus::OnlyB,
            StepStatus::Differs,
            StepStatus::Differs
        ]
    );
    assert_eq!(d.cause, Some(1));
    assert_eq!(d.steps[2].role, Some(Role::Follows));
    assert_eq!(d.steps[2].follows, Some(1));
}

#[test]
fn files_added_removed_and_changed_are_named() {
    let a = preimage(ParentKind::BaseImage, "b", "COPY . /src", &[]);
    let mut pa = a.clone();
    pa.push(file("main.go", "sha256:1"))
        .push(file("old.go", "sha256:2"));
    let mut pb = a;
    pb.push(file("main.go", "sha256:9"))
        .push(file("new.go", "sha256:3"));
    let read = |p: &Preimage| {
        crate::debug::preimage::read_preimage(&serde_json::to_value(p).unwrap()).unwrap()
    };
    let changes = compare_parts(&read(&pa), &read(&pb));
    let kinds: Vec<(ChangeKind, &str)> = changes
        .iter()
        .map(|c| (c.change, c.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::FileChanged, "main.go"),
            (ChangeKind::FileRemoved, "old.go"),
            (ChangeKind::FileAdded, "new.go")
        ]
    );
    assert_eq!(changes[0].flipped().a.as_deref(), changes[0].b.as_deref());
    assert_eq!(changes[1].flipped().change, ChangeKind::FileAdded);
}

#[test]
fn kaniko_entries_compare_only_by_key_and_instruction() {
    let p = preimage(ParentKind::BaseImage, "b", "RUN make", &[]);
    let kb = entry(REPO, &p, "RUN make", "2025-06-01T10:00:00Z", 10);
    let mut kaniko = kb.clone();
    kaniko.kind = EntryKind::Kaniko;
    kaniko.parts = None;
    kaniko.preimage = None;
    kaniko.tag = "f".repeat(64);
    kaniko.instruction = Some("RUN make all".into());
    let d = diff_sides(&Side::from_entry(&kb), &Side::from_entry(&kaniko));
    assert_eq!(d.steps[0].status, StepStatus::NotComparable);
    assert!(
        d.steps[0]
            .note
            .as_deref()
            .unwrap()
            .contains("Kaniko entries have no preimage"),
        "{:?}",
        d.steps[0].note
    );
    assert_eq!(d.steps[0].changes[0].change, ChangeKind::Instruction);
    let same = diff_sides(&Side::from_entry(&kb), &Side::from_entry(&kb));
    assert!(same.all_same());
}

#[test]
fn a_report_is_compared_with_the_nearest_entry_never_its_own_push() {
    let (old_stage, old) = stage(0, "b", "sha256:x", REPO, &builder("https://a"));
    let (new_stage, new) = stage(0, "b", "sha256:x", REPO, &builder("https://b"));
    let _ = old_stage;
    // The repository holds the old build's entries and what the new build pushed after missing.
    let mut entries: Vec<CacheEntry> = old
        .iter()
        .map(|p| entry(REPO, p, "x", "2025-06-01T10:00:00Z", 1))
        .collect();
    entries.push(entry(REPO, &new[1], "x", "2025-06-02T10:00:00Z", 1));
    let mut stages = vec![new_stage];
    stages[0]["instructions"][0]["cache"]["status"] = json!("hit");
    let side = Side::from_report("new", &report(stages, json!({}), REPO));
    let d = diff_report_with_entries(&side, REPO, &entries);
    assert_eq!(d.steps[0].status, StepStatus::Same);
    assert_eq!(d.steps[1].status, StepStatus::Differs);
    assert_eq!(d.steps[1].role, Some(Role::Cause));
    assert_eq!(d.steps[1].changes[0].change, ChangeKind::Arg);
    assert!(
        d.steps[1]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("pushed this key"),
        "{:?}",
        d.steps[1].note
    );
    assert_eq!(d.steps[2].role, Some(Role::Follows));
    let swapped = d.clone().swapped();
    assert_eq!(swapped.a, REPO);
    assert_eq!(swapped.steps[1].changes[0].a.as_deref(), Some("https://a"));
}

#[test]
fn nothing_close_means_only_a() {
    let (s, _) = stage(0, "b", "sha256:x", REPO, &[i("RUN make")]);
    let side = Side::from_report("r", &report(vec![s], json!({}), REPO));
    let other = entry(
        REPO,
        &preimage(ParentKind::BaseImage, "y", "COPY a /", &[]),
        "COPY a /",
        "2025-06-01T10:00:00Z",
        1,
    );
    let d = diff_report_with_entries(&side, REPO, &[other]);
    assert_eq!(d.steps[0].status, StepStatus::OnlyA);
    assert!(d.steps[0].note.as_deref().unwrap().contains("no entry in"));
}

#[test]
fn reports_without_cache_keys_compare_as_nothing_and_cause_nothing() {
    let plain = |label: &str| {
        let value = json!({"stages": [{"index": 0, "name": "b", "instructions": [
            {"location": "Dockerfile:2", "text": "RUN make"}]}], "outcome": {"success": true}});
        Side::from_report(
            label,
            &crate::debug::report::BuildReport::parse(value.to_string().as_bytes()).unwrap(),
        )
    };
    let d = diff_sides(&plain("a"), &plain("b"));
    assert_eq!(d.steps[0].status, StepStatus::NotComparable);
    assert_eq!(d.cause, None);
    assert!(
        d.steps[0]
            .note
            .as_deref()
            .unwrap()
            .contains("without the cache")
    );
    let r = diff_report_with_entries(&plain("a"), REPO, &[]);
    assert_eq!(r.steps[0].status, StepStatus::NotComparable);
    assert_eq!((r.cause, r.steps[0].role), (None, None));
}

#[test]
fn a_large_copy_compares_file_by_file() {
    let files = |changed: &str| -> Vec<ReadPart> {
        let mut p = preimage(ParentKind::Instruction, "k", "COPY . /src", &[]);
        for n in 0..20_000 {
            let content = if n == 12_345 { changed } else { "sha256:same" };
            p.push(file(&format!("src/f{n}.go"), content));
        }
        crate::debug::preimage::read_preimage(&serde_json::to_value(&p).unwrap()).unwrap()
    };
    let (a, b) = (files("sha256:old"), files("sha256:new"));
    let changes = compare_parts(&a, &b);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].name, "src/f12345.go");
    let step = |parts| Step {
        parts: Some(parts),
        ..Step::default()
    };
    let candidates = [step(b)];
    assert!(nearest(&step(a), &candidates).is_some());
}
