//! kbuild's integration tests: one test binary, one module per area, sharing the harness.

mod build;
mod cache;
mod cli;
mod debug;
mod dockerfile;
mod examples;
mod exec;
mod fs;
mod harness;
mod plan;
mod registry;
mod step_image;
mod tekton;
mod tekton_step;
mod tekton_yaml;
