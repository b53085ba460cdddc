//! Results of a successful build: Kaniko's `--digest-file`, `--image-name-with-digest-file`,
//! `--image-name-tag-with-digest-file`, and Tekton's `IMAGE_DIGEST`, `IMAGE_URL`, `IMAGE_REF`.
//!
//! Written once, after every destination received the final image, and never for cache pushes:
//! the caller only calls [`write_results`] then. Kaniko wrote its digest file before pushing, so
//! a failed push could leave a digest that Tekton Chains then signed. Contents are computed and
//! checked first (Tekton gives all results of a step 4096 bytes), then each file goes through a
//! temp file and a rename, so no file is ever half written. Values have no trailing newline, as
//! Tekton emits results verbatim.

use std::fs;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::registry::Reference;

/// Where results go; `None` means "not asked for".
#[derive(Debug, Clone, Default)]
pub struct ResultFiles {
    pub digest_file: Option<PathBuf>,
    pub image_name_with_digest_file: Option<PathBuf>,
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// The Tekton results directory: `--results-dir`, else `/tekton/results` when it exists.
    pub tekton_dir: Option<PathBuf>,
    /// `--result NAME=PATH`: one Tekton result written to a file of its own (StepAction step
    /// results); NAME is one of [`RESULT_NAMES`].
    pub named: Vec<(String, PathBuf)>,
}

/// The results kbuild produces.
pub const RESULT_NAMES: [&str; 3] = ["IMAGE_DIGEST", "IMAGE_URL", "IMAGE_REF"];

/// Tekton's budget for all results of one step (the termination message).
pub const TEKTON_RESULTS_BUDGET: usize = 4096;
/// What kbuild allows itself, leaving room for the JSON around each result and for other steps'
/// bookkeeping in the same message.
pub const KBUILD_RESULTS_LIMIT: usize = 3072;

/// A results file that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot write result file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the Tekton results would take {size} bytes, over kbuild's limit of {KBUILD_RESULTS_LIMIT} (Tekton allows {TEKTON_RESULTS_BUDGET} for a whole step)\nhint: use a shorter first --destination"
    )]
    TooLarge { size: usize },
}

impl ResultFiles {
    /// The Tekton results directory to use: the one given, else `/tekton/results` if it exists
    /// (under [`super::tekton_dir`]).
    pub fn tekton_dir_or_default(given: Option<PathBuf>) -> Option<PathBuf> {
        given.or_else(|| {
            let default = super::tekton_dir().join("results");
            default.is_dir().then_some(default)
        })
    }
}

/// Writes every requested result for an image with `digest` pushed to `destinations` (in the
/// order given; Tekton's `IMAGE_URL` and `IMAGE_REF` name the first). With no destination
/// (`--no-push` and a local output), only the digest file and `IMAGE_DIGEST` are written.
pub fn write_results(
    files: &ResultFiles,
    destinations: &[Reference],
    digest: &Digest,
) -> Result<(), ResultsError> {
    let digest_text = digest.to_string();
    let mut writes: Vec<(PathBuf, String)> = Vec::new();
    if let Some(path) = &files.digest_file {
        writes.push((path.clone(), digest_text.clone()));
    }
    if let Some(path) = &files.image_name_with_digest_file {
        let lines: Vec<String> = destinations
            .iter()
            .map(|d| format!("{}@{digest_text}", d.name()))
            .collect();
        writes.push((path.clone(), lines.join("\n")));
    }
    if let Some(path) = &files.image_name_tag_with_digest_file {
        let lines: Vec<String> = destinations
            .iter()
            .map(|d| format!("{}@{digest_text}", d.name_with_tag()))
            .collect();
        writes.push((path.clone(), lines.join("\n")));
    }
    let mut tekton = vec![("IMAGE_DIGEST", digest_text.clone())];
    if let Some(first) = destinations.first() {
        tekton.push(("IMAGE_URL", first.given_without_digest().to_string()));
        tekton.push(("IMAGE_REF", format!("{}@{digest_text}", first.given_name())));
    }
    if files.tekton_dir.is_some() || !files.named.is_empty() {
        let size: usize = tekton.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > KBUILD_RESULTS_LIMIT {
            return Err(ResultsError::TooLarge { size });
        }
    }
    if let Some(dir) = &files.tekton_dir {
        writes.extend(
            tekton
                .iter()
                .map(|(name, value)| (dir.join(name), value.clone())),
        );
    }
    for (name, path) in &files.named {
        if let Some((_, value)) = tekton.iter().find(|(n, _)| n == name) {
            writes.push((path.clone(), value.clone()));
        }
    }
    for (path, content) in &writes {
        write_atomically(path, content)?;
    }
    if !writes.is_empty() {
        tracing::info!("wrote {} result files for {digest_text}", writes.len());
    }
    Ok(())
}

fn write_atomically(path: &Path, content: &str) -> Result<(), ResultsError> {
    let err = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(err)?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(err)?;
    fs::write(tmp.path(), content).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_exact_and_have_no_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let files = ResultFiles {
            digest_file: Some(dir.path().join("digest")),
            image_name_with_digest_file: Some(dir.path().join("names")),
            image_name_tag_with_digest_file: Some(dir.path().join("tags")),
            tekton_dir: Some(dir.path().join("tekton")),
            named: vec![("IMAGE_REF".into(), dir.path().join("step/IMAGE_REF"))],
        };
        let digest = Digest::of(b"manifest");
        let d = digest.to_string();
        let dests: Vec<Reference> = ["reg.local:5000/app:v1", "alpine"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        write_results(&files, &dests, &digest).unwrap();
        let read = |p: &str| fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("digest"), d);
        assert_eq!(
            read("names"),
            format!("reg.local:5000/app@{d}\ndocker.io/library/alpine@{d}")
        );
        assert_eq!(
            read("tags"),
            format!("reg.local:5000/app:v1@{d}\ndocker.io/library/alpine:latest@{d}")
        );
        assert_eq!(read("tekton/IMAGE_DIGEST"), d);
        assert_eq!(read("tekton/IMAGE_URL"), "reg.local:5000/app:v1");
        assert_eq!(read("tekton/IMAGE_REF"), format!("reg.local:5000/app@{d}"));
        assert_eq!(read("step/IMAGE_REF"), format!("reg.local:5000/app@{d}"));
    }
}
