//! Logical lines to typed instructions, following BuildKit's line parsers and instruction parsers:
//! which instructions take JSON (exec) form, how ENV/LABEL/ARG words are split, what each
//! instruction requires, and where heredocs may appear (RUN, COPY, ADD, and those under ONBUILD,
//! never in JSON form).

use std::time::Duration;

use super::error::{ParseError, ParseErrorKind};
use super::flags::{FlagKind, FlagValues, parse_flags, split_line};
use super::instructions::*;
use super::lexer::{Lexer, LogicalLine, heredocs_in_line, parse_heredoc};
use super::line_parsers::{
    JsonArgs, TOKEN_SPACE, is_json_array, parse_go_duration, parse_json, parse_words,
    split_whitespace,
};
use super::run_options::{Mount, NetworkMode, SecurityMode};
use super::{Dockerfile, LineRange, Spanned, Stage};

const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Where an instruction came from, for error locations.
struct Ctx<'a, 'l> {
    file: &'a str,
    lexer: &'a Lexer<'l>,
    line: &'a LogicalLine,
}

impl Ctx<'_, '_> {
    /// Line and column of `needle` within the instruction's lines, or of its first character.
    fn locate(&self, needle: &str) -> (usize, usize) {
        for n in self.line.start..=self.line.end {
            let text = self.lexer.physical(n);
            if !needle.is_empty()
                && let Some(byte) = text.find(needle)
            {
                return (n, text[..byte].chars().count() + 1);
            }
        }
        let first = self.lexer.physical(self.line.start);
        let indent = first.chars().take_while(|c| c.is_whitespace()).count();
        (self.line.start, indent + 1)
    }

    fn error_at(&self, needle: &str, kind: ParseErrorKind) -> ParseError {
        let (line, column) = self.locate(needle);
        ParseError {
            file: self.file.to_string(),
            line,
            column,
            kind,
        }
    }

    fn invalid(&self, keyword: &str, needle: &str, message: impl Into<String>) -> ParseError {
        self.error_at(
            needle,
            ParseErrorKind::Invalid {
                keyword: keyword.to_string(),
                message: message.into(),
            },
        )
    }
}

/// Parses a whole Dockerfile (see [`super::parse`]).
pub fn parse_source(source: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let mut lexer = Lexer::new(source);
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let lex_err = |(line, column, kind)| ParseError {
        file: file.to_string(),
        line,
        column,
        kind,
    };
    while let Some(line) = lexer.next_line().map_err(lex_err)? {
        let split = split_line(&line.text);
        let keyword = split.keyword.to_ascii_lowercase();
        let mut heredocs = Vec::new();
        if may_have_heredocs(&keyword, &split.args) && line.text.contains("<<") {
            for mut doc in heredocs_in_line(&line.text) {
                lexer.read_heredoc(&mut doc, line.start).map_err(lex_err)?;
                heredocs.push(doc);
            }
        }
        let end = lexer.current_line();
        let line = LogicalLine { end, ..line };
        let ctx = Ctx {
            file,
            lexer: &lexer,
            line: &line,
        };
        let instruction =
            parse_instruction(&ctx, &split.keyword, &split.flags, &split.args, heredocs)?;
        let lines = LineRange {
            start: line.start,
            end: line.end,
        };
        let original = line.text.trim().to_string();
        match instruction {
            Instruction::From(from) => stages.push(Stage {
                index: stages.len(),
                from: Spanned {
                    lines,
                    original,
                    node: from,
                },
                instructions: Vec::new(),
            }),
            Instruction::Arg(args) if stages.is_empty() => meta_args.push(Spanned {
                lines,
                original,
                node: args,
            }),
            other => match stages.last_mut() {
                Some(stage) => stage.instructions.push(Spanned {
                    lines,
                    original,
                    node: other,
                }),
                None => {
                    return Err(ctx.error_at(
                        &split.keyword,
                        ParseErrorKind::BeforeFrom {
                            keyword: split.keyword.to_ascii_uppercase(),
                        },
                    ));
                }
            },
        }
    }
    if stages.is_empty() {
        let line = lexer.current_line().max(1);
        return Err(ParseError {
            file: file.to_string(),
            line,
            column: 1,
            kind: ParseErrorKind::NoInstructions,
        });
    }
    Ok(Dockerfile {
        file: file.to_string(),
        escape: lexer.escape(),
        directives: lexer.directives().clone(),
        meta_args,
        stages,
        warnings: lexer.warnings.clone(),
    })
}

