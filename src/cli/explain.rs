//! `kbuild explain`: flags, then the `debug` module's explain for a kbuild report, a Kaniko log
//! or a Dockerfile, then stdout.
//!
//! Runs as well in a paused, shell-less Tekton step (`kubectl exec POD -c step-build --
//! /kbuild explain`): it reads the report where the build wrote it (`/kaniko/report.json` in a
//! container), needs no HOME, and reads registry credentials where `kbuild build` does.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;

use crate::debug::DebugError;
use crate::debug::explain::{ReportOptions, explain_report};
use crate::debug::kaniko::{KanikoOptions, explain_dockerfile, explain_log};
use crate::debug::render;
use crate::debug::report::BuildReport;
use crate::error::Error;
use crate::plan::{Plan, PlanOptions};
use crate::platform::Platform;

use super::build_args::{RegistryArgs, parse_go_duration};
use super::cache::{Format, client, json, print, runtime, stdout_style};
use super::plan::{locate_dockerfile, resolve_build_args};

/// Flags of `kbuild explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The build report to explain (a file, or a directory holding report.json) [default:
    /// report.json in the work directory, where `kbuild build` writes it]
    #[arg(long, value_name = "FILE", conflicts_with = "kaniko_log")]
    pub report: Option<PathBuf>,

    /// The build's work directory, for the default report [env: KANIKO_DIR] [default: /kaniko in
    /// a container, $TMPDIR/kbuild elsewhere]
    #[arg(long, env = "KANIKO_DIR", hide_env = true, value_name = "DIR")]
    pub kaniko_dir: Option<PathBuf>,

    /// Explain a Kaniko executor's log instead: which cross-stage files were never saved, which
    /// cache entries were used, and whether their layers hold the missing files
    #[arg(long, value_name = "FILE")]
    pub kaniko_log: Option<PathBuf>,

    /// The Dockerfile: alone, a static check for paths under the build container's mount
    /// points; with --kaniko-log, that check is added
    #[arg(short = 'f', long, value_name = "PATH")]
    pub dockerfile: Option<PathBuf>,

    /// Build context the Dockerfile path is relative to
    #[arg(short = 'c', long, default_value = ".", value_name = "CONTEXT")]
    pub context: String,

    /// Build argument NAME=VALUE for planning the Dockerfile (repeatable)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,

    /// The stage the build targets (name or index)
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Cache repository to read entries from [default: the report's, or the one the Kaniko log
    /// names]
    #[arg(long, value_name = "REPO")]
    pub cache_repo: Option<String>,

    /// A mount point of the build container besides /workspace, /tekton, /builds and /var/run
    /// (the Kaniko build's --ignore-path; repeatable)
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<String>,

    /// How long a cache entry stays valid after it was created (Go duration)
    #[arg(long, default_value = "336h", value_parser = parse_go_duration, value_name = "DURATION")]
    pub cache_ttl: Duration,

    /// An earlier build's report: cache misses are explained against its keys
    #[arg(long, value_name = "REPORT")]
    pub compare: Option<PathBuf>,

    /// Do not contact any registry (explain from the report or log alone)
    #[arg(long)]
    pub offline: bool,

    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn plan_of(args: &ExplainArgs, dockerfile: &std::path::Path) -> Result<(Plan, String), Error> {
    let path = locate_dockerfile(dockerfile, &args.context)?;
    let bytes = std::fs::read(&path).map_err(|source| DebugError::Read {
        what: "Dockerfile",
        path: path.clone(),
        source,
    })?;
    let name = dockerfile.display().to_string();
    let df = crate::dockerfile::parse_bytes(&bytes, &name)?;
    let options = PlanOptions {
        build_args: resolve_build_args(&args.build_args, |k| std::env::var(k).ok())?,
        target: args.target.clone(),
        platform: Platform::host(),
        build_platform: Platform::host(),
    };
    Ok((Plan::new(&df, &options)?, path.display().to_string()))
}

/// Runs `kbuild explain`.
pub fn run(args: &ExplainArgs) -> Result<(), Error> {
    let explanation = if let Some(log_path) = &args.kaniko_log {
        let text = std::fs::read(log_path).map_err(|source| DebugError::Read {
            what: "Kaniko log",
            path: log_path.clone(),
            source,
        })?;
        let log = crate::debug::kaniko_log::parse(&String::from_utf8_lossy(&text));
        let plan = match &args.dockerfile {
            Some(d) => Some(plan_of(args, d)?.0),
            None => None,
        };
        let runtime = runtime()?;
        let client = client(&args.registry)?;
        explain_log(
            &log,
            &log_path.display().to_string(),
            plan.as_ref(),
            &client,
            runtime.handle(),
            &KanikoOptions {
                ignore_paths: args.ignore_paths.clone(),
                cache_repo: args.cache_repo.clone(),
                use_registry: !args.offline,
            },
        )
    } else if let (Some(dockerfile), None) = (&args.dockerfile, &args.report) {
        let (plan, source) = plan_of(args, dockerfile)?;
        explain_dockerfile(&plan, &source, &args.ignore_paths)
    } else {
        let path = crate::build::report_location(
            args.report.as_deref(),
            &crate::build::work_root(args.kaniko_dir.as_deref()),
        );
        let report = BuildReport::read(&path)?;
        let baseline = match &args.compare {
            Some(p) => Some(BuildReport::read(p)?),
            None => None,
        };
        let runtime = runtime()?;
        let client = client(&args.registry)?;
        explain_report(
            &report,
            &path.display().to_string(),
            &client,
            runtime.handle(),
            &ReportOptions {
                cache_repo: args.cache_repo.clone(),
                use_registry: !args.offline,
                ttl: args.cache_ttl,
                now: SystemTime::now(),
                baseline,
            },
        )
    };
    print(&match args.format {
        Format::Json => json(&explanation)?,
        Format::Text => render::explanation(&explanation, stdout_style()),
    })
}
