//! Explaining Kaniko builds: the mount-point cache poisoning of CONTEXT.md section 2, found
//! from a Kaniko log (and the cache entries it used), or statically from a Dockerfile.
//!
//! Kaniko builds in its own container's `/` and leaves every mount point out of snapshots, so a
//! RUN that writes under Tekton's `/workspace` pushes a cache entry whose layer lacks what it
//! wrote. On a cache miss the file is on the live volume and the build works; on a hit the
//! empty layer stands in for the RUN, the file never exists, Kaniko's end-of-stage copy of
//! cross-stage files skips it silently, and a later `COPY --from` fails far from the cause. The
//! log shows every piece: the dependencies (`Built cross stage deps`), the hits
//! (`Using caching version of cmd`), what was kept (`Saving file ... for later use`) and the
//! final `lstat /kaniko/<stage>/...` error. The entries it names are read, and their layers
//! streamed, to confirm the paths are not inside.
//!
//! The static check needs no build: cross-stage sources and WORKDIRs under a mount point are
//! the precondition of the bug, so they are flagged from the plan alone.

use std::collections::BTreeMap;

use serde::Serialize;

use super::explain::rules::{registry_findings, short_key};
use super::explain::{
    EntryEvidence, Evidence, Explanation, Finding, Rule, check_layer, delete_command,
};
use super::kaniko_log::{CheckResult, KanikoLog};
use super::layer::{PathMatcher, normalize};
use super::repo::{CacheRepo, parse_target};
use crate::dockerfile::Instruction;
use crate::plan::{Plan, Producer};

/// The build container's mount points Kaniko leaves out of snapshots: Tekton's `/workspace`
/// and `/tekton`, GitLab's `/builds`, and `/var/run` (`--ignore-var-run`, on by default).
pub const MOUNT_POINTS: &[&str] = &["/workspace", "/tekton", "/builds", "/var/run"];

/// The mount point (from [`MOUNT_POINTS`] and `extra`, the `--ignore-path` values) `path` is
/// under, if any.
pub fn mount_of(path: &str, extra: &[String]) -> Option<String> {
    let path = normalize(path);
    MOUNT_POINTS
        .iter()
        .map(|m| m.to_string())
        .chain(extra.iter().map(|m| normalize(m)))
        .filter(|m| m != "/")
        .find(|m| path == *m || path.starts_with(&format!("{m}/")))
}

/// Where to look for the entries a Kaniko log names.
pub struct KanikoOptions {
    /// `--ignore-path` values of the Kaniko build (more mount points).
    pub ignore_paths: Vec<String>,
    /// The cache repository to read entries from instead of the one in the log.
    pub cache_repo: Option<String>,
    /// False: do not read cache entries.
    pub use_registry: bool,
}

/// A cross-stage file a stage never saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsaved {
    pub stage: usize,
    pub path: String,
    pub mount: Option<String>,
}

/// The dependencies of stages that finished (a later stage started) that no saved file matches.
pub fn unsaved(log: &KanikoLog, extra_mounts: &[String]) -> Vec<Unsaved> {
    let last_started = log.stages.iter().map(|s| s.index).max();
    let mut out = Vec::new();
    for (stage, paths) in &log.cross_stage_deps {
        if last_started.is_none_or(|last| last <= *stage) {
            continue;
        }
        for path in paths {
            let Ok(matcher) = PathMatcher::new(path) else {
                continue;
            };
            if !log.was_saved(*stage, &matcher) {
                out.push(Unsaved {
                    stage: *stage,
                    path: normalize(path),
                    mount: mount_of(path, extra_mounts),
                });
            }
        }
    }
    if let Some(missing) = &log.missing
        && !out.iter().any(|u| u.path == missing.path)
    {
        out.push(Unsaved {
            stage: missing.stage,
            path: missing.path.clone(),
            mount: mount_of(&missing.path, extra_mounts),
        });
    }
    out
}

