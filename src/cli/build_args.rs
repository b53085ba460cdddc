//! The flags of `kbuild build`: every flag of the Kaniko executor, with Kaniko's names, defaults,
//! short forms and deprecated aliases, so an existing Task keeps its `args` when its image changes.
//!
//! Booleans follow pflag's rules (`--cache`, `--cache=true`, `--cache=false`; a separate `true` word
//! is not a value), repeatable flags append, and `--flag=value` and `--flag value` both work for the
//! others. This file only declares and validates the flags; what a flag does lives in the modules
//! below `cli`, and [`BuildArgs::unsupported`] lists the ones whose behaviour does not exist yet.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

/// Kaniko's flags and kbuild's additions for building an image.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Build")]
pub struct BuildArgs {
    /// Path to the Dockerfile to build, relative to the context or absolute
    #[arg(short = 'f', long, default_value = "Dockerfile", value_name = "PATH")]
    pub dockerfile: PathBuf,

    /// Build context: a directory, dir://DIR, or tar://FILE.tar.gz (tar://stdin reads standard input)
    #[arg(
        short = 'c',
        long,
        default_value = "/workspace/",
        value_name = "CONTEXT"
    )]
    pub context: String,

    /// Sub path within the context to use as the context root
    #[arg(long, value_name = "PATH")]
    pub context_sub_path: Option<String>,

    /// Build argument NAME=VALUE; NAME alone takes the value from the environment (repeatable)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]", action = ArgAction::Append)]
    pub build_args: Vec<String>,

    /// Build the stage with this name (or index) and the stages it needs, instead of the last one
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Build only the stages the target needs (Kaniko builds every stage up to the target by default)
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub skip_unused_stages: bool,

    /// Platform to build for, os/arch[/variant] [default: the host platform]
    #[arg(long, alias = "customPlatform", value_name = "PLATFORM")]
    pub custom_platform: Option<String>,

    /// Image label KEY=VALUE added to the final image (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub labels: Vec<String>,

    /// Accepted for Kaniko compatibility; kbuild never builds in the host's `/`, so it is always safe
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub force: bool,

    /// Branch to clone when the context is a git repository (Kaniko's --git)
    #[arg(long, value_name = "OPTIONS", hide = true)]
    pub git: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub snapshot: SnapshotArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub kbuild: KbuildArgs,
}

/// Where the image goes and which files describe it.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Image reference to push the result to (repeatable)
    #[arg(short = 'd', long = "destination", value_name = "IMAGE", action = ArgAction::Append)]
    pub destinations: Vec<String>,

    /// Build without pushing the image [env: KANIKO_NO_PUSH]
    #[arg(long, env = "KANIKO_NO_PUSH", require_equals = true, num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = ArgAction::Set,
          value_name = "BOOL", hide_env = true)]
    pub no_push: bool,

    /// Do not push cache layers to the cache repository
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub no_push_cache: bool,

    /// Also save the image as a tarball `docker load` reads
    #[arg(long, alias = "tarPath", value_name = "FILE")]
    pub tar_path: Option<PathBuf>,

    /// Also save the image as an OCI image layout directory
    #[arg(long, value_name = "DIR")]
    pub oci_layout_path: Option<PathBuf>,

    /// Write the image digest (sha256:...) to this file after a successful push
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,

    /// Write repo@sha256:... of every destination to this file after a successful push
    #[arg(long, value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,

    /// Write repo:tag@sha256:... of every destination to this file after a successful push
    #[arg(long, value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,

    /// Number of retries of a failed push
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub push_retry: u32,

    /// Do not check before the build that every destination accepts a push
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub skip_push_permission_check: bool,

    /// Fix every timestamp so the same inputs give the same image digest
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub reproducible: bool,

    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: Compression,

    /// Compression level; -1 means the algorithm's default
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    pub compression_level: i32,

    /// Compress cached layers (Kaniko's memory/speed trade-off; kbuild always streams)
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub compressed_caching: bool,

    /// Add a history entry (and layer) for metadata-only instructions too
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub force_build_metadata: bool,
}

/// Layer compression algorithms.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

/// The layer cache.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Cache")]
pub struct CacheArgs {
    /// Use the layer cache [default: false; true when --cache-repo names a repository]
    #[arg(long = "cache", require_equals = true, num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set, value_name = "BOOL")]
    pub enabled: Option<bool>,

    /// Repository for cache entries, or oci:/path; an empty value means none [default: <first
    /// destination repository>/cache]
    #[arg(long, value_name = "REPO")]
    pub cache_repo: Option<String>,

    /// Directory kept between builds for base image and cached layers, used when it exists
    /// (empty: none)
    #[arg(long, default_value = "/cache", value_name = "DIR", value_parser = path_or_empty)]
    pub cache_dir: PathBuf,

