//! What kbuild does differently inside a Tekton step: releasing debug breakpoints without a shell.
//! Results files are written by the build (they need the pushed digest); this module only knows the
//! step's filesystem layout.

pub mod debug;

pub use debug::{Breakpoint, DebugError, Release, TEKTON_DIR};
