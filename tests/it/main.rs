//! kbuild's integration tests: one test binary, one module per area, sharing the harness.

mod cli;
mod fs;
mod harness;
