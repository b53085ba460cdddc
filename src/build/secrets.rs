//! Build secrets (`--secret id=ID[,src=PATH|,env=VAR]`, as `docker build --secret`): values a
//! `RUN --mount=type=secret` reads, as a file or an environment variable, that never reach a
//! layer, the image config, the cache key or the report.
//!
//! Values are read once, when the build starts, and kept in memory; their `Debug` output is
//! redacted so a logged request cannot show them.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A secret's bytes; `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes, redacted>", self.0.len())
    }
}

/// The build's secrets by id.
pub type Secrets = BTreeMap<String, SecretValue>;

/// Parses `--secret` values and reads what they name: `src=PATH` (or `source=`) a file, `env=VAR`
/// a variable of kbuild's environment, neither the variable named like the id. `type=file|env`
/// is accepted as docker buildx writes it.
pub fn parse(values: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Secrets, String> {
    let mut out = Secrets::new();
    for value in values {
        let mut id = None;
        let mut src: Option<PathBuf> = None;
        let mut var = None;
        for field in value.split(',') {
            let (key, val) = field.split_once('=').ok_or_else(|| {
                format!(
                    "--secret {value:?}: {field:?} is not KEY=VALUE\nhint: --secret id=ID,src=PATH"
                )
            })?;
            match key {
                "id" => id = Some(val.to_string()),
                "src" | "source" => src = Some(val.into()),
                "env" => var = Some(val.to_string()),
                "type" if val == "file" || val == "env" => {}
                _ => {
                    return Err(format!(
                        "--secret {value:?}: unknown key {key:?}\nhint: --secret id=ID,src=PATH or \
                         --secret id=ID,env=VAR"
                    ));
                }
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| format!("--secret {value:?}: no id\nhint: --secret id=ID,src=PATH"))?;
        let bytes = match (src, var) {
            (Some(path), None) => std::fs::read(&path)
                .map_err(|e| format!("--secret {id}: cannot read {}: {e}", path.display()))?,
            (None, var) => {
                let name = var.unwrap_or_else(|| id.clone());
                env(&name)
                    .ok_or_else(|| {
                        format!("--secret {id}: the environment variable {name} is not set")
                    })?
                    .into_bytes()
            }
            (Some(_), Some(_)) => {
                return Err(format!("--secret {id}: give src or env, not both"));
            }
        };
        out.insert(id, SecretValue(bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_variables_and_stay_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file").unwrap();
        let env =
            |name: &str| (name == "NPM_TOKEN" || name == "plain").then(|| format!("{name}-value"));
        let secrets = parse(
            &[
                format!("id=token,src={}", file.display()),
                "id=npm,env=NPM_TOKEN".into(),
                "type=env,id=plain".into(),
            ],
            env,
        )
        .unwrap();
        assert_eq!(secrets["token"].bytes(), b"from-file");
        assert_eq!(secrets["npm"].bytes(), b"NPM_TOKEN-value");
        assert_eq!(secrets["plain"].bytes(), b"plain-value");
        assert_eq!(format!("{:?}", secrets["token"]), "<9 bytes, redacted>");
        let err = parse(&["id=x,env=MISSING".into()], env).unwrap_err();
        assert!(err.contains("MISSING is not set"), "{err}");
        let err = parse(&["src=/x".into()], env).unwrap_err();
        assert!(err.contains("no id"), "{err}");
    }
}
