//! What each Dockerfile instruction does to a stage: the image config for metadata instructions,
//! the rootfs (and so a layer) for RUN, COPY, ADD and WORKDIR. Instructions arrive expanded.

use std::path::{Path, PathBuf};

use crate::context::dockerignore::clean;
use crate::dockerfile::Instruction;
use crate::dockerfile::instructions::{CommandLine, Healthcheck};
use crate::exec::{self, Isolation, RunSpec, User};
use crate::fs::{Changes, FileKind, Root};
use crate::image::config::Healthcheck as ConfigHealthcheck;

use super::add_copy;
use super::keys::Prepared;
use super::stage::StageState;
use super::{BuildError, glob};

/// What an instruction produced.
pub(super) enum Outcome {
    /// Only the config changed: an empty-layer history entry.
    Config { created_by: String },
    /// The rootfs may have changed: a layer when `changes` is not empty.
    Changes {
        changes: Changes,
        created_by: String,
        exit_code: Option<i32>,
        isolation: Option<Isolation>,
    },
}

pub(super) fn instruction_err(location: &str, message: impl Into<String>) -> BuildError {
    BuildError::Instruction {
        location: location.to_string(),
        message: message.into(),
    }
}

pub(super) fn fs_err(location: &str) -> impl Fn(crate::fs::FsError) -> BuildError + '_ {
    move |source| BuildError::Fs {
        location: location.to_string(),
        source,
    }
}

/// The shell in force: SHELL, or `/bin/sh -c`.
fn shell(state: &StageState) -> Vec<String> {
    state
        .builder
        .config()
        .config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

fn command_argv(state: &StageState, command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(argv) => argv.clone(),
        CommandLine::Shell(line) => {
            let mut argv = shell(state);
            argv.push(line.clone());
            argv
        }
    }
}

/// Runs one expanded instruction; `prepared` is what keying it already did (COPY plans, ADD
/// downloads), empty with the cache off.
pub(super) fn execute<'a>(
    state: &mut StageState<'a>,
    instruction: &Instruction,
    location: &str,
    prepared: Prepared<'a>,
) -> Result<Outcome, BuildError> {
    let created_by = instruction.to_string();
    let config_only = |created_by: String| Ok(Outcome::Config { created_by });
    match instruction {
        Instruction::From(_) => Err(instruction_err(location, "FROM inside a stage")),
        Instruction::Env(_) => {
            let env = state.env.config_env();
            state.builder.config_mut().config.env = Some(env);
            config_only(created_by)
        }
        Instruction::Arg(_) => config_only(created_by),
        Instruction::Label(pairs) => {
            let labels = state
                .builder
                .config_mut()
                .config
                .labels
                .get_or_insert_default();
            for kv in pairs {
                labels.insert(kv.key.clone(), kv.value.clone());
            }
            config_only(created_by)
        }
        Instruction::Expose(ports) => {
            let exposed = state
                .builder
                .config_mut()
                .config
                .exposed_ports
                .get_or_insert_default();
            for port in ports {
                let port = if port.contains('/') {
                    port.to_ascii_lowercase()
                } else {
                    format!("{port}/tcp")
                };
                exposed.insert(port, serde_json::json!({}));
            }
            config_only(created_by)
        }
        Instruction::Volume(paths) => {
            let volumes = state
                .builder
                .config_mut()
                .config
                .volumes
                .get_or_insert_default();
            for path in paths {
                volumes.insert(path.clone(), serde_json::json!({}));
            }
            config_only(created_by)
        }
        Instruction::User(user) => {
            state.builder.config_mut().config.user = Some(user.clone());
            config_only(created_by)
        }
        Instruction::Cmd(command) => {
            let argv = command_argv(state, command);
            state.builder.config_mut().config.cmd = Some(argv);
            state.cmd_set = true;
            config_only(created_by)
        }
        Instruction::Entrypoint(command) => {
            let argv = command_argv(state, command);
            let config = &mut state.builder.config_mut().config;
            config.entrypoint = Some(argv);
            // Docker: an ENTRYPOINT resets a CMD inherited from the base image.
            if !state.cmd_set {
                state.builder.config_mut().config.cmd = None;
            }
            config_only(created_by)
        }
        Instruction::Shell(argv) => {
            state.builder.config_mut().config.shell = Some(argv.clone());
            config_only(created_by)
        }
        Instruction::Stopsignal(signal) => {
            state.builder.config_mut().config.stop_signal = Some(signal.clone());
            config_only(created_by)
        }
        Instruction::Maintainer(name) => {
            state.builder.config_mut().author = Some(name.clone());
            config_only(created_by)
        }
        Instruction::Onbuild(trigger) => {
            state
                .builder
                .config_mut()
                .config
                .on_build
                .get_or_insert_default()
                .push(trigger.expression.clone());
            config_only(created_by)
        }
        Instruction::Healthcheck(check) => {
            let nanos = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
            let value = match check {
                Healthcheck::None => ConfigHealthcheck {
                    test: Some(vec!["NONE".into()]),
                    ..ConfigHealthcheck::default()
                },
                Healthcheck::Cmd(cmd) => ConfigHealthcheck {
                    test: Some(match &cmd.command {
                        CommandLine::Exec(argv) => std::iter::once("CMD".to_string())
                            .chain(argv.clone())
                            .collect(),
                        CommandLine::Shell(line) => vec!["CMD-SHELL".into(), line.clone()],
                    }),
                    interval: nanos(cmd.interval),
                    timeout: nanos(cmd.timeout),
                    start_period: nanos(cmd.start_period),
                    start_interval: nanos(cmd.start_interval),
                    retries: cmd.retries.map(i64::from),
                    ..ConfigHealthcheck::default()
                },
            };
            state.builder.config_mut().config.healthcheck = Some(value);
            config_only(created_by)
        }
        Instruction::Workdir(path) => workdir(state, path, location, created_by),
        Instruction::Run(run) => run_instruction(state, run, location),
        Instruction::Copy(c) => add_copy::copy(state, c, location, prepared)
            .map(|changes| changes_outcome(changes, created_by)),
        Instruction::Add(a) => add_copy::add(state, a, location, prepared)
            .map(|changes| changes_outcome(changes, created_by)),
    }
}

