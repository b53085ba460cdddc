//! Typed Dockerfile instructions, as the parser produces them: arguments as written (not yet
//! expanded), flags parsed into typed options, heredoc bodies attached.
//!
//! `Display` renders an instruction in a canonical one-line form (`COPY --from=builder /a /b`):
//! the plan prints it after expansion, and it is the text a history entry or cache key shows.
//! Heredoc bodies are not part of that line; they are data of the instruction.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::run_options::{Mount, NetworkMode, SecurityMode};

/// One Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Env(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    Label(Vec<KeyValue>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Workdir(String),
    User(String),
    Copy(Copy),
    Add(Add),
    Healthcheck(Healthcheck),
    Stopsignal(String),
    Onbuild(Onbuild),
    Maintainer(String),
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The base: an image reference, a previous stage's name, or `scratch` (may hold `$ARG`s).
    pub image: String,
    /// The stage name, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// `--platform`, as written.
    pub platform: Option<String>,
}

/// A command as CMD, ENTRYPOINT, RUN and HEALTHCHECK take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "args", rename_all = "lowercase")]
pub enum CommandLine {
    /// Shell form: one string the shell runs.
    Shell(String),
    /// Exec (JSON) form: the argv itself.
    Exec(Vec<String>),
}

/// `RUN [--mount=...] [--network=...] [--security=...] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: CommandLine,
    /// Heredocs named on the command line, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heredocs: Vec<Heredoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityMode>,
}

/// A heredoc attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed; also the file name for COPY and ADD.
    pub name: String,
    /// `3<<EOF` gives 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<u32>,
    /// False when the delimiter was quoted (`<<'EOF'`): the body is taken literally.
    pub expand: bool,
    /// `<<-EOF`: leading tabs are removed from the body lines.
    pub chomp: bool,
    /// The body as written, with its line endings.
    pub content: String,
}

impl Heredoc {
    /// The marker as it is written on the instruction line: `<<EOF`, `<<-"EOF"`, `3<<A`.
    pub fn marker(&self) -> String {
        let fd = self.fd.map(|fd| fd.to_string()).unwrap_or_default();
        let chomp = if self.chomp { "-" } else { "" };
        if self.expand {
            format!("{fd}<<{chomp}{}", self.name)
        } else {
            format!("{fd}<<{chomp}\"{}\"", self.name)
        }
    }

    /// The body with leading tabs removed when the heredoc asked for it (`<<-`).
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// `KEY=VALUE` of ENV and LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `ENV KEY value` form.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A path or pattern (in the context, another stage or image, or a URL for ADD).
    Path(String),
    /// Inline content from a heredoc.
    Heredoc(Heredoc),
}

/// `COPY [--from=...] [--chown=...] [--chmod=...] [--link] [--parents] [--exclude=...] SRC... DEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from`: a stage name, a stage index or an image reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chown: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chmod: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Written in JSON form (`COPY ["a b", "/c"]`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
}

/// `ADD [--chown] [--chmod] [--link] [--keep-git-dir] [--checksum] [--exclude] [--unpack] SRC... DEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub sources: Vec<Source>,
    pub dest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chown: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chmod: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_git_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `--unpack`: unset means "archives from the context are unpacked, URLs are not".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpack: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Healthcheck {
    None,
    Cmd(HealthcheckCmd),
}

/// The options and command of `HEALTHCHECK CMD`; unset options take the runtime's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckCmd {
    pub command: CommandLine,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub start_period: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub start_interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// `ONBUILD INSTRUCTION`: a trigger stored in the image and run by builds that use it as a base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger's text as written after `ONBUILD` (heredoc bodies appended, as Docker stores it).
    pub expression: String,
    /// The trigger, parsed.
    pub instruction: Box<Instruction>,
}

mod opt_duration {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::go_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

/// Formats a duration the way Go prints one (`30s`, `1m30s`, `500ms`), as Dockerfiles write them.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        let nanos = d.as_nanos();
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let frac = d.subsec_nanos();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let frac = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    }
    out
}

impl Instruction {
    /// The instruction's keyword in upper case (`RUN`, `COPY`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// Quotes a word for display only when it would otherwise read differently.
fn word(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        s.to_string()
    } else {
        json_string(s)
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| format!("{items:?}"))
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandLine::Shell(s) => f.write_str(s),
            CommandLine::Exec(args) => f.write_str(&json_list(args)),
        }
    }
}

