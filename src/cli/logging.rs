//! Log output for every command: Kaniko's `--verbosity`, `--log-format` and `--log-timestamp`.
//!
//! Logs go to stderr; stdout is kept for data. `json` writes one object per line with Kaniko's keys
//! (`level` in lower case, `msg`, and `time` when timestamps are on) so log collectors that parse
//! Kaniko's lines keep working; tracing-subscriber's own JSON layout uses other keys, hence the small
//! formatter here. `color` falls back to plain text when stderr is not a terminal or `NO_COLOR` is set.

use std::fmt;
use std::io::IsTerminal;
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Logging flags, shared by every subcommand.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log level: trace, debug, info, warn, error, fatal or panic
    #[arg(short = 'v', long, global = true, default_value = "info", value_parser = parse_level,
          value_name = "LEVEL")]
    pub verbosity: Level,

    /// Log format
    #[arg(long, global = true, value_enum, default_value = "color")]
    pub log_format: LogFormat,

    /// Prefix every log line with a timestamp
    #[arg(long, global = true, require_equals = true, num_args = 0..=1,
          default_missing_value = "true", default_value_t = false,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub log_timestamp: bool,
}

/// Log formats Kaniko offers.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Color,
    Json,
}

impl LogArgs {
    /// True when progress bars and other terminal decoration may be drawn.
    pub fn interactive(&self) -> bool {
        self.log_format != LogFormat::Json && std::io::stderr().is_terminal()
    }
}

/// Kaniko's level names, mapped onto tracing's five levels (`fatal` and `panic` mean errors only).
fn parse_level(s: &str) -> Result<Level, String> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(Level::TRACE),
        "debug" => Ok(Level::DEBUG),
        "info" => Ok(Level::INFO),
        "warn" | "warning" => Ok(Level::WARN),
        "error" | "fatal" | "panic" => Ok(Level::ERROR),
        _ => Err(format!(
            "unknown log level {s:?}: expected trace, debug, info, warn, error, fatal or panic"
        )),
    }
}

/// Installs the global subscriber. Safe to call once per process; later calls are ignored so tests
/// that run commands in-process do not fail.
pub fn init(args: &LogArgs) {
    let color = args.log_format == LogFormat::Color
        && std::env::var_os("NO_COLOR").is_none()
        && std::io::stderr().is_terminal();
    let formatter = LineFormat {
        json: args.log_format == LogFormat::Json,
        color,
        timestamp: args.log_timestamp,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(args.verbosity)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .event_format(formatter)
        .try_init();
}

struct LineFormat {
    json: bool,
    color: bool,
    timestamp: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = level_name(event.metadata().level());
        if self.json {
            let mut line = serde_json::Map::new();
            line.insert("level".into(), level.into());
            line.insert("msg".into(), fields.message.into());
            for (key, value) in fields.extra {
                line.insert(key, value.into());
            }
            if self.timestamp {
                line.insert("time".into(), now_rfc3339().into());
            }
            return writeln!(writer, "{}", serde_json::Value::Object(line));
        }
        if self.timestamp {
            write!(writer, "{} ", now_rfc3339())?;
        }
        let tag = level.to_ascii_uppercase();
        if self.color {
            let code = match *event.metadata().level() {
                Level::ERROR => "31",
                Level::WARN => "33",
                Level::INFO => "36",
                _ => "90",
            };
            write!(writer, "\x1b[{code}m{tag:<5}\x1b[0m {}", fields.message)?;
        } else {
            write!(writer, "{tag:<5} {}", fields.message)?;
        }
        for (key, value) in &fields.extra {
            write!(writer, " {key}={value}")?;
        }
        writeln!(writer)
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.extra
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaniko_level_names_are_accepted() {
        assert_eq!(parse_level("fatal").unwrap(), Level::ERROR);
        assert_eq!(parse_level("WARN").unwrap(), Level::WARN);
        assert_eq!(parse_level("trace").unwrap(), Level::TRACE);
        let err = parse_level("loud").unwrap_err();
        assert!(err.contains("unknown log level \"loud\""), "{err}");
    }
}
