//! The build context: where `--context`, `--context-sub-path` and `--dockerfile` point, and which
//! context files `.dockerignore` hides from COPY and ADD.
//!
//! A context is a local directory (`/path`, `dir:///path`) or, as Kaniko's `tar://`, a tar archive
//! (gzip, zstd or plain) in a file or on standard input (`tar://stdin`), unpacked into the build's
//! work directory by the fs engine's contained extraction, so an entry can never land outside it.
//! Other Kaniko schemes (`git://`, `gs://`, `s3://`, `https://`) are recognised and refused with
//! a clear message until they are supported, rather than being mistaken for directory names.
//! Left out: an archive's `.wh.` entries are read as layer whiteouts, not as files.
//!
//! The Dockerfile is found the way Kaniko finds it, so Task args keep working: the path as given
//! (absolute, or relative to the working directory) when it exists, else relative to the context.
//! Kaniko's order holds for the default name `Dockerfile` too (same args, same image); when the
//! working directory's file wins over a different one in the context, a warning says so.
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
    #[error("context {context}: {source}\nhint: {hint}")]
    Archive {
        context: String,
        #[source]
        source: crate::fs::FsError,
        hint: &'static str,
    },
    #[error(
        "context {context}: {path} is a symlink leading outside the archive\nhint: put the \
         file itself in the archive"
    )]
    LeavesArchive { context: String, path: PathBuf },
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// Where a `--context` value points.
#[derive(Debug)]
enum Source {
    Dir(PathBuf),
    /// `tar://PATH`
    TarFile(PathBuf),
    /// `tar://stdin`
    TarStdin,
}

