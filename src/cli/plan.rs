//! `kbuild plan`: what a Dockerfile will build, without building it.
//!
//! Prints the stages (index, name, base, platform, whether the target needs them), each stage's
//! instructions with their line numbers after argument expansion, and the cross-stage
//! dependencies: Kaniko's `Built cross stage deps`, readable. `--format json` prints the plan's
//! documented JSON shape (see `kbuild::plan`). The table is sized for 100 columns when stdout is
//! not a terminal, and coloured only on a terminal without `NO_COLOR`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, ValueEnum};
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table, presets};

use crate::dockerfile;
use crate::error::Error;
use crate::plan::{Base, Plan, PlanOptions, PlannedStage, Producer};
use crate::platform::Platform;

/// Flags of `kbuild plan`.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Path to the Dockerfile, relative to the context or absolute
    #[arg(short = 'f', long, default_value = "Dockerfile", value_name = "PATH")]
    pub dockerfile: PathBuf,

    /// Build context directory (or dir://DIR) the Dockerfile path is relative to
    #[arg(
        short = 'c',
        long,
        default_value = "/workspace/",
        value_name = "CONTEXT"
    )]
    pub context: String,

    /// Build argument NAME=VALUE; NAME alone takes the value from the environment (repeatable)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]", action = ArgAction::Append)]
    pub build_args: Vec<String>,

    /// Plan for this stage (name or index) instead of the last one
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Platform to plan for, os/arch[/variant] [default: the host platform]
    #[arg(long, alias = "customPlatform", value_name = "PLATFORM")]
    pub custom_platform: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: PlanFormat,
}

/// Output formats of `kbuild plan`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Table,
    Json,
}

/// Runs `kbuild plan`, writing the plan to stdout.
pub fn run(args: &PlanArgs) -> Result<(), Error> {
    let path = locate_dockerfile(&args.dockerfile, &args.context)?;
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        context: format!("cannot read Dockerfile {}", path.display()),
        source,
    })?;
    // Messages name the Dockerfile as the user wrote it.
    let name = args.dockerfile.display().to_string();
    let df = dockerfile::parse_bytes(&bytes, &name)?;
    let options = PlanOptions {
        build_args: resolve_build_args(&args.build_args, |k| std::env::var(k).ok())?,
        target: args.target.clone(),
        platform: match &args.custom_platform {
            Some(p) => p
                .parse::<Platform>()
                .map_err(|e| Error::Usage(format!("--custom-platform: {e}")))?,
            None => Platform::host(),
        },
        build_platform: Platform::host(),
    };
    let plan = Plan::new(&df, &options)?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    let text = match args.format {
        PlanFormat::Json => {
            let mut json = serde_json::to_string_pretty(&plan).map_err(|e| Error::Io {
                context: "cannot serialise the plan".into(),
                source: e.into(),
            })?;
            json.push('\n');
            json
        }
        PlanFormat::Table => {
            let style = TableStyle::for_stdout();
            render_table(&plan, &style)
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (`kbuild plan | head`) is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|source| Error::Io {
            context: "cannot write to stdout".into(),
            source,
        }),
    }
}

/// Finds the Dockerfile exactly as `kbuild build` does ([`crate::context::find_dockerfile`]):
/// as given (absolute, or relative to the working directory), else inside the context.
pub fn locate_dockerfile(dockerfile: &Path, context: &str) -> Result<PathBuf, Error> {
    let dir = context.strip_prefix("dir://").unwrap_or(context);
    crate::context::find_dockerfile(dockerfile, Path::new(dir))
        .map_err(|e| Error::Usage(e.to_string()))
}

/// Turns `--build-arg` values into a map: `NAME=VALUE`, or `NAME` alone, which takes the value
/// from the environment (`lookup`) and is left out when the variable is not set, as Docker does.
pub fn resolve_build_args(
    args: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for arg in args {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), lookup(arg)),
        };
        if name.is_empty() {
            return Err(Error::Usage(format!(
                "--build-arg {arg:?}: the name is empty\nhint: write --build-arg NAME=VALUE"
            )));
        }
        if let Some(value) = value {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}

/// How tables are drawn.
pub struct TableStyle {
    /// Colours and bold text (a terminal without `NO_COLOR`).
    pub color: bool,
    /// Width to wrap to when stdout is not a terminal.
    pub width: Option<u16>,
}

impl TableStyle {
    /// Colour on a terminal without `NO_COLOR`; 100 columns when not a terminal.
    pub fn for_stdout() -> TableStyle {
        let tty = std::io::stdout().is_terminal();
        TableStyle {
            color: tty && std::env::var_os("NO_COLOR").is_none(),
            width: (!tty).then_some(100),
        }
    }