/// True for RUN, COPY and ADD (also under ONBUILD) in shell form.
fn may_have_heredocs(keyword: &str, args: &str) -> bool {
    match keyword {
        "run" | "copy" | "add" => !is_json_array(args),
        "onbuild" => {
            let inner = split_line(args);
            may_have_heredocs(&inner.keyword.to_ascii_lowercase(), &inner.args)
                && !inner.keyword.eq_ignore_ascii_case("onbuild")
        }
        _ => false,
    }
}

type Heredocs<'h> = dyn FnMut() -> Vec<Heredoc> + 'h;

fn parse_instruction(
    ctx: &Ctx<'_, '_>,
    keyword_as_written: &str,
    flags: &[String],
    args: &str,
    heredocs: Vec<Heredoc>,
) -> Result<Instruction, ParseError> {
    let mut docs = Some(heredocs);
    let mut give = move || docs.take().unwrap_or_default();
    parse_keyword(ctx, keyword_as_written, flags, args, &mut give)
}

fn parse_keyword(
    ctx: &Ctx<'_, '_>,
    keyword_as_written: &str,
    flags: &[String],
    args: &str,
    heredocs: &mut Heredocs<'_>,
) -> Result<Instruction, ParseError> {
    let keyword = keyword_as_written.to_ascii_lowercase();
    let upper = keyword.to_ascii_uppercase();
    let upper = upper.as_str();
    let escape = ctx.lexer.escape();
    let take_flags = |accepted: &[(&'static str, FlagKind)]| -> Result<FlagValues, ParseError> {
        parse_flags(flags, accepted).map_err(|(message, word)| {
            let needle = word.split('=').next().unwrap_or(&word).to_string();
            ctx.error_at(
                &needle,
                ParseErrorKind::Flag {
                    keyword: upper.to_string(),
                    message,
                },
            )
        })
    };
    let no_flags = || take_flags(&[]).map(|_| ());
    let required = |what: &str| ctx.invalid(upper, keyword_as_written, what.to_string());
    Ok(match keyword.as_str() {
        "from" => {
            let mut f = take_flags(&[("platform", FlagKind::String)])?;
            let words = split_whitespace(args);
            let name = match words.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(ctx.invalid(
                            upper,
                            name,
                            format!(
                                "invalid name for build stage: {name:?}, name can't start with a \
                                 number or contain symbols\nhint: stage names start with a letter \
                                 and contain letters, digits, '-', '_' and '.'"
                            ),
                        ));
                    }
                    Some(lower)
                }
                _ => {
                    return Err(required(
                        "FROM requires either one or three arguments: expected \
                         FROM [--platform=<platform>] <image> [AS <name>]",
                    ));
                }
            };
            Instruction::From(From {
                image: words[0].clone(),
                name,
                platform: f.string("platform"),
            })
        }
        "run" => {
            let mut f = take_flags(&[
                ("mount", FlagKind::Strings),
                ("network", FlagKind::String),
                ("security", FlagKind::String),
            ])?;
            let mounts = f
                .list("mount")
                .iter()
                .map(|spec| {
                    Mount::parse(spec, None).map_err(|m| {
                        ctx.invalid(upper, spec, format!("invalid --mount={spec}: {m}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let network = f
                .string("network")
                .map(|n| NetworkMode::parse(&n).map_err(|m| ctx.invalid(upper, "--network", m)))
                .transpose()?;
            let security = f
                .string("security")
                .map(|s| SecurityMode::parse(&s).map_err(|m| ctx.invalid(upper, "--security", m)))
                .transpose()?;
            let command = command_line(ctx, upper, args)?;
            let empty = match &command {
                CommandLine::Shell(s) => s.is_empty(),
                CommandLine::Exec(a) => a.is_empty(),
            };
            if empty {
                return Err(required(
                    "RUN requires at least one argument: expected a command",
                ));
            }
            Instruction::Run(Run {
                command,
                heredocs: heredocs(),
                mounts,
                network,
                security,
            })
        }
        "cmd" | "entrypoint" => {
            no_flags()?;
            let command = if args.is_empty() {
                CommandLine::Exec(Vec::new())
            } else {
                command_line(ctx, upper, args)?
            };
            if keyword == "cmd" {
                Instruction::Cmd(command)
            } else {
                Instruction::Entrypoint(command)
            }
        }
        "shell" => {
            no_flags()?;
            match parse_json(args) {
                JsonArgs::Strings(v) if !v.is_empty() => Instruction::Shell(v),
                JsonArgs::Strings(_) => {
                    return Err(required("SHELL requires at least one argument"));
                }
                JsonArgs::NotStrings => return Err(not_strings(ctx, upper)),
                JsonArgs::NotJson => {
                    return Err(required(
                        "SHELL requires the arguments to be in JSON form: expected \
                         SHELL [\"executable\", \"parameters\"]",
                    ));
                }
            }
        }
        "env" | "label" => {
            no_flags()?;
            let pairs = parse_name_values(ctx, upper, args, escape)?;
            if keyword == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "arg" => {
            no_flags()?;
            let words = parse_words(args, escape);
            if words.is_empty() {
                return Err(required(
                    "ARG requires at least one argument: expected ARG <name>[=<default>]",
                ));
            }
            let mut decls = Vec::new();
            for word in words {
                let decl = match word.split_once('=') {
                    Some((name, value)) => ArgDecl {
                        name: name.to_string(),
                        default: Some(value.to_string()),
                    },
                    None => ArgDecl {
                        name: word.clone(),
                        default: None,
                    },
                };
                if decl.name.is_empty() {
                    return Err(ctx.invalid(upper, &word, "ARG names can not be blank"));
                }
                decls.push(decl);
            }
            Instruction::Arg(decls)
        }
        "expose" => {
            no_flags()?;
            let ports = split_whitespace(args);
            if ports.is_empty() {
                return Err(required(
                    "EXPOSE requires at least one argument: expected a port",
                ));
            }
            Instruction::Expose(ports)
        }
        "volume" => {
            no_flags()?;
            let volumes = list_args(ctx, upper, args)?.0;
            if volumes.is_empty() {
                return Err(required(
                    "VOLUME requires at least one argument: expected a path",
                ));
            }
            if volumes.iter().any(|v| v.trim().is_empty()) {
                return Err(required("VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(volumes.into_iter().map(|v| v.trim().to_string()).collect())
        }
        "workdir" | "user" | "stopsignal" | "maintainer" => {
            no_flags()?;
            if args.is_empty() {
                return Err(required(&format!("{upper} requires exactly one argument")));
            }
            let value = args.to_string();
            match keyword.as_str() {
                "workdir" => Instruction::Workdir(value),
                "user" => Instruction::User(value),
                "stopsignal" => Instruction::Stopsignal(value),
                _ => Instruction::Maintainer(value),
            }
        }
        "copy" | "add" => parse_copy_add(ctx, &keyword, upper, args, take_flags, heredocs)?,
        "healthcheck" => parse_healthcheck(ctx, upper, args, take_flags)?,
        "onbuild" => {
            no_flags()?;
            if args.is_empty() {
                return Err(required(
                    "ONBUILD requires at least one argument: expected an instruction",
                ));
            }
            let inner = split_line(args);
            match inner.keyword.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err(required(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ));
                }
                kw @ ("MAINTAINER" | "FROM") => {
                    return Err(required(&format!(
                        "{kw} isn't allowed as an ONBUILD trigger"
                    )));
                }
                _ => {}
            }
            let docs = heredocs();
            let mut expression = args.to_string();
            for doc in &docs {
                expression.push('\n');
                expression.push_str(&doc.content);
                expression.push_str(&doc.name);
            }
            let mut docs = Some(docs);
            let mut give = move || docs.take().unwrap_or_default();
            let instruction =
                parse_keyword(ctx, &inner.keyword, &inner.flags, &inner.args, &mut give)?;
            Instruction::Onbuild(Onbuild {
                expression,
                instruction: Box::new(instruction),
            })
        }
        _ => {
            return Err(ctx.error_at(
                keyword_as_written,
                ParseErrorKind::UnknownInstruction {
                    name: keyword_as_written.to_string(),
                    suggestion: suggest(&keyword),
                },
            ));
        }
    })
}

fn suggest(keyword: &str) -> Option<String> {
    KEYWORDS
        .iter()
        .map(|k| (strsim::levenshtein(k, keyword), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.to_ascii_uppercase())
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn not_strings(ctx: &Ctx<'_, '_>, keyword: &str) -> ParseError {
    ctx.error_at(
        "[",
        ParseErrorKind::NotStringArray {
            keyword: keyword.to_string(),
        },
    )
}

/// RUN, CMD, ENTRYPOINT and HEALTHCHECK CMD: exec form when the arguments are a JSON string array.
fn command_line(ctx: &Ctx<'_, '_>, keyword: &str, args: &str) -> Result<CommandLine, ParseError> {
    match parse_json(args) {
        JsonArgs::Strings(v) => Ok(CommandLine::Exec(v)),
        JsonArgs::NotStrings => Err(not_strings(ctx, keyword)),
        JsonArgs::NotJson => Ok(CommandLine::Shell(args.to_string())),
    }
}

/// COPY, ADD and VOLUME: a JSON string array or whitespace-separated words. Returns the list and
/// whether it was JSON.
fn list_args(
    ctx: &Ctx<'_, '_>,
    keyword: &str,
    args: &str,
) -> Result<(Vec<String>, bool), ParseError> {
    match parse_json(args) {
        JsonArgs::Strings(v) => Ok((v, true)),
        JsonArgs::NotStrings => Err(not_strings(ctx, keyword)),
        JsonArgs::NotJson => Ok((split_whitespace(args), false)),
    }
}

fn parse_name_values(
    ctx: &Ctx<'_, '_>,
    keyword: &str,
    args: &str,
    escape: char,
) -> Result<Vec<KeyValue>, ParseError> {
    let words = parse_words(args, escape);
    let Some(first) = words.first() else {
        return Err(ctx.invalid(
            keyword,
            keyword,
            format!("{keyword} requires at least one argument: expected {keyword} <key>=<value>"),
        ));
    };
    if !first.contains('=') {
        // Legacy form: `ENV KEY value with spaces`.
        let trimmed = args.trim_start();
        let split = trimmed.find(TOKEN_SPACE).map(|i| {
            let rest = trimmed[i..].trim_start_matches(TOKEN_SPACE);
            (&trimmed[..i], rest)
        });
        return match split {
            Some((key, value)) if !value.is_empty() => Ok(vec![KeyValue {
                key: key.to_string(),
                value: value.to_string(),
                legacy: true,
            }]),
            _ => Err(ctx.invalid(
                keyword,
                first,
                format!("{keyword} must have two arguments: expected {keyword} <key>=<value>"),
            )),
        };
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => {
                Err(ctx.invalid(keyword, word, format!("{keyword} names can not be blank")))
            }
            Some((key, value)) => Ok(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
                legacy: false,
            }),
            None => Err(ctx.invalid(
                keyword,
                word,
                format!("syntax error - can't find = in {word:?}: expected the form name=value"),
            )),
        })
        .collect()
}

fn parse_copy_add(
    ctx: &Ctx<'_, '_>,
    keyword: &str,
    upper: &str,
    args: &str,
    take_flags: impl Fn(&[(&'static str, FlagKind)]) -> Result<FlagValues, ParseError>,
    heredocs: &mut Heredocs<'_>,
) -> Result<Instruction, ParseError> {
    let (mut words, json) = list_args(ctx, upper, args)?;
    if words.len() < 2 {
        return Err(ctx.invalid(
            upper,
            upper,
            format!(
                "{upper} requires at least two arguments, but only {} provided: expected \
                 {upper} <source>... <destination>",
                if words.is_empty() {
                    "none was"
                } else {
                    "one was"
                }
            ),
        ));
    }
    let mut f = if keyword == "copy" {
        take_flags(&[
            ("from", FlagKind::String),
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("parents", FlagKind::Bool),
            ("exclude", FlagKind::Strings),
        ])?
    } else {
        take_flags(&[
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::String),
            ("exclude", FlagKind::Strings),
            ("unpack", FlagKind::Bool),
        ])?
    };
    let dest = words.pop().unwrap_or_default();
    if !json && parse_heredoc(&dest).is_some() {
        return Err(ctx.invalid(
            upper,
            &dest,
            format!("{upper} cannot accept a heredoc as a destination"),
        ));
    }
    let docs = heredocs();
    let sources = words
        .into_iter()
        .map(|src| match (json, parse_heredoc(&src)) {
            (false, Some(marker)) => {
                let content = docs
                    .iter()
                    .find(|d| d.name == marker.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                Source::Heredoc(Heredoc { content, ..marker })
            }
            _ => Source::Path(src),
        })
        .collect();
    let chown = f.string("chown");
    let chmod = f.string("chmod");
    let exclude = f.list("exclude");
    Ok(if keyword == "copy" {
        Instruction::Copy(Copy {
            sources,
            dest,
            from: f.string("from"),
            chown,
            chmod,
            link: f.bool("link"),
            parents: f.bool("parents"),
            exclude,
            json,
        })
    } else {
        Instruction::Add(Add {
            sources,
            dest,
            chown,
            chmod,
            link: f.bool("link"),
            keep_git_dir: f.bool("keep-git-dir"),
            checksum: f.string("checksum"),
            exclude,
            unpack: f.bool_opt("unpack"),
            json,
        })
    })
}

fn parse_healthcheck(
    ctx: &Ctx<'_, '_>,
    upper: &str,
    args: &str,
    take_flags: impl Fn(&[(&'static str, FlagKind)]) -> Result<FlagValues, ParseError>,
) -> Result<Instruction, ParseError> {
    let args = args.trim();
    let (kind, rest) = match args.find(char::is_whitespace) {
        Some(i) => (&args[..i], args[i..].trim_start()),
        None => (args, ""),
    };
    if kind.is_empty() {
        return Err(ctx.invalid(
            upper,
            upper,
            "HEALTHCHECK requires at least one argument: expected NONE or CMD <command>",
        ));
    }
    match kind.to_ascii_uppercase().as_str() {
        // As in BuildKit, flags before NONE are not checked.
        "NONE" if rest.is_empty() => Ok(Instruction::Healthcheck(Healthcheck::None)),
        "NONE" => Err(ctx.invalid(upper, rest, "HEALTHCHECK NONE takes no arguments")),
        "CMD" => {
            let mut f = take_flags(&[
                ("interval", FlagKind::String),
                ("timeout", FlagKind::String),
                ("start-period", FlagKind::String),
                ("start-interval", FlagKind::String),
                ("retries", FlagKind::String),
            ])?;
            let command = command_line(ctx, upper, rest)?;
            let empty = match &command {
                CommandLine::Shell(s) => s.is_empty(),
                CommandLine::Exec(a) => a.is_empty(),
            };
            if empty {
                return Err(ctx.invalid(upper, kind, "missing command after HEALTHCHECK CMD"));
            }
            let mut interval = |name: &str| -> Result<Option<Duration>, ParseError> {
                let Some(value) = f.string(name) else {
                    return Ok(None);
                };
                let flag = format!("--{name}");
                let d = parse_go_duration(&value).map_err(|m| {
                    ctx.invalid(upper, &flag, format!("invalid --{name}={value}: {m}"))
                })?;
                if d.is_zero() {
                    return Ok(None);
                }
                if d < Duration::from_millis(1) {
                    return Err(ctx.invalid(
                        upper,
                        &flag,
                        format!("interval {name:?} cannot be less than 1ms"),
                    ));
                }
                Ok(Some(d))
            };
            let interval_v = interval("interval")?;
            let timeout = interval("timeout")?;
            let start_period = interval("start-period")?;
            let start_interval = interval("start-interval")?;
            let retries = match f.string("retries") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    ctx.invalid(
                        upper,
                        "--retries",
                        format!("--retries must be a number of zero or more, not {v:?}"),
                    )
                })?),
            };
            Ok(Instruction::Healthcheck(Healthcheck::Cmd(HealthcheckCmd {
                command,
                interval: interval_v,
                timeout,
                start_period,
                start_interval,
                retries,
            })))
        }
        _ => Err(ctx.invalid(
            upper,
            kind,
            format!("unknown type {kind:?} in HEALTHCHECK: expected CMD or NONE"),
        )),
    }
}
