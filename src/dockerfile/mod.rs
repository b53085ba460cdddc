//! The Dockerfile front end: text to typed instructions with their source lines, following
//! BuildKit's `frontend/dockerfile` rules (parser directives, continuations, comments, heredocs,
//! JSON and shell forms, every instruction and flag), and shell-word expansion.
//!
//! Layered as BuildKit is: [`lexer`] turns physical lines into logical ones and reads heredoc
//! bodies, [`flags`] splits off `--flags`, [`parser`] builds typed [`Instruction`]s, and
//! [`expand`] performs word expansion. Parsing never expands anything: arguments keep their
//! `$VAR` text, because what a variable holds depends on the stage, the build args and the base
//! image; the `plan` module (and later the executor) expands with the right environment.
//!
//! Left out on purpose: BuildKit's lint rules (`# check=` is recorded, not run) and the
//! `# syntax=` frontend switch (recorded; kbuild always uses its own parser).

pub mod error;
pub mod expand;
pub mod flags;
pub mod instructions;
pub mod lexer;
pub mod line_parsers;
pub mod parser;
pub mod run_options;

use std::ops::Deref;

use serde::Serialize;

pub use error::{ParseError, ParseErrorKind, Warning};
pub use expand::{Env, ExpandError, Expanded, Expander, Lookup, UnknownEnv};
pub use instructions::{
    Add, ArgDecl, CommandLine, Copy, From, Healthcheck, HealthcheckCmd, Heredoc, Instruction,
    KeyValue, Onbuild, Run, Source,
};
pub use lexer::Directives;
pub use run_options::{Mount, MountType, NetworkMode, SecurityMode, Sharing};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// The name the file was parsed under (used in error messages).
    pub file: String,
    /// The escape character: `\`, or `` ` `` with `# escape=```.
    pub escape: char,
    pub directives: Directives,
    /// ARG instructions before the first FROM: their values are visible to FROM lines only.
    pub meta_args: Vec<Spanned<Vec<ArgDecl>>>,
    /// The build stages, in order; there is at least one.
    pub stages: Vec<Stage>,
    /// What Docker accepts but warns about.
    pub warnings: Vec<Warning>,
}

/// One build stage: its FROM line and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// 0-based position in the file, as `COPY --from=<index>` counts.
    pub index: usize,
    pub from: Spanned<From>,
    pub instructions: Vec<Spanned<Instruction>>,
}

impl Stage {
    /// The stage's name (lower case), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.from.node.name.as_deref()
    }
}

/// The lines an instruction spans in the file, 1-based and inclusive (heredoc bodies included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LineRange {
    pub start: usize,
    pub end: usize,
}

/// A parsed value with the lines and text it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spanned<T> {
    pub lines: LineRange,
    /// The instruction as written, continuation lines joined (heredoc bodies not included).
    pub original: String,
    pub node: T,
}

impl<T> Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.node
    }
}

/// Parses Dockerfile text. `file` names it in error messages (a path or just `Dockerfile`).
pub fn parse(source: &str, file: impl AsRef<std::path::Path>) -> Result<Dockerfile, ParseError> {
    parser::parse_source(source, &file.as_ref().display().to_string())
}

/// Parses Dockerfile bytes, which must be UTF-8 (an optional byte-order mark is skipped).
pub fn parse_bytes(
    source: &[u8],
    file: impl AsRef<std::path::Path>,
) -> Result<Dockerfile, ParseError> {
    let name = file.as_ref().display().to_string();
    match std::str::from_utf8(source) {
        Ok(text) => parser::parse_source(text, &name),
        Err(err) => {
            let valid = &source[..err.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let column = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            Err(ParseError {
                file: name,
                line,
                column,
                kind: ParseErrorKind::InvalidUtf8,
            })
        }
    }
}

#[cfg(test)]
mod tests;
