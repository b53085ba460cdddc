//! What Tekton gives a step, laid out in a temp root, and a step of a Task (or a StepAction) run
//! the way Tekton would run it.
//!
//! The layout under the root, as a step container sees it under `/`:
//! - `tekton/results/` (Task results), `tekton/run/<n>/status/results/` (step results),
//!   `tekton/steps/step-<name>` and `tekton/steps/<n>` linking to `run/<n>/status` (Tekton's
//!   init container makes these links, absolute there, relative here so they resolve);
//! - `tekton/debug/info/<n>/` when the TaskRun asks for breakpoints (Tekton mounts one per step);
//! - `tekton/creds/.docker/config.json` when the ServiceAccount has docker secrets; Tekton's
//!   entrypoint copies `.docker` to `$HOME` before the step's command starts, and so does this
//!   harness;
//! - `workspace/<name>/` for each bound workspace (or its `mountPath`), `kaniko/` (kbuild's default
//!   work directory in a container), `root/` (`$HOME`).
//!
//! Tekton's variable substitution is done on the step's `command`, `args`, `env` and `workingDir`
//! exactly as Tekton does it (container paths, `$(params.X[*])` expanded in place, an unbound
//! optional workspace's path empty); only then are the container paths mapped into the root.
//! Anything the substitution does not know fails the test, so the YAML cannot drift from what is
//! simulated here. Two things stand in for the container's own mounts: `KBUILD_TEKTON_DIR` (for
//! `/tekton`) and `KANIKO_DIR` (for `/kaniko`, kbuild's default work directory in a pod).

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Top-level directories of a step container that live in the temp root.
const MOUNTS: [&str; 4] = ["/tekton", "/workspace", "/kaniko", "/root"];

/// A param value given to a Task or StepAction.
#[derive(Debug, Clone)]
pub enum Param {
    String(String),
    Array(Vec<String>),
}

impl From<&str> for Param {
    fn from(s: &str) -> Param {
        Param::String(s.to_string())
    }
}

impl From<String> for Param {
    fn from(s: String) -> Param {
        Param::String(s)
    }
}

impl From<Vec<String>> for Param {
    fn from(v: Vec<String>) -> Param {
        Param::Array(v)
    }
}

/// One step container of a TaskRun's pod.
pub struct Step {
    root: tempfile::TempDir,
    /// The step's index in its Task.
    pub index: u32,
    /// The step's container name, `step-<name>`.
    pub container: String,
    /// The pod's name (the container's `HOSTNAME`).
    pub pod: String,
    /// Bound workspaces: name to mount path.
    workspaces: BTreeMap<String, String>,
}

impl Step {
    /// Step `index` named `name`, in a TaskRun with or without debug breakpoints.
    pub fn new(index: u32, name: &str, breakpoints: bool) -> Step {
        let root = tempfile::tempdir().unwrap();
        let step = Step {
            root,
            index,
            container: format!("step-{name}"),
            pod: "kbuild-run-x7k2p-pod".into(),
            workspaces: BTreeMap::new(),
        };
        let tekton = step.host("/tekton");
        std::fs::create_dir_all(tekton.join("results")).unwrap();
        std::fs::create_dir_all(tekton.join(format!("run/{index}/status/results"))).unwrap();
        std::fs::create_dir_all(tekton.join("steps")).unwrap();
        let status = format!("../run/{index}/status");
        symlink(&status, tekton.join("steps").join(&step.container)).unwrap();
        symlink(&status, tekton.join("steps").join(index.to_string())).unwrap();
        if breakpoints {
            std::fs::create_dir_all(tekton.join(format!("debug/info/{index}"))).unwrap();
        }
        std::fs::create_dir_all(step.host("/kaniko")).unwrap();
        std::fs::create_dir_all(step.host("/root")).unwrap();
        step
    }

    /// Where a path of the step container is in the temp root.
    pub fn host(&self, container_path: &str) -> PathBuf {
        assert!(
            MOUNTS
                .iter()
                .any(|m| container_path == *m || container_path.starts_with(&format!("{m}/"))),
            "{container_path} is not under a directory the simulated step has"
        );
        self.root
            .path()
            .join(container_path.trim_start_matches('/'))
    }