fn write_flag(f: &mut fmt::Formatter<'_>, name: &str, value: &Option<String>) -> fmt::Result {
    match value {
        Some(v) => write!(f, " --{name}={v}"),
        None => Ok(()),
    }
}

fn write_sources(
    f: &mut fmt::Formatter<'_>,
    sources: &[Source],
    dest: &str,
    json: bool,
) -> fmt::Result {
    let names: Vec<String> = sources
        .iter()
        .map(|s| match s {
            Source::Path(p) => p.clone(),
            Source::Heredoc(h) => h.marker(),
        })
        .chain(std::iter::once(dest.to_string()))
        .collect();
    if json {
        write!(f, " {}", json_list(&names))
    } else {
        write!(f, " {}", names.join(" "))
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())?;
        match self {
            Instruction::From(from) => {
                write_flag(f, "platform", &from.platform)?;
                write!(f, " {}", from.image)?;
                if let Some(name) = &from.name {
                    write!(f, " AS {name}")?;
                }
                Ok(())
            }
            Instruction::Run(run) => {
                for m in &run.mounts {
                    write!(f, " --mount={m}")?;
                }
                if let Some(n) = &run.network {
                    write!(f, " --network={n}")?;
                }
                if let Some(s) = &run.security {
                    write!(f, " --security={s}")?;
                }
                write!(f, " {}", run.command)
            }
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => write!(f, " {c}"),
            Instruction::Shell(args) => write!(f, " {}", json_list(args)),
            Instruction::Env(kvs) | Instruction::Label(kvs) => {
                for kv in kvs {
                    write!(f, " {}={}", word(&kv.key), word(&kv.value))?;
                }
                Ok(())
            }
            Instruction::Arg(args) => {
                for a in args {
                    match &a.default {
                        Some(d) => write!(f, " {}={}", a.name, word(d))?,
                        None => write!(f, " {}", a.name)?,
                    }
                }
                Ok(())
            }
            Instruction::Expose(items) => write!(f, " {}", items.join(" ")),
            Instruction::Volume(items) => write!(f, " {}", json_list(items)),
            Instruction::Workdir(s)
            | Instruction::User(s)
            | Instruction::Stopsignal(s)
            | Instruction::Maintainer(s) => write!(f, " {s}"),
            Instruction::Copy(c) => {
                write_flag(f, "from", &c.from)?;
                write_flag(f, "chown", &c.chown)?;
                write_flag(f, "chmod", &c.chmod)?;
                if c.link {
                    f.write_str(" --link")?;
                }
                if c.parents {
                    f.write_str(" --parents")?;
                }
                for e in &c.exclude {
                    write!(f, " --exclude={e}")?;
                }
                write_sources(f, &c.sources, &c.dest, c.json)
            }
            Instruction::Add(a) => {
                write_flag(f, "chown", &a.chown)?;
                write_flag(f, "chmod", &a.chmod)?;
                if a.link {
                    f.write_str(" --link")?;
                }
                if a.keep_git_dir {
                    f.write_str(" --keep-git-dir")?;
                }
                write_flag(f, "checksum", &a.checksum)?;
                for e in &a.exclude {
                    write!(f, " --exclude={e}")?;
                }
                if let Some(u) = a.unpack {
                    write!(f, " --unpack={u}")?;
                }
                write_sources(f, &a.sources, &a.dest, a.json)
            }
            Instruction::Healthcheck(Healthcheck::None) => f.write_str(" NONE"),
            Instruction::Healthcheck(Healthcheck::Cmd(h)) => {
                let durations = [
                    ("interval", h.interval),
                    ("timeout", h.timeout),
                    ("start-period", h.start_period),
                    ("start-interval", h.start_interval),
                ];
                for (name, d) in durations {
                    if let Some(d) = d {
                        write!(f, " --{name}={}", go_duration(d))?;
                    }
                }
                if let Some(r) = h.retries {
                    write!(f, " --retries={r}")?;
                }
                write!(f, " CMD {}", h.command)
            }
            Instruction::Onbuild(o) => write!(f, " {}", o.instruction),
        }
    }
}
