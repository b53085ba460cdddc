//! `kbuild cache inspect` and `kbuild cache diff`: flags, then the `debug` module, then stdout.
//!
//! Both read registries with `kbuild build`'s registry flags and credentials (the same
//! `config.json` lookup), and print text for people or `--format json` (docs/debug-json.md).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};

use crate::debug::diff::{CacheDiff, Side, diff_report_with_entries, diff_sides, nearest};
use crate::debug::inspect::{EntryDetail, ListedEntry, list};
use crate::debug::layer::{FindResult, PathMatcher, walk_layer};
use crate::debug::render::{self, Style};
use crate::debug::repo::{CacheRepo, Target, parse_target};
use crate::debug::report::BuildReport;
use crate::debug::time::format_ttl;
use crate::debug::{DebugError, JSON_VERSION};
use crate::error::Error;
use crate::registry::{Keychain, RegistryClient};

use super::build_args::{BuildArgs, RegistryArgs, parse_go_duration};
use super::registry_options::registry_options;

/// `kbuild cache` subcommands.
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List a cache repository's entries, or show one entry, its preimage and its layer's files
    Inspect(Box<InspectArgs>),
    /// Compare cache keys part by part: two build reports, two entries, or a report and a cache
    /// repository
    Diff(Box<DiffArgs>),
}

