//! Releasing a Tekton debug breakpoint without a shell (CONTEXT.md section 5).
//!
//! Tekton's `/tekton/debug/scripts/debug-continue` and `debug-fail-continue` are `/bin/sh` scripts,
//! useless in a shell-less step image. They find the step's number `<n>` under
//! `/tekton/debug/info/`, then write `/tekton/run/<n>/out` (success) or `out.err` (failure), and
//! `/tekton/run/<n>/out.breakpointexit` holding the exit code the entrypoint should end with. This
//! module does the same, and refuses clearly when the directories say this is not a paused step.
//! It does not talk to the Kubernetes API: everything it needs is in the step's own filesystem.

use std::path::{Path, PathBuf};

/// The Tekton directory every step sees.
pub const TEKTON_DIR: &str = "/tekton";

/// How to leave the breakpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Mark the step successful and let the TaskRun go on.
    Continue,
    /// Mark the step failed; the TaskRun fails as it would have without the breakpoint.
    FailContinue,
}

/// Why a breakpoint cannot be released from here.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error(
        "not inside a Tekton step with a debug breakpoint: {dir} does not exist\n\
         hint: run this with kubectl exec in the step container of a TaskRun that has \
         spec.debug.breakpoints.onFailure: \"enabled\""
    )]
    NotInDebugStep { dir: PathBuf },
    #[error(
        "no step number under {dir}: Tekton puts one entry named after the step's index there\n\
         hint: is this the step container of a TaskRun with debug breakpoints?"
    )]
    NoStepNumber { dir: PathBuf },
    #[error("step {step} is not paused: {done} exists, so the step has already finished")]
    NotPaused { step: u32, done: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The debug breakpoint state of the step this process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breakpoint {
    /// The step's index, from `/tekton/debug/info/<n>`.
    pub step: u32,
    /// `/tekton/run/<n>`.
    pub run_dir: PathBuf,
}

impl Breakpoint {
    /// Finds the step number the way Tekton's scripts do (the last numeric entry of
    /// `<tekton>/debug/info`).
    pub fn find(tekton: &Path) -> Result<Breakpoint, DebugError> {
        let info = tekton.join("debug").join("info");
        let entries = std::fs::read_dir(&info)
            .map_err(|_| DebugError::NotInDebugStep { dir: info.clone() })?;
        let step = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .max()
            .ok_or(DebugError::NoStepNumber { dir: info })?;
        Ok(Breakpoint {
            step,
            run_dir: tekton.join("run").join(step.to_string()),
        })
    }

    /// True when the TaskRun asked for breakpoints, so a failure will pause this step.
    pub fn configured(tekton: &Path) -> bool {
        Breakpoint::find(tekton).is_ok()
    }

    /// Writes the post files that end the pause. Returns the exit code written.
    pub fn release(&self, how: Release) -> Result<i32, DebugError> {
        let out = self.run_dir.join("out");
        let err = self.run_dir.join("out.err");
        let exit = self.run_dir.join("out.breakpointexit");
        for done in [&out, &err, &exit] {
            if done.exists() {
                return Err(DebugError::NotPaused {
                    step: self.step,
                    done: done.clone(),
                });
            }
        }
        let (marker, code) = match how {
            Release::Continue => (out, 0),
            Release::FailContinue => (err, 1),
        };
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|source| DebugError::Write {
                path: path.to_path_buf(),
                source,
            })
        };
        write(&marker, "")?;
        // The marker first: the entrypoint wakes up on breakpointexit and then looks for it.
        write(&exit, &format!("{code}\n"))?;
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paused_step(n: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(format!("debug/info/{n}"))).unwrap();
        std::fs::create_dir_all(dir.path().join(format!("run/{n}"))).unwrap();
        dir
    }

    #[test]
    fn continue_writes_what_debug_continue_writes() {
        let dir = paused_step(2);
        let bp = Breakpoint::find(dir.path()).unwrap();
        assert_eq!(bp.step, 2);
        assert_eq!(bp.release(Release::Continue).unwrap(), 0);
        assert_eq!(std::fs::read(dir.path().join("run/2/out")).unwrap(), b"");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("run/2/out.breakpointexit")).unwrap(),
            "0\n"
        );
        assert!(!dir.path().join("run/2/out.err").exists());
    }

    #[test]
    fn fail_continue_writes_what_debug_fail_continue_writes() {
        let dir = paused_step(0);
        let bp = Breakpoint::find(dir.path()).unwrap();
        assert_eq!(bp.release(Release::FailContinue).unwrap(), 1);
        assert!(dir.path().join("run/0/out.err").exists());
        assert!(!dir.path().join("run/0/out").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("run/0/out.breakpointexit")).unwrap(),
            "1\n"
        );
        // A second release is refused: the step is no longer paused.
        let err = bp.release(Release::Continue).unwrap_err();
        assert!(
            matches!(err, DebugError::NotPaused { step: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn outside_a_debug_step_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err = Breakpoint::find(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("not inside a Tekton step with a debug breakpoint"),
            "{err}"
        );
        assert!(err.contains("hint:"), "{err}");
        std::fs::create_dir_all(dir.path().join("debug/info/notanumber")).unwrap();
        let err = Breakpoint::find(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no step number"), "{err}");
    }
}