/// Explains a Kaniko log; `plan` (from `--dockerfile`) adds the static findings.
pub fn explain_log(
    log: &KanikoLog,
    source: &str,
    plan: Option<&Plan>,
    client: &crate::registry::RegistryClient,
    handle: &tokio::runtime::Handle,
    options: &KanikoOptions,
) -> Explanation {
    let mut out = Explanation::new("kaniko-log", source);
    out.build = Some(super::explain::BuildSummary {
        success: log.error.is_none(),
        error_kind: None,
        exit_code: log.exit_status,
        error: log.error.clone(),
    });
    if log.cache_checks.is_empty() && log.cross_stage_deps.is_empty() && log.error.is_none() {
        out.notes.push(format!(
            "no Kaniko cache or cross-stage lines found in {} lines; is this a Kaniko executor log?",
            log.lines
        ));
    }
    let repo = match (&options.cache_repo, log.cache_repos().first()) {
        _ if !options.use_registry => None,
        (Some(r), _) | (None, Some(r)) => match parse_target(r) {
            Ok(t) => Some(CacheRepo::new(t.location, client.clone())),
            Err(e) => {
                out.notes
                    .push(format!("cannot use cache repository {r}: {e}"));
                None
            }
        },
        (None, None) => None,
    };
    if !options.use_registry
        && log
            .cache_checks
            .iter()
            .any(|c| c.result == CheckResult::Hit)
    {
        out.notes
            .push("cache entries were not read (--offline): layers not checked".into());
    }
    for u in unsaved(log, &options.ignore_paths) {
        out.findings
            .push(unsaved_finding(log, &u, plan, repo.as_ref(), handle));
    }
    if let (Some(code), Some(error)) = (log.exit_status, &log.error) {
        let (stage, command) = log.last_command.clone().unwrap_or((None, "RUN ?".into()));
        out.findings.push(Finding::new(
            Rule::RunFailed,
            format!("{command} failed with exit code {code}"),
            Evidence {
                stage: stage.map(|s| s.to_string()),
                instruction: Some(command),
                exit_code: Some(code),
                notes: vec![error.clone()],
                ..Evidence::default()
            },
            "The command itself failed. Read its output above the error in the log; Kaniko \
             exits with code 1 whatever the command's code was (kbuild passes the command's \
             code on).",
        ));
    } else if let Some(error) = &log.error {
        registry_findings(error, &mut out.findings);
    }
    if let Some(plan) = plan {
        out.findings
            .extend(static_check(plan, &options.ignore_paths));
    }
    out.sort();
    out
}

fn unsaved_finding(
    log: &KanikoLog,
    u: &Unsaved,
    plan: Option<&Plan>,
    repo: Option<&CacheRepo>,
    handle: &tokio::runtime::Handle,
) -> Finding {
    let hits: Vec<_> = log
        .checks_in(u.stage)
        .filter(|c| c.result == CheckResult::Hit)
        .collect();
    let entries: Vec<EntryEvidence> = hits
        .iter()
        .map(|c| {
            let entry_ref = match repo {
                Some(r) => format!("{}:{}", r.name(), c.key),
                None => c.entry.clone(),
            };
            let mut e = match repo {
                Some(r) => check_layer(r, handle, &entry_ref, std::slice::from_ref(&u.path), None),
                None => EntryEvidence {
                    entry: entry_ref,
                    ..EntryEvidence::default()
                },
            };
            e.instruction = c.command.clone().or(e.instruction);
            e
        })
        .collect();
    // Kaniko's log names stages by index and base; the Dockerfile (when given) by name.
    let base = match plan.and_then(|p| p.stages.get(u.stage)) {
        Some(stage) => format!(" ({})", stage.display_name()),
        None => log
            .stages
            .iter()
            .find(|s| s.index == u.stage)
            .map(|s| format!(" (FROM {})", s.base))
            .unwrap_or_default(),
    };
    let mut evidence = Evidence {
        stage: Some(format!("{}{base}", u.stage)),
        path: Some(u.path.clone()),
        entries: entries.clone(),
        ..Evidence::default()
    };
    if let Some(missing) = &log.missing
        && missing.path == u.path
        && let Some(error) = &log.error
    {
        evidence.notes.push(format!("Kaniko failed: {error}"));
    }
    let saved: Vec<&str> = log
        .saved
        .iter()
        .filter(|s| s.stage == Some(u.stage))
        .map(|s| s.path.as_str())
        .collect();
    if !saved.is_empty() {
        evidence.notes.push(format!(
            "stage {} saved only: {}",
            u.stage,
            saved.join(", ")
        ));
    }
    for e in entries.iter().filter(|e| e.error.is_some()) {
        evidence.notes.push(format!(
            "could not read {}: {}",
            e.entry,
            e.error.as_deref().unwrap_or_default()
        ));
    }
    let confirmed = entries.iter().any(|e| e.has_path == Some(false))
        && !entries.iter().any(|e| e.has_path == Some(true));
    let name = u.path.rsplit('/').next().unwrap_or(&u.path);
    match (&u.mount, hits.is_empty()) {
        (Some(mount), false) => {
            let deletes: Vec<String> = entries
                .iter()
                .filter(|e| {
                    e.instruction
                        .as_deref()
                        .is_none_or(|i| i.starts_with("RUN"))
                })
                .map(|e| delete_command(&e.entry))
                .collect();
            evidence.notes.push(format!(
                "Kaniko builds in its own container's / and leaves every mount point out of \
                 snapshots; {mount} is one (Tekton mounts /workspace into every step). A RUN that \
                 writes under {mount} pushes a cache layer without those files: the entry is \
                 poisoned. On a cache miss the file is on the live volume and the build works; on \
                 a hit the cached layer replaces the RUN, {name} never exists, Kaniko skips it \
                 silently when it saves stage {}'s files, and the COPY --from of a later stage \
                 fails.",
                u.stage
            ));
            if confirmed {
                evidence.notes.push(format!(
                    "confirmed: the layers of the cache entries used do not contain {}",
                    u.path
                ));
            }
            let summary = format!(
                "stage {} never saved {} ({name}): it is under {mount}, a mount point Kaniko does \
                 not snapshot, and {} cached RUN layer(s) stood in for the step that builds it",
                u.stage,
                u.path,
                hits.len()
            );
            let fix = format!(
                "1. Build outside the mount: copy the sources to a directory that is not a mount \
                 point (`COPY . /src` and `WORKDIR /src` instead of {mount}) and copy from there \
                 in later stages; or run Kaniko with `--cache-run-layers=false` (or \
                 `--cache=false`); or build with kbuild, whose stages build in their own \
                 directories where the step's mounts never appear.\n2. Delete the poisoned \
                 entries with the commands below: every RUN entry the stage used, since any of \
                 them may be the one whose layer lost the file (deleting costs only a rebuild). \
                 Until then, any Kaniko build with --cache hits them again."
            );
            Finding::new(Rule::KanikoPoisonedCache, summary, evidence, fix).with_commands(deletes)
        }
        _ => {
            if let Some(mount) = &u.mount {
                evidence.notes.push(format!(
                    "{} is under {mount}, a mount point: a RUN writing there only works while \
                     no cached layer replaces it",
                    u.path
                ));
            }
            let used: Vec<String> = hits
                .iter()
                .map(|c| {
                    format!(
                        "{} ({})",
                        short_key(&c.key),
                        c.command.as_deref().unwrap_or("?")
                    )
                })
                .collect();
            if !used.is_empty() {
                evidence.notes.push(format!(
                    "cache hits in stage {}: {}",
                    u.stage,
                    used.join(", ")
                ));
            }
            Finding::new(
                Rule::KanikoDepNotSaved,
                format!(
                    "stage {} never saved {}, which a later stage copies: the stage did not create it",
                    u.stage, u.path
                ),
                evidence,
                "Kaniko copies a stage's cross-stage files when the stage ends and skips, \
                 silently, a path that matches nothing. Check that the stage's RUN or COPY creates \
                 exactly that path (build the stage alone with --target and look), and that no \
                 later instruction of the stage deletes it.",
            )
        }
    }
}

