//! Errors of the build plan: each names the Dockerfile and line, and says what to do.

use crate::dockerfile::ExpandError;
use crate::platform::PlatformError;

/// A Dockerfile that parses but cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{file}:{line}: cannot expand {word:?} in `{instruction}`: {source}{}",
        expand_hint(source)
    )]
    Expand {
        file: String,
        line: usize,
        instruction: String,
        word: String,
        source: Box<ExpandError>,
    },

    #[error("{file}:{line}: `{instruction}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        instruction: String,
        message: String,
    },

    #[error(
        "{file}:{line}: base name ({image}) should not be blank\nhint: give the ARG it uses a \
             default before the first FROM, or pass --build-arg"
    )]
    BlankBase {
        file: String,
        line: usize,
        image: String,
    },

    #[error("{file}:{line}: invalid FROM --platform={value}: {source}")]
    Platform {
        file: String,
        line: usize,
        value: String,
        source: PlatformError,
    },

    #[error(
        "{file}:{line}: invalid stage index {index}: the Dockerfile has {count} stage(s), \
             numbered from 0\nhint: use a stage's index or its AS name"
    )]
    StageIndex {
        file: String,
        line: usize,
        index: usize,
        count: usize,
    },

    #[error(
        "{file}:{line}: cannot copy from stage {from:?}, it needs to be defined before current \
             stage {consumer:?}\nhint: move stage {from:?} above stage {consumer:?}"
    )]
    LaterStage {
        file: String,
        line: usize,
        from: String,
        consumer: String,
    },

    #[error(
        "{file}:{line}: circular dependency detected on stage: {stage}\nhint: a stage cannot \
             copy from itself or from a stage that depends on it"
    )]
    Cycle {
        file: String,
        line: usize,
        stage: String,
    },

    #[error(
        "{file}:{line}: variable expansion is not supported for --from={from}\nhint: define a \
             stage with `FROM ${{ARG}} AS alias` using a global ARG and copy from the alias"
    )]
    FromVariable {
        file: String,
        line: usize,
        from: String,
    },

    #[error("{file}: target stage {target:?} could not be found\nhint: {}", targets_hint(.available))]
    UnknownTarget {
        file: String,
        target: String,
        available: Vec<String>,
    },
}

fn expand_hint(err: &ExpandError) -> String {
    match err {
        ExpandError::Required { name, .. } => {
            format!("\nhint: pass --build-arg {name}=<value> and declare it with ARG {name}")
        }
        _ => String::new(),
    }
}

fn targets_hint(available: &[String]) -> String {
    if available.is_empty() {
        "no stage has a name; use a stage index".to_string()
    } else {
        format!("stages are {} (or a stage index)", available.join(", "))
    }
}
