//! Errors of the Dockerfile front end: each names the file, line and column and says what was
//! expected.

/// A Dockerfile that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {kind}")]
pub struct ParseError {
    /// The Dockerfile's name as given to the parser.
    pub file: String,
    /// 1-based line of the problem (the instruction's first line when nothing more precise is known).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub kind: ParseErrorKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("the Dockerfile is not valid UTF-8\nhint: save it as UTF-8")]
    InvalidUtf8,

    #[error("file with no instructions\nhint: a Dockerfile needs at least a FROM instruction")]
    NoInstructions,

    #[error(
        "{keyword} before the first FROM: expected FROM or ARG\nhint: only ARG may come before \
             the first FROM"
    )]
    BeforeFrom { keyword: String },

    #[error("{message}")]
    Directive { message: String },

    #[error("unknown instruction: {name}{}", hint_for(.suggestion))]
    UnknownInstruction {
        name: String,
        suggestion: Option<String>,
    },

    #[error("unterminated heredoc: expected a line with only {name:?} before the end of the file")]
    UnterminatedHeredoc { name: String },

    #[error("{keyword}: when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray { keyword: String },

    #[error("{keyword}: {message}")]
    Flag { keyword: String, message: String },

    #[error("{keyword}: {message}")]
    Invalid { keyword: String, message: String },
}

fn hint_for(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("\nhint: did you mean {s}?"),
        None => "\nhint: instructions are FROM, RUN, CMD, LABEL, EXPOSE, ENV, ADD, COPY, \
                 ENTRYPOINT, VOLUME, USER, WORKDIR, ARG, ONBUILD, STOPSIGNAL, HEALTHCHECK, SHELL \
                 and MAINTAINER"
            .to_string(),
    }
}

/// Something Docker accepts but warns about (an empty continuation line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}