pub(super) fn not_supported(what: &str) -> BuildError {
    BuildError::NotSupported {
        what: what.to_string(),
        hint: "rewrite the instruction without it, or use a RUN".into(),
    }
}

fn changes_outcome(changes: Changes, created_by: String) -> Outcome {
    Outcome::Changes {
        changes,
        created_by,
        exit_code: None,
        isolation: None,
    }
}

/// The current working directory of the stage.
pub(super) fn current_workdir(state: &StageState) -> String {
    state
        .builder
        .config()
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// Reads a rootfs file, empty when it does not exist.
pub(super) fn read_rootfs_file(root: &Root, path: &str) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Ok(mut file) = root.open_file(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// The USER in force, resolved in the rootfs.
fn current_user(state: &StageState, location: &str) -> Result<User, BuildError> {
    let spec = state
        .builder
        .config()
        .config
        .user
        .clone()
        .unwrap_or_default();
    if spec.is_empty() {
        return Ok(User::root());
    }
    let passwd = read_rootfs_file(&state.root, "/etc/passwd");
    let group = read_rootfs_file(&state.root, "/etc/group");
    exec::user::resolve(&spec, &passwd, &group).map_err(|source| BuildError::User {
        location: location.to_string(),
        source,
    })
}

/// Where `WORKDIR path` leads from the current working directory.
pub(super) fn workdir_path(state: &StageState, path: &str) -> String {
    if path.starts_with('/') {
        clean(path)
    } else {
        clean(&format!("{}/{path}", current_workdir(state)))
    }
}

fn workdir(
    state: &mut StageState,
    path: &str,
    location: &str,
    created_by: String,
) -> Result<Outcome, BuildError> {
    let resolved = workdir_path(state, path);
    state.builder.config_mut().config.working_dir = Some(resolved.clone());
    let user = current_user(state, location)?;
    let mut created = Vec::new();
    for ancestor in Path::new(&resolved)
        .ancestors()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        if ancestor == Path::new("/") {
            continue;
        }
        if state
            .root
            .try_lstat(ancestor)
            .map_err(fs_err(location))?
            .is_none()
        {
            state
                .root
                .create_dir_all(ancestor, 0o755)
                .map_err(fs_err(location))?;
            state
                .root
                .chown(ancestor, user.uid, user.gid)
                .map_err(fs_err(location))?;
            created.push(ancestor.to_path_buf());
        }
    }
    let changes = record(state, &created, false, location)?;
    Ok(changes_outcome(changes, created_by))
}

/// Changes for paths the step wrote, unless `--single-snapshot` defers them to the stage's end.
pub(super) fn record(
    state: &mut StageState,
    paths: &[PathBuf],
    recursive: bool,
    location: &str,
) -> Result<Changes, BuildError> {
    if paths.is_empty() {
        return Ok(Changes::new());
    }
    if state.exec.request.single_snapshot {
        state.pending_single = true;
        return Ok(Changes::new());
    }
    let phases = state.exec.phases;
    phases
        .time("snapshot", || {
            state.snapshotter.record(&state.root, paths, recursive)
        })
        .map_err(fs_err(location))
}

/// A RUN ready to execute.
pub(super) struct RunCommand {
    pub argv: Vec<String>,
    /// The history line (Kaniko's `RUN |n K=V ... cmd` form when ARGs are visible).
    pub created_by: String,
    /// Scripts placed in the RUN's private `/dev` (name below `/dev`, content).
    pub dev_files: Vec<(String, String)>,
}

/// What a RUN executes, from the stage as it stands: SHELL, ARGs.
pub(super) fn run_command(
    state: &StageState,
    run: &crate::dockerfile::instructions::Run,
    location: &str,
) -> Result<RunCommand, BuildError> {
    let mut dev_files = Vec::new();
    let argv = match &run.command {
        CommandLine::Exec(argv) => argv.clone(),
        CommandLine::Shell(line) => match heredoc_script(line, &run.heredocs) {
            Script::Shell(script) => {
                let mut argv = shell(state);
                argv.push(script);
                argv
            }
            // As BuildKit: the script is a file the kernel executes, so its #! line picks the
            // interpreter; it lives in /dev, which is the RUN's own and never in a layer.
            Script::Interpreted { name, body } => {
                let path = format!("pipes/{name}");
                if name.contains('/') || name.is_empty() || name == "." || name == ".." {
                    return Err(instruction_err(
                        location,
                        format!("heredoc name {name:?} cannot name a script file"),
                    ));
                }
                let argv = vec![format!("/dev/{path}")];
                dev_files.push((path, body));
                argv
            }
        },
    };
    let args = state.env.visible_args();
    let mut created_by = String::from("RUN ");
    if !args.is_empty() {
        created_by.push_str(&format!("|{} ", args.len()));
        for (k, v) in &args {
            created_by.push_str(&format!("{k}={v} "));
        }
    }
    created_by.push_str(&argv.join(" "));
    for (_, body) in &dev_files {
        created_by.push('\n');
        created_by.push_str(body);
    }
    Ok(RunCommand {
        argv,
        created_by,
        dev_files,
    })
}

fn run_instruction(
    state: &mut StageState,
    run: &crate::dockerfile::instructions::Run,
    location: &str,
) -> Result<Outcome, BuildError> {
    if run.security == Some(crate::dockerfile::run_options::SecurityMode::Insecure) {
        return Err(not_supported("RUN --security=insecure"));
    }
    // `default` and `host` are the step's network, as a RUN has by default.
    let no_network = run.network == Some(crate::dockerfile::run_options::NetworkMode::None);
    let RunCommand {
        argv,
        created_by,
        dev_files,
    } = run_command(state, run, location)?;
    let user = current_user(state, location)?;
    let request = state.exec.request;
    state.run_counter += 1;
    // Held until the RUN is over: cache locks, and the scratch copies removed on drop.
    let mounts = super::run_mounts::prepare(state, &run.mounts, location)?;
    let spec = RunSpec {
        rootfs: state.rootfs.clone(),
        argv: argv.clone(),
        // Secrets exposed as variables (`--mount=type=secret,env=`) join for this RUN only.
        env: state
            .env
            .run_env()
            .into_iter()
            .chain(mounts.env.iter().cloned())
            .collect(),
        cwd: current_workdir(state),
        user,
        isolation: request.isolation,
        scratch: state
            .exec
            .work
            .join("scratch")
            .join(format!("{}-{}", state.index, state.run_counter)),
        helper: request.sandbox_helper.clone(),
        hostname: "kbuild".into(),
        dev_files,
        mounts: mounts.mounts.clone(),
        no_network,
    };
    let raw = request.raw_run_output;
    let (board, name) = (&state.exec.board, &state.name);
    let outcome = state
        .exec
        .phases
        .time("run", || {
            exec::run(&spec, &mut |line| {
                // While other stages build too, say whose output this is.
                let tag = if board.parallel() {
                    format!("[{name}] ")
                } else {
                    String::new()
                };
                if raw {
                    eprintln!("{tag}{line}");
                } else {
                    tracing::info!(target: "run", "{tag}{line}");
                }
            })
        })
        .map_err(|source| BuildError::Exec {
            location: location.to_string(),
            source,
        })?;
    if outcome.isolation != Isolation::Namespaces {
        tracing::warn!("{location}: RUN isolated by {} only", outcome.isolation);
    }
    if outcome.exit_code != 0 {
        return Err(BuildError::RunFailed {
            location: location.to_string(),
            command: argv.join(" "),
            exit_code: outcome.exit_code,
            tail: outcome.tail,
        });
    }
    let changes = if request.single_snapshot {
        state.pending_single = true;
        Changes::new()
    } else {
        let phases = state.exec.phases;
        phases
            .time("snapshot", || state.snapshotter.snapshot(&state.root))
            .map_err(fs_err(location))?
    };
    Ok(Outcome::Changes {
        changes,
        created_by,
        exit_code: Some(outcome.exit_code),
        isolation: Some(outcome.isolation),
    })
}

/// What a shell-form RUN executes.
#[derive(Debug, PartialEq, Eq)]
enum Script {
    /// A script for the SHELL in force.
    Shell(String),
    /// A heredoc that starts with `#!`, run as an executable file.
    Interpreted { name: String, body: String },
}

/// The script of a shell-form RUN with heredocs: a command that is only `<<EOF` runs the body
/// itself (as a file when it starts with `#!`); otherwise the bodies follow the command line,
/// where the shell reads them as heredocs.
fn heredoc_script(line: &str, heredocs: &[crate::dockerfile::instructions::Heredoc]) -> Script {
    if heredocs.is_empty() {
        return Script::Shell(line.to_string());
    }
    if heredocs.len() == 1 && line.trim() == heredocs[0].marker() {
        let body = heredocs[0].body();
        if body.starts_with("#!") {
            return Script::Interpreted {
                name: heredocs[0].name.clone(),
                body,
            };
        }
        return Script::Shell(body);
    }
    let mut script = line.to_string();
    for h in heredocs {
        script.push('\n');
        script.push_str(&h.content);
        if !h.content.ends_with('\n') && !h.content.is_empty() {
            script.push('\n');
        }
        script.push_str(&h.name);
    }
    Script::Shell(script)
}

/// Under `--single-snapshot`: one layer with everything the stage changed.
pub(super) fn finish_single_snapshot(state: &mut StageState) -> Result<(), BuildError> {
    if !state.pending_single {
        return Ok(());
    }
    let location = format!("{} stage {}", state.exec.dockerfile.file, state.name);
    let changes = state
        .snapshotter
        .snapshot(&state.root)
        .map_err(fs_err(&location))?;
    state.pending_single = false;
    state
        .exec
        .write_stage_layer(state, &changes, "kbuild --single-snapshot", &location)?;
    Ok(())
}

/// True when `pattern` (absolute, may hold wildcards) names something in `root`.
pub(super) fn source_exists(root: &Root, pattern: &str) -> bool {
    let rel = clean(&format!("/{pattern}"));
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return true;
    }
    if !glob::has_wildcard(rel) {
        return root.stat(rel).is_ok();
    }
    fn walk(root: &Root, dir: &Path, parts: &[&str]) -> bool {
        let Some((first, rest)) = parts.split_first() else {
            return true;
        };
        let listing = if dir.as_os_str().is_empty() {
            root.read_dir(".")
        } else {
            root.read_dir(dir)
        };
        let Ok(names) = listing else {
            return false;
        };
        names.iter().any(|name| {
            let name = name.to_string_lossy();
            glob::matches(first, &name).unwrap_or(false) && {
                let path = dir.join(name.as_ref());
                rest.is_empty()
                    || (root.stat(&path).is_ok_and(|s| s.kind == FileKind::Dir)
                        && walk(root, &path, rest))
            }
        })
    }
    let parts: Vec<&str> = rel.split('/').collect();
    walk(root, Path::new(""), &parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::instructions::Heredoc;

    fn heredoc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            fd: None,
            expand: true,
            chomp: false,
            content: content.into(),
        }
    }

    #[test]
    fn heredoc_only_runs_its_body_and_others_follow_the_command() {
        let only = heredoc_script("<<EOF", &[heredoc("EOF", "echo hi\n")]);
        assert_eq!(only, Script::Shell("echo hi\n".into()));
        let piped = heredoc_script("cat <<EOF > /f", &[heredoc("EOF", "a\nb\n")]);
        assert_eq!(piped, Script::Shell("cat <<EOF > /f\na\nb\nEOF".into()));
        let script = heredoc_script("<<PY", &[heredoc("PY", "#!/usr/bin/env python3\n")]);
        assert_eq!(
            script,
            Script::Interpreted {
                name: "PY".into(),
                body: "#!/usr/bin/env python3\n".into()
            }
        );
    }
}
