//! What kbuild does differently inside a Tekton step: the results files a Task exposes
//! (`IMAGE_DIGEST`, `IMAGE_URL`, `IMAGE_REF`) and Kaniko's digest files, releasing debug
//! breakpoints without a shell, and telling a user whose build failed at a breakpoint which
//! commands to run next. Nothing here talks to the Kubernetes API: a step's own filesystem and
//! environment hold everything.
//!
//! Every path under `/tekton` is found through [`tekton_dir`]: `/tekton`, unless the hidden
//! environment variable `KBUILD_TEKTON_DIR` names another directory. The test suite uses it to lay
//! out what Tekton gives a step in a temp dir; it is not meant for users (`kbuild debug` has
//! `--tekton-dir` for that) and is not listed in `--help`.

pub mod debug;
pub mod results;
pub mod step;

use std::path::PathBuf;

pub use debug::{Breakpoint, DebugError, Release, TEKTON_DIR};
pub use results::{ResultFiles, ResultsError, write_results};
pub use step::DebugHint;

/// The environment variable that moves [`TEKTON_DIR`] (for tests).
pub const TEKTON_DIR_ENV: &str = "KBUILD_TEKTON_DIR";

/// The directory Tekton mounts into every step: `$KBUILD_TEKTON_DIR` when set and not empty,
/// else `/tekton`.
pub fn tekton_dir() -> PathBuf {
    std::env::var_os(TEKTON_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(TEKTON_DIR))
}
