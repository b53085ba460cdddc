//! What kbuild does differently inside a Tekton step: the results files a Task exposes
//! (`IMAGE_DIGEST`, `IMAGE_URL`, `IMAGE_REF`) and Kaniko's digest files, and releasing debug
//! breakpoints without a shell. Nothing here talks to the Kubernetes API: a step's own filesystem
//! holds everything.

pub mod debug;
pub mod results;

pub use debug::{Breakpoint, DebugError, Release, TEKTON_DIR};
pub use results::{ResultFiles, ResultsError, write_results};