/// Output formats of the cache debugging commands.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Flags of `kbuild cache inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A cache repository (REGISTRY/REPO, or oci:/path for an OCI layout), or one entry of it
    /// (REPO:KEY; a key prefix of 6 or more hex characters is enough)
    #[arg(value_name = "REPO[:KEY]")]
    pub target: String,

    /// List the entry's layer: type, mode, owner, size and path of each file, whiteouts marked
    /// (the layer is streamed, never downloaded whole)
    #[arg(long, conflicts_with = "find")]
    pub files: bool,

    /// Say whether a path (or a glob: `*` within a directory, `**` across) is in the entry's
    /// layer; exits with 0 when it is, 4 when it is not
    #[arg(long, value_name = "PATH_OR_GLOB")]
    pub find: Option<String>,

    /// How long an entry stays valid after it was created (Go duration, as the build's flag)
    #[arg(long, default_value = "336h", value_parser = parse_go_duration, value_name = "DURATION")]
    pub cache_ttl: Duration,

    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Flags of `kbuild cache diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// A build report file, a cache entry (REPO:KEY) or a cache repository (REPO)
    #[arg(value_name = "A")]
    pub a: String,

    /// The same kinds as A; a repository only against a report
    #[arg(value_name = "B")]
    pub b: String,

    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Text style for stdout: colour on a terminal without `NO_COLOR`.
pub fn stdout_style() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// A registry client with the registry flags and the build's credential lookup.
pub fn client(registry: &RegistryArgs) -> Result<RegistryClient, Error> {
    let args = BuildArgs {
        registry: registry.clone(),
        ..BuildArgs::default()
    };
    let mut options = registry_options(
        &args,
        std::env::var("KANIKO_REGISTRY_MIRROR").ok().as_deref(),
    )?;
    // Cache entries are written with the build's push settings; the debugger only reads them,
    // so a build's `--insecure`/`--skip-tls-verify` reach the same repositories here.
    options.insecure_pull |= options.insecure_push;
    options.skip_tls_verify_pull |= options.skip_tls_verify_push;
    let keychain = Keychain::from_env().map_err(|e| Error::Registry(e.into()))?;
    Ok(RegistryClient::new(options, keychain))
}

/// A tokio runtime for the registry calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "cannot start the async runtime".into(),
            source,
        })
}

/// Writes to stdout; a closed pipe (`| head`) is not a failure.
pub fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|source| Error::Io {
            context: "cannot write to stdout".into(),
            source,
        }),
    }
}

/// Pretty JSON with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::Io {
        context: "cannot serialise the output".into(),
        source: e.into(),
    })?;
    text.push('\n');
    Ok(text)
}

/// Runs `kbuild cache ...`.
pub fn run(command: &CacheCommand) -> Result<(), Error> {
    match command {
        CacheCommand::Inspect(args) => inspect(args),
        CacheCommand::Diff(args) => diff(args),
    }
}

fn inspect(args: &InspectArgs) -> Result<(), Error> {
    let target = parse_target(&args.target)?;
    let runtime = runtime()?;
    let repo = CacheRepo::new(target.location.clone(), client(&args.registry)?);
    let now = SystemTime::now();
    let style = stdout_style();
    let Some(key) = &target.key else {
        if args.files || args.find.is_some() {
            return Err(Error::Usage(
                "--files and --find need one entry: name it as REPO:KEY\nhint: `kbuild cache inspect REPO` lists the keys".into(),
            ));
        }
        let listing = runtime.block_on(list(&repo, args.cache_ttl, now))?;
        return print(&match args.format {
            Format::Json => json(&listing)?,
            Format::Text => render::listing(&listing, style),
        });
    };
    let entry = runtime.block_on(async {
        let tag = repo.resolve_key(key).await?;
        repo.entry(&tag).await
    })?;
    let listed = ListedEntry::new(entry, now, args.cache_ttl);
    if args.files {
        return files(&repo, runtime.handle(), &listed, args.format);
    }
    if let Some(pattern) = &args.find {
        return find(
            &repo,
            runtime.handle(),
            &listed,
            pattern,
            args.format,
            style,
        );
    }
    let detail = EntryDetail {
        version: JSON_VERSION,
        ttl: format_ttl(args.cache_ttl),
        entry: listed,
    };
    print(&match args.format {
        Format::Json => json(&detail)?,
        Format::Text => render::entry_detail(&detail, style),
    })
}

/// Streams the layer listing to stdout as it is read.
fn files(
    repo: &CacheRepo,
    handle: &tokio::runtime::Handle,
    listed: &ListedEntry,
    format: Format,
) -> Result<(), Error> {
    let entry = &listed.entry;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write = |text: &str| -> std::io::Result<()> { out.write_all(text.as_bytes()) };
    let result = (|| -> Result<(), Error> {
        match format {
            Format::Json => write(&format!(
                "{{\"version\":{JSON_VERSION},\"entry\":{},\"layers\":[",
                serde_json::to_string(&entry.reference).unwrap_or_default()
            )),
            Format::Text => write(&format!(
                "{}\n",
                render::wrap(
                    &format!(
                        "Layer of {} ({})",
                        render::short_refs(&entry.reference),
                        entry.instruction.as_deref().unwrap_or("?")
                    ),
                    render::WIDTH,
                    2
                )
            )),
        }
        .map_err(write_err)?;
        if entry.layers.is_empty() && format == Format::Text {
            write("no layer: the instruction changed nothing\n").map_err(write_err)?;
        }
        for (n, layer) in entry.layers.iter().enumerate() {
            let reader = repo.layer_reader(handle, layer)?;
            let digest = layer.digest.parse().ok();
            let mut first = true;
            if format == Format::Json {
                write(&format!(
                    "{}{{\"digest\":\"{}\",\"media_type\":{},\"files\":[",
                    if n > 0 { "," } else { "" },
                    layer.digest,
                    serde_json::to_string(&layer.media_type).unwrap_or_default()
                ))
                .map_err(write_err)?;
            }
            let summary = walk_layer(
                reader,
                &entry.reference,
                digest.as_ref(),
                |f| match format {
                    Format::Json => {
                        let sep = if first { "\n" } else { ",\n" };
                        first = false;
                        write(&format!(
                            "{sep}{}",
                            serde_json::to_string(f).map_err(std::io::Error::other)?
                        ))
                    }
                    Format::Text => write(&format!("{}\n", render::file_line(f))),
                },
            )?;
            match format {
                Format::Json => write(&format!(
                    "],\"summary\":{}}}",
                    serde_json::to_string(&summary).unwrap_or_default()
                )),
                Format::Text => write(&format!("{}\n", render::layer_summary(&summary))),
            }
            .map_err(write_err)?;
        }
        if format == Format::Json {
            write("]}\n").map_err(write_err)?;
        }
        Ok(())
    })();
    match result.and_then(|_| out.flush().map_err(write_err)) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(Error::CacheDebug(DebugError::Layer { reason, .. }))
            if reason.contains("Broken pipe") =>
        {
            Ok(())
        }
        other => other,
    }
}

fn write_err(source: std::io::Error) -> Error {
    Error::Io {
        context: "cannot write to stdout".into(),
        source,
    }
}

fn find(
    repo: &CacheRepo,
    handle: &tokio::runtime::Handle,
    listed: &ListedEntry,
    pattern: &str,
    format: Format,
    style: Style,
) -> Result<(), Error> {
    let entry = &listed.entry;
    let matcher = PathMatcher::new(pattern)?;
    let mut result = FindResult::new(&matcher.pattern);
    for layer in &entry.layers {
        let reader = repo.layer_reader(handle, layer)?;
        let digest = layer.digest.parse().ok();
        walk_layer(reader, &entry.reference, digest.as_ref(), |f| {
            result.offer(&matcher, f);
            Ok(())
        })?;
    }
    #[derive(serde::Serialize)]
    struct Found<'a> {
        version: u32,
        entry: &'a str,
        layer: Option<&'a str>,
        #[serde(flatten)]
        result: &'a FindResult,
    }
    print(&match format {
        Format::Json => json(&Found {
            version: JSON_VERSION,
            entry: &entry.reference,
            layer: entry.layers.first().map(|l| l.digest.as_str()),
            result: &result,
        })?,
        Format::Text => render::find_result(&result, &entry.reference, style),
    })?;
    if result.present {
        Ok(())
    } else {
        Err(DebugError::NotInLayer {
            pattern: result.pattern.clone(),
            entry: entry.reference.clone(),
            digest: entry
                .layers
                .first()
                .map(|l| l.digest.clone())
                .unwrap_or_else(|| "(no layer)".into()),
        }
        .into())
    }
}

/// One operand of `cache diff`.
enum Operand {
    Report(String, BuildReport),
    Entry(CacheRepo, String),
    Repo(CacheRepo),
}

fn operand(text: &str, client: &RegistryClient) -> Result<Operand, Error> {
    let path = Path::new(text);
    if path.is_file() || path.join("report.json").is_file() {
        return Ok(Operand::Report(text.to_string(), BuildReport::read(path)?));
    }
    let target: Target = parse_target(text).map_err(|e| match e {
        DebugError::Registry(_) => DebugError::Usage(format!(
            "{text} is neither a report file nor a cache repository or entry\nhint: give a \
             build report (kbuild build --report=FILE), REPO or REPO:KEY"
        )),
        other => other,
    })?;
    let repo = CacheRepo::new(target.location, client.clone());
    Ok(match target.key {
        Some(key) => Operand::Entry(repo, key),
        None => Operand::Repo(repo),
    })
}

fn diff(args: &DiffArgs) -> Result<(), Error> {
    let client = client(&args.registry)?;
    let runtime = runtime()?;
    let a = operand(&args.a, &client)?;
    let b = operand(&args.b, &client)?;
    let entry_side = |repo: &CacheRepo, key: &str| -> Result<Side, Error> {
        let entry = runtime.block_on(async {
            let tag = repo.resolve_key(key).await?;
            repo.entry(&tag).await
        })?;
        Ok(Side::from_entry(&entry))
    };
    let result: CacheDiff = match (&a, &b) {
        (Operand::Report(la, ra), Operand::Report(lb, rb)) => {
            diff_sides(&Side::from_report(la, ra), &Side::from_report(lb, rb))
        }
        (Operand::Entry(ra, ka), Operand::Entry(rb, kb)) => {
            diff_sides(&entry_side(ra, ka)?, &entry_side(rb, kb)?)
        }
        (Operand::Report(l, r), Operand::Repo(repo)) => {
            let entries = runtime.block_on(repo.all_entries())?;
            diff_report_with_entries(&Side::from_report(l, r), &repo.name(), &entries)
        }
        (Operand::Repo(repo), Operand::Report(l, r)) => {
            let entries = runtime.block_on(repo.all_entries())?;
            diff_report_with_entries(&Side::from_report(l, r), &repo.name(), &entries).swapped()
        }
        (Operand::Report(l, r), Operand::Entry(repo, key)) => {
            report_vs_entry(&Side::from_report(l, r), entry_side(repo, key)?)
        }
        (Operand::Entry(repo, key), Operand::Report(l, r)) => {
            report_vs_entry(&Side::from_report(l, r), entry_side(repo, key)?).swapped()
        }
        _ => {
            return Err(Error::Usage(
                "cache diff compares two reports, two entries, a report with an entry, or a \
                 report with a cache repository\nhint: to see one repository, use `kbuild cache \
                 inspect REPO`"
                    .into(),
            ));
        }
    };
    print(&match args.format {
        Format::Json => json(&result)?,
        Format::Text => render::cache_diff(&result, stdout_style()),
    })
}

/// A report against one entry: the report's step with the entry's key, else the closest one.
fn report_vs_entry(report: &Side, entry: Side) -> CacheDiff {
    let e = &entry.steps[0];
    let step = report
        .steps
        .iter()
        .find(|s| s.key.is_some() && s.key == e.key)
        .or_else(|| {
            let mut candidate = e.clone();
            candidate.parts.as_ref()?;
            candidate.stage = 0;
            let found = nearest(&candidate, &report.steps)?;
            Some(found)
        });
    let Some(step) = step else {
        return diff_sides(
            &Side {
                label: report.label.clone(),
                steps: Vec::new(),
            },
            &entry,
        );
    };
    let mut e = e.clone();
    e.stage = step.stage;
    e.stage_name = step.stage_name.clone();
    diff_sides(
        &Side {
            label: report.label.clone(),
            steps: vec![step.clone()],
        },
        &Side {
            label: entry.label.clone(),
            steps: vec![e],
        },
    )
}
