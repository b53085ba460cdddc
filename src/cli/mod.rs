//! The command line: clap definitions, the Kaniko-compatible entry point, and the mapping from
//! errors to exit codes.
//!
//! `kbuild` with executor flags and no subcommand means `kbuild build`, so a Tekton Task that ran
//! `/kaniko/executor` with its args runs `/kbuild` with the same args. Subcommands appear here only
//! once they work; nothing is listed in `--help` that would only say "not supported".

pub mod build;
pub mod build_args;
pub mod cache;
pub mod explain;
pub mod logging;
pub mod plan;
pub mod registry_options;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Error;
pub use build_args::BuildArgs;
pub use logging::LogArgs;

/// kbuild builds container images from Dockerfiles without a daemon or privileges. It accepts the
/// Kaniko executor's flags: `kbuild --dockerfile=Dockerfile --destination=IMAGE` is `kbuild build`.
#[derive(Parser, Debug)]
#[command(
    name = "kbuild",
    version,
    args_conflicts_with_subcommands = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Executor flags given without a subcommand (Kaniko's form).
    #[command(flatten)]
    pub build: BuildArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// kbuild's subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile and push it (the Kaniko executor)
    Build(Box<BuildArgs>),
    /// Show what a Dockerfile builds: stages, expanded instructions, cross-stage dependencies
    Plan(plan::PlanArgs),
    /// Release a paused Tekton debug breakpoint without a shell
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Look into a layer cache (kbuild's or Kaniko's): entries, preimages, layer files, key diffs
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Explain why the last build failed or missed the cache; or a Kaniko log; or a Dockerfile
    Explain(Box<explain::ExplainArgs>),
}

/// `kbuild debug` subcommands, for `kubectl exec <pod> -c step-<name> -- /kbuild debug ...`.
#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Mark the paused step successful and let the TaskRun continue (Tekton's debug-continue)
    Continue(DebugArgs),
    /// Mark the paused step failed and let the TaskRun continue (Tekton's debug-fail-continue)
    FailContinue(DebugArgs),
}

/// Where the step's Tekton files are.
#[derive(clap::Args, Debug)]
pub struct DebugArgs {
    /// The directory Tekton mounts into every step [default: /tekton]
    #[arg(long, value_name = "DIR")]
    pub tekton_dir: Option<std::path::PathBuf>,
}

/// Parses the process arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    // The RUN sandbox helper is kbuild re-executed; it is not a user-facing command.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__sandbox") {
        return crate::exec::sandbox::main();
    }
    let cli = Cli::parse();
    logging::init(&cli.log);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Build(args)) => build::run(&args, &cli.log),
        Some(Command::Debug(command)) => debug(command),
        Some(Command::Plan(args)) => plan::run(&args),
        Some(Command::Cache(command)) => cache::run(&command),
        Some(Command::Explain(args)) => explain::run(&args),
        None => build::run(&cli.build, &cli.log),
    }
}

fn debug(command: DebugCommand) -> Result<(), Error> {
    let (args, how) = match command {
        DebugCommand::Continue(args) => (args, crate::tekton::Release::Continue),
        DebugCommand::FailContinue(args) => (args, crate::tekton::Release::FailContinue),
    };
    let tekton = args.tekton_dir.unwrap_or_else(crate::tekton::tekton_dir);
    let breakpoint = crate::tekton::Breakpoint::find(&tekton)?;
    let code = breakpoint.release(how)?;
    println!(
        "released the breakpoint of step {}: the step ends with exit code {code}",
        breakpoint.step
    );
    Ok(())
}