impl BuildContext {
    /// Resolves the context directory, the Dockerfile and the ignore rules. A `tar://` context
    /// is unpacked into `unpack_dir` (created; it should be empty) first.
    pub fn open(spec: &ContextSpec, unpack_dir: &Path) -> Result<BuildContext, ContextError> {
        let source = context_source(&spec.context)?;
        let unpacked = !matches!(source, Source::Dir(_));
        let dir = match source {
            Source::Dir(dir) => dir,
            Source::TarFile(path) => {
                let file = std::fs::File::open(&path).map_err(|source| ContextError::Read {
                    path: path.clone(),
                    source,
                })?;
                unpack(&spec.context, file, unpack_dir)?
            }
            Source::TarStdin => unpack(&spec.context, std::io::stdin().lock(), unpack_dir)?,
        };
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
        // An archive is not the user's directory: a Dockerfile or .dockerignore of it that is a
        // symlink must not make kbuild read (and quote in errors) a file of the host.
        if unpacked {
            let unpack_dir = absolute(unpack_dir)?;
            for path in std::iter::once(&dockerfile).chain(ignore_file.as_ref()) {
                if path.starts_with(&unpack_dir) && !resolves_inside(path, &unpack_dir) {
                    return Err(ContextError::LeavesArchive {
                        context: spec.context.clone(),
                        path: path.clone(),
                    });
                }
            }
        }
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

/// What a `--context` value names.
fn context_source(context: &str) -> Result<Source, ContextError> {
    if let Some(path) = context.strip_prefix("dir://") {
        return Ok(Source::Dir(PathBuf::from(path)));
    }
    if let Some(path) = context.strip_prefix("tar://") {
        return Ok(match path {
            "stdin" => Source::TarStdin,
            _ => Source::TarFile(PathBuf::from(path)),
        });
    }
    if let Some((scheme, _)) = context.split_once("://") {
        return Err(ContextError::UnsupportedScheme {
            context: context.to_string(),
            scheme: scheme.to_string(),
        });
    }
    Ok(Source::Dir(PathBuf::from(context)))
}

/// Whether `path`, symlinks followed, is inside `root`.
fn resolves_inside(path: &Path, root: &Path) -> bool {
    match (std::fs::canonicalize(path), std::fs::canonicalize(root)) {
        (Ok(path), Ok(root)) => path.starts_with(root),
        _ => false,
    }
}

/// Unpacks a context archive into `dir`, every entry kept inside it.
fn unpack(context: &str, archive: impl std::io::Read, dir: &Path) -> Result<PathBuf, ContextError> {
    let err = |source| ContextError::Archive {
        context: context.to_string(),
        source,
        hint: "the archive must be a tar (gzip, zstd or uncompressed) whose paths stay inside it",
    };
    std::fs::create_dir_all(dir).map_err(|source| ContextError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let root = crate::fs::Root::open(dir).map_err(err)?;
    let report = crate::fs::extract_layer(&root, context, archive).map_err(err)?;
    tracing::info!(
        "unpacked context {context}: {} files, {} bytes",
        report.files,
        report.bytes
    );
    Ok(dir.to_path_buf())
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
            let found = absolute(candidate)?;
            let other = absolute(&in_context)?;
            if given.is_relative() && other != found && other.is_file() {
                tracing::warn!(
                    "using {} from the working directory, as Kaniko does; the context has \
                     another one at {} (pass --dockerfile={} to build that)",
                    found.display(),
                    other.display(),
                    other.display()
                );
            }
            return Ok(found);
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

    /// Where a directory context would be unpacked if it were an archive (it is not).
    fn unused(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("unpack")
    }

    /// A gzipped tar holding `entries` (path, content), paths written into the header as
    /// given, `..` included.
    fn tar_gz(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, content) in entries {
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append(&header, content.as_bytes()).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn tar_context_is_unpacked_and_used_as_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("ctx.tar.gz");
        std::fs::write(
            &archive,
            tar_gz(&[
                ("app.Dockerfile", "FROM scratch\n"),
                ("app/main.go", "package main\n"),
            ]),
        )
        .unwrap();
        // Not "Dockerfile": a relative --dockerfile is tried in the working directory first, and
        // the repository, where tests run, has one.
        let mut s = spec(dir.path(), "app.Dockerfile");
        s.context = format!("tar://{}", archive.display());
        let unpack = dir.path().join("work/context");
        let ctx = BuildContext::open(&s, &unpack).unwrap();
        assert_eq!(ctx.root, unpack);
        assert_eq!(ctx.dockerfile, unpack.join("app.Dockerfile"));
        assert_eq!(
            std::fs::read_to_string(unpack.join("app/main.go")).unwrap(),
            "package main\n"
        );
    }

    /// Regression test: extraction keeps entries inside, but a Dockerfile that is a symlink to
    /// a host file was read (and could be quoted in a parse error).
    #[test]
    fn tar_context_dockerfile_symlink_to_the_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("host-secret");
        std::fs::write(&secret, "FROM scratch\n").unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_link(&mut header, "app.Dockerfile", &secret)
            .unwrap();
        let archive = dir.path().join("link.tar");
        std::fs::write(&archive, builder.into_inner().unwrap()).unwrap();
        let mut s = spec(dir.path(), "app.Dockerfile");
        s.context = format!("tar://{}", archive.display());
        let err = BuildContext::open(&s, &dir.path().join("work/context"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a symlink leading outside the archive"),
            "{err}"
        );
    }

    #[test]
    fn tar_context_entry_outside_the_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar.gz");
        std::fs::write(
            &archive,
            tar_gz(&[("Dockerfile", "FROM scratch\n"), ("../escaped", "x")]),
        )
        .unwrap();
        let mut s = spec(dir.path(), "Dockerfile");
        s.context = format!("tar://{}", archive.display());
        let unpack = dir.path().join("work/context");
        let err = BuildContext::open(&s, &unpack).unwrap_err().to_string();
        assert!(err.contains("../escaped"), "{err}");
        assert!(err.contains("hint: the archive must be a tar"), "{err}");
        assert!(!dir.path().join("work/escaped").exists());
        assert!(!dir.path().join("escaped").exists());
    }

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
        let ctx = BuildContext::open(&spec(dir.path(), "svc/Dockerfile"), &unused(&dir)).unwrap();
        assert_eq!(ctx.dockerfile, dir.path().join("svc/Dockerfile"));
        let abs = dir.path().join("svc/Dockerfile");
        let ctx =
            BuildContext::open(&spec(dir.path(), abs.to_str().unwrap()), &unused(&dir)).unwrap();
        assert_eq!(ctx.dockerfile, abs);
        let err =
            BuildContext::open(&spec(dir.path(), "nope/Dockerfile"), &unused(&dir)).unwrap_err();
        assert!(
            err.to_string().contains("hint: provide a valid path"),
            "{err}"
        );
    }

    /// Kaniko's order, the default name included: a Task that relies on the working
    /// directory's Dockerfile must build the same image with kbuild. The working directory of
    /// unit tests is the repository, which has a Dockerfile.
    #[test]
    fn relative_dockerfile_is_looked_up_in_the_working_directory_first_as_kaniko_does() {
        assert!(
            Path::new("Dockerfile").is_file(),
            "tests run in the repository"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        for given in ["Dockerfile", "./Dockerfile"] {
            let ctx = BuildContext::open(&spec(dir.path(), given), &unused(&dir)).unwrap();
            assert_eq!(ctx.dockerfile, std::path::absolute(given).unwrap());
        }
    }

    #[test]
    fn sub_path_and_dir_scheme_select_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
        let mut s = spec(dir.path(), "Dockerfile");
        s.context = format!("dir://{}", dir.path().display());
        s.sub_path = Some("app".into());
        let ctx = BuildContext::open(&s, &unused(&dir)).unwrap();
        assert_eq!(ctx.root, dir.path().join("app"));
        s.sub_path = Some("missing".into());
        let err = BuildContext::open(&s, &unused(&dir))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--context-sub-path is relative"), "{err}");
    }

    #[test]
    fn other_schemes_are_refused_clearly() {
        let err = context_source("git://github.com/x/y")
            .unwrap_err()
            .to_string();
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
        let ctx = BuildContext::open(&spec(dir.path(), dockerfile), &unused(&dir)).unwrap();
        assert!(ctx.is_excluded("a.log") && !ctx.is_excluded("a.tmp"));
        std::fs::write(dir.path().join("Dockerfile.dockerignore"), "*.tmp\n").unwrap();
        let ctx = BuildContext::open(&spec(dir.path(), dockerfile), &unused(&dir)).unwrap();
        assert!(!ctx.is_excluded("a.log") && ctx.is_excluded("a.tmp"));
        assert_eq!(
            ctx.ignore_file,
            Some(dir.path().join("Dockerfile.dockerignore"))
        );
    }
}
