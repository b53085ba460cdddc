//! The build context: where `--context`, `--context-sub-path` and `--dockerfile` point, and which
//! context files `.dockerignore` hides from COPY and ADD.
//!
//! A context is a local directory (`/path`, `dir:///path`). Other Kaniko schemes (`tar://`,
//! `git://`, `gs://`, `s3://`, `https://`) are recognised and refused with a clear message until
//! they are supported, rather than being mistaken for directory names.
//!
//! The Dockerfile is found the way Kaniko finds it, so Task args keep working: the path as given
//! (absolute, or relative to the working directory) when it exists, else relative to the context.
//! `.dockerignore` is read the way BuildKit reads it: `<Dockerfile>.dockerignore` beside the
//! Dockerfile first, then `.dockerignore` at the context root.

pub mod dockerignore;

use std::path::{Path, PathBuf};

pub use dockerignore::{DockerIgnore, PatternError};

/// What the command line says about the context.
#[derive(Debug, Clone)]
pub struct ContextSpec {
    /// `--context`: a directory or `dir://` URL.
    pub context: String,
    /// `--context-sub-path`.
    pub sub_path: Option<String>,
    /// `--dockerfile`.
    pub dockerfile: PathBuf,
}

/// A resolved build context.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The directory COPY and ADD sources are relative to.
    pub root: PathBuf,
    /// The Dockerfile, absolute.
    pub dockerfile: PathBuf,
    /// The ignore file that applies, if any.
    pub ignore_file: Option<PathBuf>,
    pub ignore: DockerIgnore,
}

/// A context that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(
        "context {context:?}: the {scheme}:// scheme is not supported yet\n\
         hint: check the source out into a directory (a Tekton workspace) and pass --context=DIR"
    )]
    UnsupportedScheme { context: String, scheme: String },
    #[error("context directory {path} does not exist or is not a directory\nhint: {hint}")]
    NotADirectory { path: PathBuf, hint: &'static str },
    #[error(
        "no Dockerfile at {given} (looked at {as_given} and {in_context})\n\
         hint: provide a valid path to a Dockerfile within the build context with --dockerfile"
    )]
    NoDockerfile {
        given: String,
        as_given: PathBuf,
        in_context: PathBuf,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

impl BuildContext {
    /// Resolves the context directory, the Dockerfile and the ignore rules.
    pub fn open(spec: &ContextSpec) -> Result<BuildContext, ContextError> {
        let dir = context_dir(&spec.context)?;
        let root = match &spec.sub_path {
            Some(sub) if !sub.is_empty() => dir.join(sub.trim_start_matches('/')),
            _ => dir,
        };
        if !root.is_dir() {
            return Err(ContextError::NotADirectory {
                path: root,
                hint: if spec.sub_path.is_some() {
                    "--context-sub-path is relative to --context"
                } else {
                    "--context must name a directory (Kaniko's default is /workspace/)"
                },
            });
        }
        let root = absolute(&root)?;
        let dockerfile = find_dockerfile(&spec.dockerfile, &root)?;
        let (ignore_file, ignore) = read_ignore(&dockerfile, &root)?;
        Ok(BuildContext {
            root,
            dockerfile,
            ignore_file,
            ignore,
        })
    }

    /// Whether a context-relative path is hidden by `.dockerignore`.
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.ignore.is_excluded(rel)
    }
}

/// The directory a `--context` value names.
fn context_dir(context: &str) -> Result<PathBuf, ContextError> {
    if let Some(path) = context.strip_prefix("dir://") {
        return Ok(PathBuf::from(path));
    }
    if let Some((scheme, _)) = context.split_once("://") {
        return Err(ContextError::UnsupportedScheme {
            context: context.to_string(),
            scheme: scheme.to_string(),
        });
    }
    Ok(PathBuf::from(context))
}

