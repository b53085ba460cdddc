//! kbuild: a daemonless, unprivileged Dockerfile builder that accepts the Kaniko executor's flags,
//! and a debugger for its layer cache and Kaniko's.
//!
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit codes; everything else
//! lives in the modules below, layered as `../shared/DESIGN.md` describes: data flows from `cli`
//! down, and no module reaches back up to one that uses it.

pub mod build;
pub mod cache;
pub mod cli;
pub mod context;
pub mod debug;
pub mod digest;
pub mod dockerfile;
pub mod error;
pub mod exec;
pub mod fs;
pub mod image;
pub mod plan;
pub mod platform;
pub mod registry;
pub mod tekton;

pub use error::Error;