    /// Binds workspace `name` at `/workspace/<name>` (or `mount_path`) and returns its directory.
    pub fn bind(&mut self, name: &str, mount_path: Option<&str>) -> PathBuf {
        let path = mount_path.map_or(format!("/workspace/{name}"), str::to_string);
        let dir = self.host(&path);
        std::fs::create_dir_all(&dir).unwrap();
        self.workspaces.insert(name.to_string(), path);
        dir
    }

    /// Tekton's merged ServiceAccount docker credentials, copied to `$HOME/.docker` as Tekton's
    /// entrypoint does.
    pub fn creds(&self, config_json: &str) {
        for dir in ["/tekton/creds/.docker", "/root/.docker"] {
            let dir = self.host(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.json"), config_json).unwrap();
        }
    }

    /// The files in `/tekton/results`, with their bytes.
    pub fn task_results(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.host("/tekton/results"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// Resolves step `step` of `doc` (a Task, or a StepAction whose spec is the step) with
    /// `params`, as Tekton would for this container.
    pub fn resolve(&self, doc: &Value, params: &[(&str, Param)]) -> Resolved {
        let kind = doc["kind"].as_str().unwrap();
        let spec = &doc["spec"];
        let (step, results_kind) = match kind {
            "Task" => (&spec["steps"][self.index as usize], ResultsKind::Task),
            "StepAction" => (spec, ResultsKind::Step),
            other => panic!("cannot run a {other}"),
        };
        let vars = Vars::new(self, spec, params, results_kind);
        let strings = |key: &str| -> Vec<String> {
            step[key]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let command: Vec<String> = strings("command")
            .iter()
            .map(|c| vars.substitute(c))
            .collect();
        let mut args = Vec::new();
        for arg in strings("args") {
            match vars.array_reference(&arg) {
                Some(values) => args.extend(values),
                None => args.push(vars.substitute(&arg)),
            }
        }
        let env = step["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["name"].as_str().unwrap().to_string(),
                            vars.substitute(e["value"].as_str().unwrap()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let working_dir = step["workingDir"].as_str().map(|w| vars.substitute(w));
        Resolved {
            command,
            args,
            env,
            working_dir,
        }
    }

    /// Runs a resolved step: its command (`/kbuild` is the binary under test), args, env and
    /// working directory, with container paths mapped into the root.
    pub fn run(&self, step: &Resolved) -> Output {
        assert_eq!(step.command, ["/kbuild"], "the step runs kbuild directly");
        let mut cmd = self.container_command();
        cmd.args(step.args.iter().map(|a| self.map_paths(a)));
        for (name, value) in &step.env {
            cmd.env(name, self.map_paths(value));
        }
        if let Some(dir) = &step.working_dir {
            cmd.current_dir(self.host(dir));
        }
        cmd.output().unwrap()
    }

    /// `kubectl exec <pod> -c <container> -- <command...>`: a command in the step container, with
    /// its environment but none of the step's args.
    pub fn exec(&self, command: &[&str]) -> Output {
        assert_eq!(command[0], "/kbuild", "the step image only has /kbuild");
        let mut cmd = self.container_command();
        cmd.args(command[1..].iter().map(|a| self.map_paths(a)));
        cmd.output().unwrap()
    }

    /// kbuild with the environment every process of the step container has.
    fn container_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbuild"));
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
            .env("HOSTNAME", &self.pod)
            .env("HOME", self.host("/root"))
            .env("KBUILD_TEKTON_DIR", self.host("/tekton"))
            .env("KANIKO_DIR", self.host("/kaniko"))
            .current_dir(self.root.path());
        cmd
    }

    /// Maps every container path in `text` (at its start or after an `=`) into the root.
    pub fn map_paths(&self, text: &str) -> String {
        let mut out = String::new();
        for (i, part) in text.split('=').enumerate() {
            if i > 0 {
                out.push('=');
            }
            let mounted = MOUNTS
                .iter()
                .any(|m| part == *m || part.starts_with(&format!("{m}/")));
            if mounted {
                out.push_str(&self.host(part).display().to_string());
            } else {
                out.push_str(part);
            }
        }
        out
    }
}

/// A step after Tekton's substitution, in container paths.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum ResultsKind {
    Task,
    Step,
}

/// The variables Tekton substitutes in one step.
struct Vars {
    strings: BTreeMap<String, String>,
    arrays: BTreeMap<String, Vec<String>>,
}

impl Vars {
    fn new(step: &Step, spec: &Value, given: &[(&str, Param)], results: ResultsKind) -> Vars {
        let mut vars = Vars {
            strings: BTreeMap::new(),
            arrays: BTreeMap::new(),
        };
        let declared = spec["params"].as_array().cloned().unwrap_or_default();
        for (name, _) in given {
            assert!(
                declared.iter().any(|p| p["name"] == *name),
                "param {name} is not declared"
            );
        }
        for param in &declared {
            let name = param["name"].as_str().unwrap();
            let value = match given.iter().find(|(n, _)| *n == name) {
                Some((_, value)) => value.clone(),
                None => match &param["default"] {
                    Value::String(s) => Param::String(s.clone()),
                    Value::Array(a) => {
                        Param::Array(a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                    }
                    Value::Null => panic!("param {name} has no default and was not given"),
                    other => panic!("param {name}: unexpected default {other}"),
                },
            };
            let is_array = param["type"] == "array";
            match value {
                Param::String(s) if !is_array => {
                    vars.strings.insert(format!("params.{name}"), s);
                }
                Param::Array(a) if is_array => {
                    vars.arrays.insert(format!("params.{name}"), a);
                }
                other => panic!(
                    "param {name} is declared {} but given {other:?}",
                    param["type"]
                ),
            }
        }
        for ws in spec["workspaces"].as_array().cloned().unwrap_or_default() {
            let name = ws["name"].as_str().unwrap();
            let bound = step.workspaces.get(name);
            if let (Some(path), Some(declared)) = (bound, ws["mountPath"].as_str()) {
                assert_eq!(
                    path, declared,
                    "workspace {name} must be bound at its mountPath"
                );
            }
            assert!(
                bound.is_some() || ws["optional"] == true,
                "workspace {name} is required"
            );
            vars.strings.insert(
                format!("workspaces.{name}.path"),
                bound.cloned().unwrap_or_default(),
            );
            vars.strings.insert(
                format!("workspaces.{name}.bound"),
                bound.is_some().to_string(),
            );
        }
        for result in spec["results"].as_array().cloned().unwrap_or_default() {
            let name = result["name"].as_str().unwrap();
            match results {
                ResultsKind::Task => {
                    vars.strings.insert(
                        format!("results.{name}.path"),
                        format!("/tekton/results/{name}"),
                    );
                }
                ResultsKind::Step => {
                    vars.strings.insert(
                        format!("step.results.{name}.path"),
                        format!("/tekton/steps/{}/results/{name}", step.container),
                    );
                }
            }
        }
        vars
    }

    /// The values of an arg that is exactly `$(params.X[*])` (Tekton expands it in place).
    fn array_reference(&self, arg: &str) -> Option<Vec<String>> {
        let name = arg.strip_prefix("$(")?.strip_suffix("[*])")?;
        Some(
            self.arrays
                .get(name)
                .unwrap_or_else(|| panic!("{arg}: not an array param"))
                .clone(),
        )
    }

    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("$(") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find(')')
                .unwrap_or_else(|| panic!("unclosed variable in {text}"));
            let var = &rest[start + 2..start + end];
            let value = self
                .strings
                .get(var)
                .unwrap_or_else(|| panic!("$({var}) in {text:?} is not simulated"));
            out.push_str(value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Reads a YAML file under `tekton/` as JSON.
pub fn load_yaml(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_norway::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
}
