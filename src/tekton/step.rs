//! What to tell a user whose build failed in a step that is now paused at a Tekton debug
//! breakpoint: the exact `kubectl exec` commands to run next, with this pod's and this step
//! container's names filled in.
//!
//! Everything comes from the step itself. The pod name is `$HOSTNAME` (Kubernetes sets a
//! container's hostname, and so `HOSTNAME`, to the pod name). The namespace is the service
//! account's `namespace` file when the token is mounted. The container name (`step-<name>`) comes
//! from `/tekton/steps`, where Tekton's init container links `step-<name>` and `<n>` to
//! `/tekton/run/<n>/status` (older Tekton releases made `step-<name>` a directory and linked `<n>`
//! to it; both layouts are read). Whatever cannot be found is printed as a `<placeholder>`, so the
//! commands stay runnable after one edit rather than being left out.

use std::fmt;
use std::path::{Path, PathBuf};

use super::debug::Breakpoint;

/// Where Kubernetes mounts the pod's namespace with the service account token.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The commands to run after a build failed in a step paused at a debug breakpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugHint {
    /// The step's index (`/tekton/debug/info/<n>`).
    pub step: u32,
    /// The pod name, when known.
    pub pod: Option<String>,
    /// The pod's namespace, when known.
    pub namespace: Option<String>,
    /// The step's container name (`step-<name>`), when known.
    pub container: Option<String>,
    /// The build report, as a path inside the step container.
    pub report: PathBuf,
}

impl DebugHint {
    /// The hint for this process's step, or None when the TaskRun configured no breakpoint (a
    /// failure then ends the step as usual, and there is nothing to release).
    pub fn detect(report: &Path) -> Option<DebugHint> {
        let tekton = super::tekton_dir();
        let breakpoint = Breakpoint::find(&tekton).ok()?;
        let pod = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty());
        let namespace = std::fs::read_to_string(NAMESPACE_FILE)
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        Some(DebugHint {
            step: breakpoint.step,
            pod,
            namespace,
            container: step_container(&tekton, breakpoint.step),
            report: report.to_path_buf(),
        })
    }

    /// `kubectl exec [-n <namespace>] <pod> -c <container> --`, the prefix of every command.
    fn exec_prefix(&self) -> String {
        let mut prefix = String::from("kubectl exec");
        if let Some(ns) = &self.namespace {
            prefix.push_str(" -n ");
            prefix.push_str(&shell_word(ns));
        }
        prefix.push(' ');
        prefix.push_str(&self.pod.as_deref().map_or("<pod>".into(), shell_word));
        prefix.push_str(" -c ");
        prefix.push_str(
            &self
                .container
                .as_deref()
                .map_or("step-<name>".into(), shell_word),
        );
        prefix.push_str(" --");
        prefix
    }

    /// The three commands, in the order to run them: explain the failure, then end the step as
    /// failed, or mark it successful.
    pub fn commands(&self) -> [String; 3] {
        let prefix = self.exec_prefix();
        let report = shell_word(&format!("--report={}", self.report.display()));
        [
            format!("{prefix} /kbuild explain {report}"),
            format!("{prefix} /kbuild debug fail-continue"),
            format!("{prefix} /kbuild debug continue"),
        ]
    }
}

impl fmt::Display for DebugHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [explain, fail, cont] = self.commands();
        write!(
            f,
            "this step (number {}) now pauses at its Tekton debug breakpoint; from a machine with \
             kubectl, run:\n  # why the build failed\n  {explain}\n  # then end the step as \
             failed, or mark it successful\n  {fail}\n  {cont}",
            self.step
        )
    }
}

/// The container name of step `step` from the links in `<tekton>/steps`.
fn step_container(tekton: &Path, step: u32) -> Option<String> {
    let steps = tekton.join("steps");
    let status = Path::new("run").join(step.to_string()).join("status");
    let by_index = std::fs::read_link(steps.join(step.to_string())).ok();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&steps).ok()?.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with("step-") {
            continue;
        }
        let matches = match std::fs::read_link(entry.path()) {
            // Today's layout: both names link to /tekton/run/<n>/status.
            Ok(target) => target.ends_with(&status) || by_index.as_ref() == Some(&target),
            // The old layout: step-<name> is the directory that <n> links to.
            Err(_) => by_index
                .as_ref()
                .is_some_and(|t| t.file_name() == Some(entry.file_name().as_os_str())),
        };
        if matches {
            found.push(name);
        }
    }
    // Two candidates would mean a layout this code does not understand: say nothing rather
    // than name the wrong container.
    (found.len() == 1).then(|| found.remove(0))
}

/// `word` as one shell word: unchanged when it only holds characters no shell treats specially,
/// else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn hint(pod: Option<&str>, namespace: Option<&str>, container: Option<&str>) -> DebugHint {
        DebugHint {
            step: 0,
            pod: pod.map(Into::into),
            namespace: namespace.map(Into::into),
            container: container.map(Into::into),
            report: PathBuf::from("/workspace/cache/report.json"),
        }
    }

    #[test]
    fn commands_name_the_pod_and_the_step_container() {
        let h = hint(Some("build-abc-pod"), None, Some("step-build-and-push"));
        assert_eq!(
            h.commands(),
            [
                "kubectl exec build-abc-pod -c step-build-and-push -- /kbuild explain \
                 --report=/workspace/cache/report.json",
                "kubectl exec build-abc-pod -c step-build-and-push -- /kbuild debug fail-continue",
                "kubectl exec build-abc-pod -c step-build-and-push -- /kbuild debug continue",
            ]
        );
        let text = h.to_string();
        assert!(text.ends_with("/kbuild debug continue"), "{text}");
    }

    #[test]
    fn a_namespace_is_passed_and_unknown_names_are_placeholders() {
        let h = hint(None, Some("ci"), None);
        assert_eq!(
            h.commands()[1],
            "kubectl exec -n ci <pod> -c step-<name> -- /kbuild debug fail-continue"
        );
    }

    #[test]
    fn odd_report_paths_are_quoted_for_the_shell() {
        let mut h = hint(Some("p"), None, Some("step-x"));
        h.report = PathBuf::from("/work space/it's.json");
        assert_eq!(
            h.commands()[0],
            r"kubectl exec p -c step-x -- /kbuild explain '--report=/work space/it'\''s.json'"
        );
    }

    #[test]
    fn the_container_is_found_through_tektons_step_links() {
        let dir = tempfile::tempdir().unwrap();
        let steps = dir.path().join("steps");
        std::fs::create_dir_all(&steps).unwrap();
        for (i, name) in ["step-clone", "step-build-and-push"].iter().enumerate() {
            let target = format!("/tekton/run/{i}/status");
            symlink(&target, steps.join(name)).unwrap();
            symlink(&target, steps.join(i.to_string())).unwrap();
        }
        assert_eq!(
            step_container(dir.path(), 1).as_deref(),
            Some("step-build-and-push")
        );
        assert_eq!(step_container(dir.path(), 0).as_deref(), Some("step-clone"));
        assert_eq!(step_container(dir.path(), 2), None);
    }

    #[test]
    fn the_container_is_found_in_older_tektons_layout() {
        let dir = tempfile::tempdir().unwrap();
        let steps = dir.path().join("steps");
        std::fs::create_dir_all(steps.join("step-unnamed-0")).unwrap();
        symlink("/tekton/steps/step-unnamed-0", steps.join("0")).unwrap();
        assert_eq!(
            step_container(dir.path(), 0).as_deref(),
            Some("step-unnamed-0")
        );
    }

    #[test]
    fn no_steps_directory_means_no_container_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(step_container(dir.path(), 0), None);
    }
}