fn absolute(path: &Path) -> Result<PathBuf, ContextError> {
    std::path::absolute(path).map_err(|source| ContextError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Finds the Dockerfile the way Kaniko does: the path as given (absolute, or relative to the
/// working directory) when it is a file, else relative to the context root.
pub fn find_dockerfile(given: &Path, root: &Path) -> Result<PathBuf, ContextError> {
    let in_context = root.join(given);
    for candidate in [given, in_context.as_path()] {
        if candidate.is_file() {
            return absolute(candidate);
        }
    }
    Err(ContextError::NoDockerfile {
        given: given.display().to_string(),
        as_given: std::path::absolute(given).unwrap_or_else(|_| given.to_path_buf()),
        in_context,
    })
}

fn read_ignore(
    dockerfile: &Path,
    root: &Path,
) -> Result<(Option<PathBuf>, DockerIgnore), ContextError> {
    let beside = dockerfile
        .file_name()
        .map(|name| dockerfile.with_file_name(format!("{}.dockerignore", name.to_string_lossy())));
    for candidate in beside.into_iter().chain([root.join(".dockerignore")]) {
        match std::fs::read_to_string(&candidate) {
            Ok(text) => {
                let ignore = DockerIgnore::parse(&text, &candidate.display().to_string())?;
                return Ok((Some(candidate), ignore));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ContextError::Read {
                    path: candidate,
                    source,
                });
            }
        }
    }
    Ok((None, DockerIgnore::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(context: &Path, dockerfile: &str) -> ContextSpec {
        ContextSpec {
            context: context.display().to_string(),
            sub_path: None,
            dockerfile: dockerfile.into(),
        }
    }

    #[test]
    fn dockerfile_is_found_as_given_then_in_the_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("svc")).unwrap();
        std::fs::write(dir.path().join("svc/Dockerfile"), "FROM scratch\n").unwrap();
        let ctx = BuildContext::open(&spec(dir.path(), "svc/Dockerfile")).unwrap();
        assert_eq!(ctx.dockerfile, dir.path().join("svc/Dockerfile"));
        let abs = dir.path().join("svc/Dockerfile");
        let ctx = BuildContext::open(&spec(dir.path(), abs.to_str().unwrap())).unwrap();
        assert_eq!(ctx.dockerfile, abs);
        let err = BuildContext::open(&spec(dir.path(), "nope/Dockerfile")).unwrap_err();
        assert!(
            err.to_string().contains("hint: provide a valid path"),
            "{err}"
        );
    }

    #[test]
    fn sub_path_and_dir_scheme_select_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
        let mut s = spec(dir.path(), "Dockerfile");
        s.context = format!("dir://{}", dir.path().display());
        s.sub_path = Some("app".into());
        let ctx = BuildContext::open(&s).unwrap();
        assert_eq!(ctx.root, dir.path().join("app"));
        s.sub_path = Some("missing".into());
        let err = BuildContext::open(&s).unwrap_err().to_string();
        assert!(err.contains("--context-sub-path is relative"), "{err}");
    }

    #[test]
    fn other_schemes_are_refused_clearly() {
        let err = context_dir("git://github.com/x/y").unwrap_err().to_string();
        assert!(
            err.contains("the git:// scheme is not supported yet"),
            "{err}"
        );
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        // Absolute: a relative --dockerfile is looked up in the working directory first, and
        // tests run in the repository, which has a Dockerfile of its own.
        let dockerfile = dir.path().join("Dockerfile");
        let dockerfile = dockerfile.to_str().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n").unwrap();
        let ctx = BuildContext::open(&spec(dir.path(), dockerfile)).unwrap();
        assert!(ctx.is_excluded("a.log") && !ctx.is_excluded("a.tmp"));
        std::fs::write(dir.path().join("Dockerfile.dockerignore"), "*.tmp\n").unwrap();
        let ctx = BuildContext::open(&spec(dir.path(), dockerfile)).unwrap();
        assert!(!ctx.is_excluded("a.log") && ctx.is_excluded("a.tmp"));
        assert_eq!(
            ctx.ignore_file,
            Some(dir.path().join("Dockerfile.dockerignore"))
        );
    }
}