    fn table(&self, header: &[&str]) -> Table {
        let mut table = Table::new();
        table
            .load_style(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        if self.color {
            table.enforce_styling();
        } else {
            table.force_no_tty();
        }
        if let Some(width) = self.width {
            table.set_width(width);
        }
        table.set_header(
            header
                .iter()
                .map(|h| self.paint(Cell::new(h), None, true))
                .collect::<Vec<_>>(),
        );
        table
    }

    fn paint(&self, cell: Cell, color: Option<Color>, bold: bool) -> Cell {
        if !self.color {
            return cell;
        }
        let cell = match color {
            Some(c) => cell.fg(c),
            None => cell,
        };
        if bold {
            cell.add_attribute(Attribute::Bold)
        } else {
            cell
        }
    }
}

fn base_label(plan: &Plan, stage: &PlannedStage) -> String {
    match &stage.base {
        Base::Image(image) => image.clone(),
        Base::Scratch => "scratch".into(),
        Base::Stage(p) => format!("stage {}", plan.stages[*p].display_name()),
    }
}

/// Renders the plan as tables: stages, instructions per stage, cross-stage dependencies.
pub fn render_table(plan: &Plan, style: &TableStyle) -> String {
    let mut out = String::new();
    let target = plan.target_stage();
    out.push_str(&format!(
        "Plan of {} for {}: target {} (stage {})\n\n",
        plan.dockerfile,
        plan.platform,
        target.display_name(),
        target.index
    ));

    let mut stages = style.table(&["#", "stage", "base", "platform", "needed"]);
    for s in &plan.stages {
        let (needed, color) = if s.reachable {
            ("yes", Color::Green)
        } else {
            ("no", Color::DarkGrey)
        };
        stages.add_row(vec![
            Cell::new(s.index),
            style.paint(Cell::new(s.display_name()), None, true),
            Cell::new(base_label(plan, s)),
            Cell::new(&s.platform),
            style.paint(Cell::new(needed), Some(color), false),
        ]);
    }
    out.push_str(&format!("Stages\n{stages}\n"));

    for s in &plan.stages {
        out.push_str(&format!(
            "\nStage {} {}{}\n",
            s.index,
            s.display_name(),
            if s.reachable { "" } else { " (not needed)" }
        ));
        let mut table = style.table(&["line", "instruction (expanded)"]);
        table.add_row(vec![Cell::new(s.line), Cell::new(&s.from)]);
        let mut unknown = std::collections::BTreeSet::new();
        for i in &s.instructions {
            let mut text = i.text.clone();
            if let Some(parent) = i.onbuild_of {
                text = format!(
                    "{text}\n(ONBUILD trigger of stage {})",
                    plan.stages[parent].display_name()
                );
            }
            if !i.args.is_empty() {
                let args: Vec<String> = i.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                text = format!("{text}\nwith ARG {}", args.join(" "));
            }
            let lines = if i.end_line > i.line {
                format!("{}-{}", i.line, i.end_line)
            } else {
                i.line.to_string()
            };
            table.add_row(vec![Cell::new(lines), Cell::new(text)]);
            unknown.extend(i.unknown.iter().cloned());
        }
        out.push_str(&format!("{table}\n"));
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(|n| format!("${n}")).collect();
            out.push_str(&format!(
                "{} not expanded: set by the base image, known at build time\n",
                names.join(", ")
            ));
        }
    }

    out.push_str("\nCross-stage dependencies\n");
    if plan.deps.is_empty() {
        out.push_str("none\n");
    } else {
        let mut deps = style.table(&["stage", "needs from", "paths", "line"]);
        for d in &plan.deps {
            let consumer = &plan.stages[d.consumer];
            let producer = match &d.producer {
                Producer::Stage(p) => format!("stage {}", plan.stages[*p].display_name()),
                Producer::Image(image) => format!("image {image}"),
            };
            let mut name = consumer.display_name();
            if !d.reachable {
                name.push_str(" (not needed)");
            }
            deps.add_row(vec![
                Cell::new(name),
                Cell::new(producer),
                Cell::new(d.paths.join("\n")),
                Cell::new(d.line),
            ]);
        }
        out.push_str(&format!("{deps}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_without_value_read_the_environment() {
        let env = |k: &str| (k == "GOPROXY").then(|| "https://proxy".to_string());
        let args: Vec<String> = ["A=1", "B=", "GOPROXY", "UNSET", "C=x=y"]
            .map(String::from)
            .to_vec();
        let got = resolve_build_args(&args, env).unwrap();
        let want: BTreeMap<String, String> = [
            ("A", "1"),
            ("B", ""),
            ("C", "x=y"),
            ("GOPROXY", "https://proxy"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(resolve_build_args(&["=x".to_string()], env).is_err());
    }

    #[test]
    fn tables_are_coloured_only_when_asked() {
        let df = dockerfile::parse("FROM alpine AS a\nFROM scratch\nCOPY --from=a /x /y\n", "D")
            .unwrap();
        let options = PlanOptions {
            build_args: BTreeMap::new(),
            target: None,
            platform: "linux/amd64".parse().unwrap(),
            build_platform: "linux/amd64".parse().unwrap(),
        };
        let plan = Plan::new(&df, &options).unwrap();
        let plain = render_table(
            &plan,
            &TableStyle {
                color: false,
                width: Some(100),
            },
        );
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("stage a"), "{plain}");
        let coloured = render_table(
            &plan,
            &TableStyle {
                color: true,
                width: Some(100),
            },
        );
        assert!(coloured.contains("\x1b["), "{coloured}");
    }

    #[test]
    fn dockerfile_is_found_as_build_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("svc")).unwrap();
        std::fs::write(dir.path().join("svc/Dockerfile"), "FROM a\n").unwrap();
        let ctx = dir.path().display().to_string();
        let found = locate_dockerfile(Path::new("svc/Dockerfile"), &ctx).unwrap();
        assert_eq!(found, dir.path().join("svc/Dockerfile"));
        let found =
            locate_dockerfile(Path::new("svc/Dockerfile"), &format!("dir://{ctx}")).unwrap();
        assert_eq!(found, dir.path().join("svc/Dockerfile"));
        let abs = dir.path().join("svc/Dockerfile");
        assert_eq!(locate_dockerfile(&abs, "/nowhere").unwrap(), abs);
        let err = locate_dockerfile(Path::new("nope/Dockerfile"), &ctx).unwrap_err();
        assert!(
            err.to_string().contains("no Dockerfile at nope/Dockerfile"),
            "{err}"
        );
    }
}
