//! kbuild's integration tests: one test binary, one module per area, sharing the harness.

mod cli;
mod exec;
mod harness;
mod tekton;
mod tekton_yaml;
