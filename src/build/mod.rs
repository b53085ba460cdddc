//! The executor: a context and a Dockerfile in, an image (pushed, saved, or both) out
//! (DESIGN.md decisions 1, 2 and 9).
//!
//! Every stage builds in a directory of its own under the build's work directory, never in `/`:
//! its rootfs starts as the base image's layers (or the producer stage's layers, re-applied, so the
//! rootfs always equals its layer stack), RUN executes inside it through [`crate::exec`], COPY and
//! ADD write into it through [`crate::fs::Root`], and each step's changes become one layer.
//! `COPY --from` reads the producer stage's finished rootfs; right after a producer stage ends,
//! every path a later stage will copy from it is checked, so a missing file fails the build at its
//! cause, not three stages later (the Kaniko bug of CONTEXT.md section 2 cannot happen).
//!
//! With `--cache`, every instruction gets a key before its stage runs ([`keys`]), the probed
//! ones are looked up at once, a hit is applied from its entry and a miss runs and stores its
//! entry in the background ([`cached`]); a warm build gives the same image as a cold one.
//!
//! Stages that do not depend on each other build at the same time ([`schedule`]).
//!
//! Left out here (see the README's flag table): ADD from git.

mod add_copy;
mod base;
mod cached;
mod copy;
mod download;
mod glob;
mod instructions;
mod keys;
pub mod phases;
pub mod report;
mod run_mounts;
mod schedule;
pub mod secrets;
mod stage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::context::{BuildContext, ContextError, ContextSpec};
use crate::dockerfile::ParseError;
use crate::exec::{ExecError, Isolation, UserError};
use crate::fs::{FsError, IgnoreList, LayerOptions, SnapshotMode};
use crate::image::{ImageError, Publish, PublishError};
use crate::plan::{Plan, PlanError, PlanOptions};
use crate::platform::Platform;
use crate::registry::{BlobStore, Keychain, RegistryClient, RegistryError, RegistryOptions};

pub use copy::CopyError;
pub use report::Report;

/// Everything a build needs, parsed from the command line.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: ContextSpec,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: Platform,
    pub skip_unused_stages: bool,
    /// `--label KEY=VALUE`, added to the final image.
    pub labels: Vec<(String, String)>,
    /// `--kaniko-dir`; None picks the default (see [`work_root`]).
    pub work_dir: Option<PathBuf>,
    /// Where base image blobs are kept between builds; None keeps them in the work directory.
    pub cache_dir: Option<PathBuf>,
    pub cleanup: bool,
    pub snapshot_mode: SnapshotMode,
    pub ignore: IgnoreList,
    pub layer: LayerOptions,
    pub single_snapshot: bool,
    /// `--force-build-metadata`: a layer (an empty tar when nothing changed) for every
    /// instruction, metadata ones included.
    pub force_build_metadata: bool,
    /// How many stages may build at once; 0 is one per core, 1 builds them one after another.
    pub max_parallel_stages: usize,
    pub isolation: Isolation,
    /// `--reproducible`: also fixes the config's `created` and history times.
    pub reproducible: bool,
    pub registry: RegistryOptions,
    pub publish: Publish,
    pub skip_push_permission_check: bool,
    /// `--report`: a file, or a directory for `report.json`.
    pub report: Option<PathBuf>,
    /// Print RUN output as raw lines (text logs) instead of log events (JSON logs).
    pub raw_run_output: bool,
    /// The kbuild binary that provides the RUN sandbox; None is the running executable.
    pub sandbox_helper: Option<PathBuf>,
    /// The layer cache; None when it is off.
    pub cache: Option<CacheOptions>,
    /// `--secret`s, for `RUN --mount=type=secret`.
    pub secrets: secrets::Secrets,
}