/// A cross-stage source under a mount point: path, mount point, instruction, line.
type MountedSource = (String, String, String, usize);

/// KB032: cross-stage sources and WORKDIRs under a mount point, from the plan alone.
pub fn static_check(plan: &Plan, extra_mounts: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    let fix = "Use a directory that is not a mount point of the build container (e.g. /src) \
               for the WORKDIR, the COPY destination and the paths later stages copy. Under \
               Kaniko, files a RUN writes below a mount point are missing from its layers and \
               cache entries; kbuild is not affected (each stage has its own root directory), \
               but the Dockerfile breaks again the day it is built with Kaniko.";
    // One finding per (consumer, producer): the paths and lines it copies from under a mount.
    let mut groups: BTreeMap<(usize, usize), Vec<MountedSource>> = BTreeMap::new();
    for dep in plan.deps.iter().filter(|d| d.reachable) {
        let Producer::Stage(producer) = dep.producer else {
            continue;
        };
        for p in &dep.paths {
            if let Some(m) = mount_of(p, extra_mounts) {
                groups.entry((dep.consumer, producer)).or_default().push((
                    p.clone(),
                    m,
                    dep.instruction.clone(),
                    dep.line,
                ));
            }
        }
    }
    for ((consumer, producer), paths) in groups {
        let (path, mount, instruction, line) = &paths[0];
        let producer_name = plan.stages[producer].display_name();
        let consumer = plan.stages[consumer].display_name();
        let what = match paths.len() {
            1 => path.clone(),
            n => format!("{n} paths"),
        };
        out.push(Finding::new(
            Rule::MountPointPath,
            format!(
                "stage {consumer} copies {what} from stage {producer_name} under {mount}, a mount \
                 point of the build container"
            ),
            Evidence {
                stage: Some(consumer),
                instruction: Some(instruction.clone()),
                location: Some(format!("{}:{line}", plan.dockerfile)),
                path: Some(path.clone()),
                notes: paths
                    .iter()
                    .skip(1)
                    .map(|(p, _, _, l)| format!("also {p} ({}:{l})", plan.dockerfile))
                    .collect(),
                ..Evidence::default()
            },
            fix,
        ));
    }
    for stage in plan.stages.iter().filter(|s| s.reachable) {
        let mut dir = "/".to_string();
        for i in &stage.instructions {
            let Instruction::Workdir(w) = &i.instruction else {
                continue;
            };
            dir = if w.starts_with('/') {
                normalize(w)
            } else {
                normalize(&format!("{dir}/{w}"))
            };
            if let Some(mount) = mount_of(&dir, extra_mounts) {
                out.push(Finding::new(
                    Rule::MountPointPath,
                    format!(
                        "stage {} works in {dir}, under {mount}, a mount point of the build \
                         container",
                        stage.display_name()
                    ),
                    Evidence {
                        stage: Some(stage.display_name()),
                        instruction: Some(i.text.clone()),
                        location: Some(format!("{}:{}", plan.dockerfile, i.line)),
                        path: Some(dir.clone()),
                        ..Evidence::default()
                    },
                    fix,
                ));
            }
        }
    }
    out
}