    /// How long a cache entry stays valid after it was created (Go duration: 336h, 90m, 1h30m)
    #[arg(long, default_value = "336h", value_parser = parse_go_duration, value_name = "DURATION")]
    pub cache_ttl: Duration,

    /// Cache COPY layers
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub cache_copy_layers: bool,

    /// Cache RUN layers
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub cache_run_layers: bool,
}

/// How changes are found and turned into layers.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Snapshot")]
pub struct SnapshotArgs {
    /// What a snapshot compares: full (metadata, then content when metadata is equal), redo or
    /// time (metadata only)
    #[arg(long, alias = "snapshotMode", value_enum, default_value = "full")]
    pub snapshot_mode: SnapshotMode,

    /// Take one snapshot at the end of each stage instead of one per instruction
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub single_snapshot: bool,

    /// Accepted for Kaniko compatibility; kbuild's snapshots already cost what changed
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub use_new_run: bool,

    /// Leave /var/run out of snapshots
    #[arg(long, alias = "whitelist-var-run", require_equals = true, num_args = 0..=1,
          default_missing_value = "true", default_value_t = true, action = ArgAction::Set,
          value_name = "BOOL")]
    pub ignore_var_run: bool,

    /// Leave this path out of snapshots (repeatable)
    #[arg(long = "ignore-path", value_name = "PATH", action = ArgAction::Append)]
    pub ignore_paths: Vec<String>,

    /// Work directory for stage root filesystems and build state [env: KANIKO_DIR] [default: /kaniko
    /// in a container, a new temporary directory elsewhere]
    #[arg(long, env = "KANIKO_DIR", hide_env = true, value_name = "DIR")]
    pub kaniko_dir: Option<PathBuf>,

    /// Remove the work directory when the build ends
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub cleanup: bool,

    /// Retries of a failed base image extraction; kbuild extracts verified local blobs, so they
    /// retry the download instead (the larger of this and --image-download-retry)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub image_fs_extract_retry: u32,

    /// Number of retries of a failed base image download
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub image_download_retry: u32,
}

/// Kaniko's snapshot modes; see the README for what each means in kbuild.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    #[default]
    Full,
    Redo,
    Time,
}

/// Registries: mirrors, maps, TLS.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Registries")]
pub struct RegistryArgs {
    /// Mirror for docker.io images, tried in order before docker.io itself (repeatable)
    /// [env: KANIKO_REGISTRY_MIRROR, appended]
    #[arg(long = "registry-mirror", value_name = "HOST[/PATH]", action = ArgAction::Append)]
    pub registry_mirrors: Vec<String>,

    /// Replace a registry by others: REGISTRY=HOST[;HOST...] (repeatable)
    #[arg(long = "registry-map", value_name = "REGISTRY=HOSTS", action = ArgAction::Append,
          value_parser = parse_key_value)]
    pub registry_maps: Vec<(String, String)>,

    /// Fail instead of falling back to docker.io when every mirror fails
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub skip_default_registry_fallback: bool,

    /// Push to registries over plain HTTP
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub insecure: bool,

    /// Pull from registries over plain HTTP
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub insecure_pull: bool,

    /// Use plain HTTP for this registry, pushing and pulling (repeatable)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]", action = ArgAction::Append)]
    pub insecure_registries: Vec<String>,

    /// Push without verifying TLS certificates
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub skip_tls_verify: bool,

    /// Pull without verifying TLS certificates
    #[arg(long, require_equals = true, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub skip_tls_verify_pull: bool,

    /// Do not verify TLS certificates of this registry (repeatable)
    #[arg(long = "skip-tls-verify-registry", value_name = "HOST[:PORT]", action = ArgAction::Append)]
    pub skip_tls_verify_registries: Vec<String>,

    /// Trust this CA or server certificate for a registry: REGISTRY=/path/cert.pem (repeatable)
    #[arg(long = "registry-certificate", value_name = "REGISTRY=PATH", action = ArgAction::Append,
          value_parser = parse_key_value)]
    pub registry_certificates: Vec<(String, String)>,

    /// Client certificate for mutual TLS: REGISTRY=/path/cert.pem,/path/key.pem (repeatable)
    #[arg(long = "registry-client-cert", value_name = "REGISTRY=CERT,KEY", action = ArgAction::Append,
          value_parser = parse_key_value)]
    pub registry_client_certs: Vec<(String, String)>,
}

/// Flags kbuild adds to Kaniko's.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "kbuild")]
pub struct KbuildArgs {
    /// Write the build report (JSON) here, or in this directory as report.json; empty: the
    /// default [default: <work dir>/report.json]
    #[arg(long, value_name = "FILE", value_parser = path_or_empty)]
    pub report: Option<PathBuf>,