/// The layer cache's settings (Kaniko's `--cache*` flags).
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// `--cache-repo`, or `<first destination>/cache`.
    pub repo: crate::cache::CacheRepo,
    /// `--cache-ttl`: entries older than this are not used.
    pub ttl: std::time::Duration,
    /// `--cache-run-layers`.
    pub run_layers: bool,
    /// `--cache-copy-layers`.
    pub copy_layers: bool,
    /// False with `--no-push-cache`: look entries up, store none.
    pub push: bool,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub digest: crate::digest::Digest,
    pub report_path: PathBuf,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Dockerfile(#[from] ParseError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{location}: {source}")]
    Fs {
        location: String,
        #[source]
        source: FsError,
    },
    #[error("{location}: {source}")]
    Copy {
        location: String,
        #[source]
        source: CopyError,
    },
    #[error("{location}: {source}")]
    Exec {
        location: String,
        #[source]
        source: ExecError,
    },
    #[error("{location}: {source}")]
    User {
        location: String,
        #[source]
        source: UserError,
    },
    #[error("{location}: {message}")]
    Instruction { location: String, message: String },
    #[error(
        "{location}: `{command}` returned a non-zero code: {exit_code}{}",
        tail_text(tail)
    )]
    RunFailed {
        location: String,
        command: String,
        exit_code: i32,
        tail: Vec<String>,
    },
    #[error("{}", missing_text(.0))]
    MissingCrossStageSource(Box<MissingSource>),
    #[error("{what} is not supported yet\nhint: {hint}")]
    NotSupported { what: String, hint: String },
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// The exit code a RUN failure hands on (Kaniko's behaviour), if this is one.
    pub fn run_exit_code(&self) -> Option<i32> {
        match self {
            BuildError::RunFailed { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    format!("\nlast output lines:\n  {}", tail.join("\n  "))
}

/// A cross-stage source that its producer stage did not make.
#[derive(Debug, Clone)]
pub struct MissingSource {
    pub producer: String,
    pub consumer: String,
    pub path: String,
    /// `Dockerfile:12: COPY --from=builder ...`.
    pub needed_by: String,
    /// The producer's instructions that touched the path's closest existing parent, latest last.
    pub suspects: Vec<String>,
    /// The layers applied in the producer stage: (instruction, layer digest or "no layer").
    pub layers: Vec<(String, String)>,
}

fn missing_text(m: &MissingSource) -> String {
    let mut text = format!(
        "stage {} did not produce {}, which stage {} copies ({})",
        m.producer, m.path, m.consumer, m.needed_by
    );
    if m.suspects.is_empty() {
        text.push_str(&format!(
            "\nno instruction of stage {} wrote anywhere under that path",
            m.producer
        ));
    } else {
        text.push_str(&format!(
            "\nthe instruction that should have made it: {}",
            m.suspects.join("; ")
        ));
    }
    text.push_str(&format!("\nlayers applied in stage {}:", m.producer));
    for (instruction, layer) in &m.layers {
        text.push_str(&format!("\n  {layer}  {instruction}"));
    }
    text.push_str(
        "\nhint: check that the RUN writing it succeeded and wrote to that exact path (run the \
         producer stage alone with --target to look)",
    );
    text
}

/// The directory builds happen in: `--kaniko-dir`/`KANIKO_DIR`, else `/kaniko` inside a
/// container (as Kaniko), else a new temporary directory.
pub fn work_root(requested: Option<&Path>) -> PathBuf {
    if let Some(dir) = requested {
        return dir.to_path_buf();
    }
    let in_container = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists();
    if in_container {
        PathBuf::from("/kaniko")
    } else {
        std::env::temp_dir().join("kbuild")
    }
}

/// Runs a build. The report is written whether the build succeeds or fails.
pub async fn build(request: BuildRequest) -> Result<BuildOutcome, BuildError> {
    let started = Instant::now();
    let root = work_root(request.work_dir.as_deref());
    std::fs::create_dir_all(&root).map_err(|source| BuildError::WorkDir {
        path: root.clone(),
        source,
    })?;
    // One directory per build, so two builds sharing a work root never meet.
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&root)
        .map_err(|source| BuildError::WorkDir {
            path: root.clone(),
            source,
        })?;
    let work_path = work.path().to_path_buf();
    let report_path = report_location(request.report.as_deref(), &root);
    let mut report = Report::new(&request);
    let result = build_in(&request, &work_path, &mut report, started).await;
    report.finish(&result, started.elapsed());
    if let Err(e) = report.write(&report_path) {
        tracing::warn!(
            "could not write the build report {}: {e}",
            report_path.display()
        );
    } else {
        tracing::info!("build report: {}", report_path.display());
    }
    if request.cleanup {
        drop(work);
    } else {
        // Kept for inspection (Kaniko keeps /kaniko too); `--cleanup` removes it.
        let _ = work.keep();
    }
    result.map(|digest| BuildOutcome {
        digest,
        report_path,
    })
}

/// The client cache lookups and pushes use: the build's registry settings, but one attempt per
/// request and a short connect timeout. A cache that does not answer is a miss, not a wait: retries
/// with backoff would delay the instructions waiting for their lookups (and log a warning each).
fn cache_client(request: &BuildRequest) -> Result<RegistryClient, BuildError> {
    let options = RegistryOptions {
        request_attempts: 1,
        push_retries: 0,
        connect_timeout: request
            .registry
            .connect_timeout
            .min(std::time::Duration::from_secs(5)),
        ..request.registry.clone()
    };
    let keychain = Keychain::from_env().map_err(RegistryError::from)?;
    Ok(RegistryClient::new(options, keychain))
}

pub fn report_location(requested: Option<&Path>, work_root: &Path) -> PathBuf {
    match requested {
        Some(p) if p.as_os_str().is_empty() => work_root.join("report.json"),
        Some(p) if p.is_dir() || p.to_string_lossy().ends_with('/') => p.join("report.json"),
        Some(p) => p.to_path_buf(),
        None => work_root.join("report.json"),
    }
}

async fn build_in(
    request: &BuildRequest,
    work: &Path,
    report: &mut Report,
    started: Instant,
) -> Result<crate::digest::Digest, BuildError> {
    let unpack_dir = work.join("context");
    let context =
        tokio::task::block_in_place(|| BuildContext::open(&request.context, &unpack_dir))?;
    let text =
        std::fs::read_to_string(&context.dockerfile).map_err(|source| ContextError::Read {
            path: context.dockerfile.clone(),
            source,
        })?;
    let name = context
        .dockerfile
        .strip_prefix(&context.root)
        .unwrap_or(&context.dockerfile)
        .display()
        .to_string();
    let dockerfile = crate::dockerfile::parse(&text, &name)?;
    let plan = Plan::new(
        &dockerfile,
        &PlanOptions {
            build_args: request.build_args.clone(),
            target: request.target.clone(),
            platform: request.platform.clone(),
            build_platform: Platform::host(),
        },
    )?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    report.plan(&plan);
    let keychain = Keychain::from_env().map_err(RegistryError::from)?;
    let client = RegistryClient::new(request.registry.clone(), keychain);
    if request.publish.push
        && !request.publish.destinations.is_empty()
        && !request.skip_push_permission_check
    {
        crate::registry::check_push_permissions(&client, &request.publish.destinations).await?;
    }
    let store_dir = match &request.cache_dir {
        Some(dir) if dir.is_dir() => dir.clone(),
        _ => work.join("store"),
    };
    let store = BlobStore::open(&store_dir).map_err(RegistryError::from)?;
    let handle = tokio::runtime::Handle::current();
    let phases = phases::Phases::default();
    let cache = match &request.cache {
        Some(options) => Some((options, cache_client(request)?)),
        None => None,
    };
    let cache = cache.map(|(options, cache_client)| {
        let store = crate::cache::CacheStore::new(
            options.repo.clone(),
            cache_client,
            store.clone(),
            options.ttl,
        );
        tracing::info!("layer cache: {}", options.repo);
        cached::CacheContext {
            background: crate::cache::Background::new(
                store,
                handle.clone(),
                client.options().concurrency,
            ),
            options: keys::KeyOptions {
                run_layers: options.run_layers,
                copy_layers: options.copy_layers,
                single_snapshot: request.single_snapshot,
                layer_format: keys::layer_format(&request.layer, &request.ignore),
            },
            push: options.push,
        }
    });
    report.cache_repo = request.cache.as_ref().map(|c| c.repo.to_string());
    let executor = stage::Executor {
        phases: &phases,
        request,
        context: &context,
        dockerfile: &dockerfile,
        plan: &plan,
        work,
        store: &store,
        client: &client,
        handle,
        cache: cache.as_ref(),
        base_layers: std::sync::Mutex::new(report::BaseLayers {
            store: store_dir.display().to_string(),
            ..report::BaseLayers::default()
        }),
        images: std::sync::Mutex::new(BTreeMap::new()),
        pulls: std::sync::Mutex::new(BTreeMap::new()),
        board: schedule::Board::default(),
        started,
    };
    let outcome = tokio::task::block_in_place(|| executor.run_stages());
    report.stages = outcome.stages;
    report.cross_stage_found = outcome.found;
    report.isolation = report
        .stages
        .iter()
        .flat_map(|s| &s.instructions)
        .find_map(|i| i.isolation.clone());
    if let Ok(stats) = executor.base_layers.lock() {
        report.base_layers = stats.clone();
    }
    let result = match outcome.image {
        Ok(mut image) => {
            if let Some(repo) = request.cache.as_ref().and_then(|c| c.repo.registry()) {
                // Layers that were cache hits are in the cache repository: mount, don't upload.
                image.mount_sources.push(repo.clone());
            }
            phases::reset_peak();
            let push_started = std::time::Instant::now();
            let published = crate::image::publish(&client, &store, &image, &request.publish).await;
            phases.add("push", push_started, phases::peak_rss_kb());
            published
                .map(|pushed| {
                    report.outputs = report::Outputs {
                        pushed: pushed
                            .iter()
                            .map(|p| report::PushedOutput {
                                reference: p.reference.to_string(),
                                digest: p.digest.to_string(),
                                uploaded: p.uploaded,
                                mounted: p.mounted,
                                existed: p.existed,
                            })
                            .collect(),
                        tar_path: request
                            .publish
                            .tar_path
                            .as_ref()
                            .map(|p| p.display().to_string()),
                        oci_layout_path: request
                            .publish
                            .oci_layout_path
                            .as_ref()
                            .map(|p| p.display().to_string()),
                    };
                    tracing::info!("built image {}", image.digest);
                    image.digest
                })
                .map_err(BuildError::from)
        }
        Err(e) => Err(e),
    };
    // Entries of the instructions that ran are worth keeping even when a later one failed.
    if let Some(cache) = &cache {
        let waited = std::time::Instant::now();
        let pushes = cache.background.finish().await;
        phases.add("cache_push_wait", waited, 0);
        report.record_pushes(&pushes);
    }
    report.summarise_cache();
    report.phases = phases.snapshot();
    result
}