/// Explains a Dockerfile without a build: the static check only.
pub fn explain_dockerfile(plan: &Plan, source: &str, extra_mounts: &[String]) -> Explanation {
    let mut out = Explanation::new("dockerfile", source);
    out.findings = static_check(plan, extra_mounts);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Keychain, RegistryClient, RegistryOptions};

    fn explain_offline(log: &str) -> Explanation {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let client = RegistryClient::new(RegistryOptions::default(), Keychain::anonymous());
        let options = KanikoOptions {
            ignore_paths: Vec::new(),
            cache_repo: None,
            use_registry: false,
        };
        let log = super::super::kaniko_log::parse(log);
        explain_log(&log, "test.log", None, &client, runtime.handle(), &options)
    }

    fn ids(x: &Explanation) -> Vec<&'static str> {
        x.findings.iter().map(|f| f.id.id()).collect()
    }

    #[test]
    fn a_failed_run_in_a_kaniko_log_is_kb001() {
        let x = explain_offline(
            "INFO[0001] Building stage 'alpine' [idx: '0', base-idx: '-1']\n\
             INFO[0002] RUN make all\n\
             error building image: error building stage: failed to execute command: waiting for process to exit: exit status 2\n",
        );
        assert_eq!(ids(&x), ["KB001"]);
        let f = &x.findings[0];
        assert_eq!(f.evidence.exit_code, Some(2));
        assert_eq!(f.evidence.instruction.as_deref(), Some("RUN make all"));
        assert_eq!(x.build.as_ref().unwrap().exit_code, Some(2));
    }

    #[test]
    fn registry_errors_in_a_kaniko_log_are_kb003_and_kb004() {
        let auth = explain_offline(
            "error building image: error checking push permissions -- make sure you entered the \
             correct tag name, and that you are authenticated correctly, and try again: checking \
             push permission for \"reg.example/app:1\": POST https://reg.example/v2/app/blobs/uploads/: \
             UNAUTHORIZED: authentication required\n",
        );
        assert_eq!(ids(&auth), ["KB003"]);
        assert!(
            auth.findings[0].summary.contains("reg.example"),
            "{}",
            auth.findings[0].summary
        );
        let tls = explain_offline(
            "error building image: GET https://reg.example/v2/: tls: failed to verify certificate: x509: certificate signed by unknown authority\n",
        );
        assert_eq!(ids(&tls), ["KB004"]);
        let other = explain_offline(
            "error building image: parsing dockerfile: unknown instruction: RUNN\n",
        );
        assert!(other.findings.is_empty());
    }

    #[test]
    fn a_log_without_kaniko_lines_says_so() {
        let x = explain_offline("hello\nworld\n");
        assert!(x.findings.is_empty());
        assert!(
            x.notes[0].contains("is this a Kaniko executor log?"),
            "{:?}",
            x.notes
        );
    }

    #[test]
    fn mount_points_include_ignore_paths() {
        assert_eq!(mount_of("/workspace/a/b", &[]), Some("/workspace".into()));
        assert_eq!(mount_of("workspace", &[]), Some("/workspace".into()));
        assert_eq!(mount_of("/workspaces/a", &[]), None);
        assert_eq!(mount_of("/var/run/x", &[]), Some("/var/run".into()));
        assert_eq!(
            mount_of("/cache/x", &["/cache/".into()]),
            Some("/cache".into())
        );
        assert_eq!(mount_of("/src/app", &["/".into()]), None);
    }
}
