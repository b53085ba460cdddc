//! Tekton integration. For now only the results files a Task exposes (`IMAGE_DIGEST`,
//! `IMAGE_URL`, `IMAGE_REF`) and Kaniko's digest files; breakpoint release and environment
//! detection come later.

pub mod results;

pub use results::{ResultFiles, ResultsError, write_results};