    /// Directory for Tekton results (IMAGE_DIGEST, IMAGE_URL, IMAGE_REF) [default: /tekton/results
    /// when it exists]
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,

    /// Write one result to a file of its own, NAME=PATH with NAME one of IMAGE_DIGEST, IMAGE_URL,
    /// IMAGE_REF; for StepActions: --result=IMAGE_DIGEST=$(step.results.IMAGE_DIGEST.path)
    /// (repeatable)
    #[arg(long = "result", value_name = "NAME=PATH", action = ArgAction::Append,
          value_parser = parse_key_value)]
    pub results: Vec<(String, String)>,

    /// How RUN is isolated: auto (namespaces, else a user namespace, else chroot), namespaces,
    /// user-namespace or chroot
    #[arg(long, value_enum, default_value = "auto", hide_possible_values = true)]
    pub isolation: crate::exec::Isolation,

    /// How many independent stages build at once; 0: one per core, 1: one after another
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_parallel_stages: usize,

    /// A secret for RUN --mount=type=secret: id=ID,src=PATH (a file) or id=ID,env=VAR (a
    /// variable; id=ID alone reads the variable ID) (repeatable)
    #[arg(long = "secret", value_name = "id=ID,src=PATH", action = ArgAction::Append)]
    pub secrets: Vec<String>,
}

impl CacheArgs {
    /// Whether the cache is on: `--cache` as given, else on exactly when `--cache-repo` names a
    /// repository (an empty `--cache-repo=`, as a Tekton Task passes for an unset param, does
    /// not). Kaniko ignores `--cache-repo` without `--cache`; kbuild takes a repository given as
    /// the wish to use it.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or_else(|| self.repo().is_some())
    }

    /// `--cache-repo`, None when absent or empty.
    pub fn repo(&self) -> Option<&str> {
        self.cache_repo
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
    }
}

impl BuildArgs {
    /// `--registry-mirror` values followed by those of `KANIKO_REGISTRY_MIRROR`, as Kaniko appends
    /// the variable to the flags. The variable may hold several mirrors separated by commas.
    pub fn registry_mirrors(&self, env_value: Option<&str>) -> Vec<String> {
        let mut mirrors = self.registry.registry_mirrors.clone();
        if let Some(value) = env_value {
            mirrors.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(String::from),
            );
        }
        mirrors
    }
}

/// Parses `KEY=VALUE`, the form of Kaniko's key-value flags.
/// A path that may be empty. A Tekton Task passes `--cache-dir=$(workspaces.cache.path)`, which
/// is empty when the optional workspace is not bound; clap's own path parser refuses that.
pub fn path_or_empty(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Parses a Go duration (`336h`, `1h30m`, `90s`, `1.5h`, `500ms`), the form Kaniko's `--cache-ttl`
/// takes. A bare `0` is allowed, as in Go.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration {s:?}: expected a number with a unit, like 336h or 1h30m");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        let cases = [
            ("336h", 336.0 * 3600.0),
            ("1h30m", 5400.0),
            ("90s", 90.0),
            ("1.5h", 5400.0),
            ("500ms", 0.5),
            ("0", 0.0),
        ];
        for (input, seconds) in cases {
            assert_eq!(
                parse_go_duration(input).unwrap().as_secs_f64(),
                seconds,
                "{input}"
            );
        }
        for bad in ["", "h", "10", "10x", "1h-3m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn an_unbound_tekton_workspace_gives_empty_paths_that_are_accepted() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["kbuild", "build", "--cache-dir=", "--report="])
            .unwrap();
        let Some(crate::cli::Command::Build(args)) = cli.command else {
            panic!("not a build");
        };
        assert_eq!(args.cache.cache_dir, PathBuf::new());
        assert_eq!(args.kbuild.report, Some(PathBuf::new()));
    }

    #[test]
    fn key_values_need_both_sides() {
        assert_eq!(
            parse_key_value("reg.local=/etc/ca.pem").unwrap(),
            ("reg.local".to_string(), "/etc/ca.pem".to_string())
        );
        assert!(parse_key_value("reg.local").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn a_cache_repo_turns_the_cache_on_unless_cache_is_false() {
        let args = |enabled: Option<bool>, repo: Option<&str>| CacheArgs {
            enabled,
            cache_repo: repo.map(String::from),
            ..CacheArgs::default()
        };
        assert!(!args(None, None).is_enabled());
        assert!(
            !args(None, Some("")).is_enabled(),
            "Tekton's empty CACHE_REPO"
        );
        assert!(args(None, Some("reg/app/cache")).is_enabled());
        assert!(!args(Some(false), Some("reg/app/cache")).is_enabled());
        assert!(args(Some(true), None).is_enabled());
        assert_eq!(args(Some(true), Some(" ")).repo(), None);
    }
}
