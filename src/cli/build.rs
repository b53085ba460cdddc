//! `kbuild build` (and `kbuild` with Kaniko's flags): from flags to a [`BuildRequest`], then the
//! build on a tokio runtime, then what the user sees when it fails.

use crate::build::{self, BuildRequest};
use crate::context::ContextSpec;
use crate::error::Error;
use crate::fs::{Compression, IgnoreList, LayerOptions, SnapshotMode, Timestamps};
use crate::platform::Platform;

use super::BuildArgs;
use super::build_args;
use super::logging::{LogArgs, LogFormat};
use super::registry_options::{publish_target, registry_options};

/// Flags whose behaviour does not exist yet: using one is an error, never silently ignored.
fn unsupported(args: &BuildArgs) -> Option<(&'static str, &'static str)> {
    if args.git.is_some() {
        return Some((
            "--git",
            "check the repository out into the context directory",
        ));
    }
    None
}

/// Turns the flags into a build request.
pub fn request(args: &BuildArgs, log: &LogArgs) -> Result<BuildRequest, Error> {
    if let Some((what, hint)) = unsupported(args) {
        return Err(Error::NotSupported {
            what: what.into(),
            hint: hint.into(),
        });
    }
    let build_args =
        super::plan::resolve_build_args(&args.build_args, |name| std::env::var(name).ok())?;
    let platform = match &args.custom_platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| Error::Usage(e.to_string()))?,
        None => Platform::host(),
    };
    let mut labels = Vec::new();
    for label in &args.labels {
        let (k, v) = label.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "--label {label:?}: expected KEY=VALUE\nhint: write --label=KEY=VALUE"
            ))
        })?;
        labels.push((k.to_string(), v.to_string()));
    }
    let compression = match args.output.compression {
        build_args::Compression::Gzip => Compression::Gzip,
        build_args::Compression::Zstd => Compression::Zstd,
    };
    let snapshot_mode = match args.snapshot.snapshot_mode {
        build_args::SnapshotMode::Full => SnapshotMode::Full,
        build_args::SnapshotMode::Redo => SnapshotMode::Redo,
        build_args::SnapshotMode::Time => SnapshotMode::Time,
    };
    let cache_dir = Some(args.cache.cache_dir.clone()).filter(|d| !d.as_os_str().is_empty());
    let publish = publish_target(args)?;
    let cache = cache_options(args, &publish.destinations)?;
    let raw_run_output = log.log_format != LogFormat::Json;
    Ok(BuildRequest {
        context: ContextSpec {
            context: args.context.clone(),
            sub_path: args.context_sub_path.clone(),
            dockerfile: args.dockerfile.clone(),
        },
        build_args,
        target: args.target.clone(),
        platform,
        skip_unused_stages: args.skip_unused_stages,
        labels,
        work_dir: args.snapshot.kaniko_dir.clone(),
        cache_dir,
        cleanup: args.snapshot.cleanup,
        snapshot_mode,
        ignore: IgnoreList::from_flags(args.snapshot.ignore_var_run, &args.snapshot.ignore_paths),
        layer: LayerOptions {
            compression,
            level: args.output.compression_level,
            timestamps: Timestamps::from_env(args.output.reproducible),
            ..LayerOptions::default()
        },
        single_snapshot: args.snapshot.single_snapshot,
        force_build_metadata: args.output.force_build_metadata,
        isolation: args.kbuild.isolation,
        max_parallel_stages: args.kbuild.max_parallel_stages,
        reproducible: args.output.reproducible,
        registry: registry_options(
            args,
            std::env::var("KANIKO_REGISTRY_MIRROR").ok().as_deref(),
        )?,
        publish,
        skip_push_permission_check: args.output.skip_push_permission_check,
        report: args.kbuild.report.clone(),
        raw_run_output,
        sandbox_helper: None,
        cache,
        secrets: build::secrets::parse(&args.kbuild.secrets, |name| std::env::var(name).ok())
            .map_err(Error::Usage)?,
    })
}

/// The layer cache's settings, None when it is off.
fn cache_options(
    args: &BuildArgs,
    destinations: &[crate::registry::Reference],
) -> Result<Option<build::CacheOptions>, Error> {
    let cache = &args.cache;
    if !cache.is_enabled() {
        return Ok(None);
    }
    let repo = match (cache.repo(), destinations.first()) {
        (Some(value), _) => {
            crate::cache::CacheRepo::parse(value).map_err(|e| Error::Usage(e.to_string()))?
        }
        (None, Some(destination)) => crate::cache::CacheRepo::default_for(destination),
        (None, None) => {
            return Err(Error::Usage(
                "--cache needs somewhere to keep entries: no --cache-repo and no --destination\n\
                 hint: add --cache-repo=REGISTRY/REPO (or oci:/path), or drop --cache"
                    .into(),
            ));
        }
    };
    Ok(Some(build::CacheOptions {
        repo,
        ttl: cache.cache_ttl,
        run_layers: cache.cache_run_layers,
        copy_layers: cache.cache_copy_layers,
        push: !args.output.no_push_cache,
    }))
}

/// Runs `kbuild build`.
pub fn run(args: &BuildArgs, log: &LogArgs) -> Result<(), Error> {
    let request = request(args, log)?;
    let report_path = build::report_location(
        request.report.as_deref(),
        &build::work_root(request.work_dir.as_deref()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "cannot start the async runtime".into(),
            source,
        })?;
    match runtime.block_on(build::build(request)) {
        Ok(outcome) => {
            tracing::info!("pushed {}", outcome.digest);
            Ok(())
        }
        Err(err) => Err(Error::Build {
            source: Box::new(err),
            breakpoint: crate::tekton::DebugHint::detect(&report_path).map(Box::new),
            report: report_path,
        }),
    }
}

/// Where the report of a failed build is and, when the step is paused at a Tekton debug
/// breakpoint, the commands to run next, as lines after the error (the commands come last, so
/// they are what a user sees at the end of the step's log).
pub fn failure_notes(
    report: &std::path::Path,
    breakpoint: Option<&crate::tekton::DebugHint>,
) -> String {
    let mut notes = format!("\nthe build report is at {}", report.display());
    match breakpoint {
        Some(hint) => {
            notes.push('\n');
            notes.push_str(&hint.to_string());
        }
        // Inside a paused Tekton step the hint's lines name the explain command in full.
        None => notes.push_str("; `kbuild explain` tells why"),
    }
    notes
}
