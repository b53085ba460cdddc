//! COPY and ADD as instructions: where their sources come from (the context, a finished stage,
//! an image, downloaded URLs), `--chown` and `--chmod`, and the changes they record. The copying
//! itself, with Docker's rules, is [`super::copy`]; a plan made while keying is reused here.

use std::path::PathBuf;

use crate::dockerfile::Dockerfile;
use crate::dockerfile::instructions::{Add, Copy, Source};
use crate::exec;
use crate::fs::{Changes, Root};

use super::BuildError;
use super::copy::{self, CopyPlan, CopyRequest, SourceTree};
use super::instructions::{
    current_workdir, fs_err, instruction_err, not_supported, read_rootfs_file, record,
};
use super::keys::Prepared;
use super::stage::StageState;

/// Runs a COPY.
pub(super) fn copy<'a>(
    state: &mut StageState<'a>,
    c: &Copy,
    location: &str,
    prepared: Prepared<'a>,
) -> Result<Changes, BuildError> {
    if c.parents || !c.exclude.is_empty() {
        return Err(not_supported("COPY --parents and --exclude"));
    }
    let (tree, plan) = match prepared.copy {
        Some((tree, plan)) => (tree, Some(plan)),
        None => (source_tree(state, c.from.as_deref(), location)?, None),
    };
    let sources = CopySources {
        tree: &tree,
        plan,
        sources: &c.sources,
        unpack: false,
    };
    copy_into(state, sources, &c.dest, &c.chown, &c.chmod, location)
}

/// The URL sources of an ADD.
pub(super) fn url_sources(sources: &[Source]) -> Vec<&str> {
    sources
        .iter()
        .filter_map(|s| match s {
            Source::Path(p) if p.starts_with("http://") || p.starts_with("https://") => {
                Some(p.as_str())
            }
            _ => None,
        })
        .collect()
}

/// A COPY/ADD's sources as path patterns and heredoc files (name, body).
pub(super) fn split_sources(sources: &[Source]) -> (Vec<String>, Vec<(String, String)>) {
    let mut patterns = Vec::new();
    let mut inline = Vec::new();
    for s in sources {
        match s {
            Source::Path(p) => patterns.push(p.clone()),
            Source::Heredoc(h) => inline.push((h.name.clone(), h.body())),
        }
    }
    (patterns, inline)
}

/// The build context as a COPY source.
pub(super) fn context_tree<'a>(
    state: &StageState<'a>,
    location: &str,
) -> Result<SourceTree<'a>, BuildError> {
    let exec = state.exec;
    Ok(SourceTree {
        root: Root::open(&exec.context.root).map_err(fs_err(location))?,
        ignore: Some(&exec.context.ignore),
        keep_owner: false,
        name: "the build context".into(),
    })
}

/// Where the URLs of a stage's `n`th instruction are downloaded.
pub(super) fn download_dir(state: &StageState, n: usize) -> PathBuf {
    state
        .exec
        .work
        .join("downloads")
        .join(format!("{}-{n}", state.index))
}

/// The tree a COPY reads from: the context, a finished stage, or an image.
pub(super) fn source_tree<'a>(
    state: &StageState<'a>,
    from: Option<&str>,
    location: &str,
) -> Result<SourceTree<'a>, BuildError> {
    let exec = state.exec;
    let Some(from) = from else {
        return context_tree(state, location);
    };
    let stage = stage_index(exec.dockerfile, from, state.index);
    let (dir, name) = match stage {
        Some(i) => {
            let done = exec.board.finished(i).ok_or_else(|| {
                instruction_err(location, format!("stage {from} has not been built"))
            })?;
            (done.rootfs.clone(), format!("stage {from}"))
        }
        None => {
            let line = location
                .rsplit(':')
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            (exec.image_rootfs(from, line)?, format!("image {from}"))
        }
    };
    Ok(SourceTree {
        root: Root::open(&dir).map_err(fs_err(location))?,
        ignore: None,
        keep_owner: true,
        name,
    })
}

/// The index of the stage `--from` names (name, case-insensitive, or index), if it is one.
fn stage_index(df: &Dockerfile, from: &str, current: usize) -> Option<usize> {
    if let Ok(i) = from.parse::<usize>() {
        return (i < current).then_some(i);
    }
    let lower = from.to_ascii_lowercase();
    df.stages[..current]
        .iter()
        .position(|s| s.from.node.name.as_deref() == Some(lower.as_str()))
}

/// Parses `--chown` against the destination rootfs: names from its /etc/passwd and /etc/group,
/// and a user alone means the same number as group (Docker's rule).
fn parse_chown(state: &StageState, chown: &str, location: &str) -> Result<(u32, u32), BuildError> {
    let (user, group) = match chown.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (chown, None),
    };
    let passwd = read_rootfs_file(&state.root, "/etc/passwd");
    let groups = read_rootfs_file(&state.root, "/etc/group");
    let user_err = |source| BuildError::User {
        location: location.to_string(),
        source,
    };
    let uid = exec::user::resolve(user, &passwd, &groups)
        .map_err(user_err)?
        .uid;
    let gid = match group {
        None | Some("") => uid,
        Some(g) => {
            exec::user::resolve(&format!("{uid}:{g}"), &passwd, &groups)
                .map_err(user_err)?
                .gid
        }
    };
    Ok((uid, gid))
}

/// What a COPY/ADD copies: the tree, its plan when keying made one, the sources as written.
struct CopySources<'t, 'a> {
    tree: &'t SourceTree<'a>,
    plan: Option<CopyPlan>,
    sources: &'t [Source],
    unpack: bool,
}

fn copy_into(
    state: &mut StageState,
    from: CopySources,
    dest: &str,
    chown: &Option<String>,
    chmod: &Option<String>,
    location: &str,
) -> Result<Changes, BuildError> {
    let chown = chown
        .as_deref()
        .map(|c| parse_chown(state, c, location))
        .transpose()?;
    let chmod = chmod
        .as_deref()
        .map(|m| {
            u32::from_str_radix(m, 8)
                .map_err(|_| instruction_err(location, format!("invalid --chmod {m:?}: not octal")))
        })
        .transpose()?;
    let (patterns, inline) = split_sources(from.sources);
    let workdir = current_workdir(state);
    let request = CopyRequest {
        patterns: &patterns,
        inline: &inline,
        dest,
        workdir: &workdir,
        chown,
        chmod,
        unpack: from.unpack,
    };
    let phases = state.exec.phases;
    let tree = from.tree;
    let copied = phases
        .time("copy", || match &from.plan {
            Some(plan) => copy::apply(tree, &state.root, &request, plan),
            None => copy::copy(tree, &state.root, &request),
        })
        .map_err(|source| BuildError::Copy {
            location: location.to_string(),
            source,
        })?;
    let mut changes = record(state, &copied.created_dirs, false, location)?;
    for (path, change) in record(state, &copied.written, true, location)?.iter() {
        changes.insert(path, change.clone());
    }
    Ok(changes)
}

/// Runs an ADD: local sources (archives extracted) or URLs (downloaded).
pub(super) fn add<'a>(
    state: &mut StageState<'a>,
    add: &Add,
    location: &str,
    prepared: Prepared<'a>,
) -> Result<Changes, BuildError> {
    if !add.exclude.is_empty() {
        return Err(not_supported("ADD --exclude"));
    }
    let urls = url_sources(&add.sources);
    if add
        .sources
        .iter()
        .any(|s| matches!(s, Source::Path(p) if p.starts_with("git@") || p.ends_with(".git")))
    {
        return Err(not_supported("ADD from a git repository"));
    }
    if !urls.is_empty() && urls.len() != add.sources.len() {
        return Err(instruction_err(
            location,
            "ADD mixes URLs and local sources\nhint: use one ADD per URL",
        ));
    }
    if urls.is_empty() {
        let (tree, plan) = match prepared.copy {
            Some((tree, plan)) => (tree, Some(plan)),
            None => (context_tree(state, location)?, None),
        };
        let sources = CopySources {
            tree: &tree,
            plan,
            sources: &add.sources,
            unpack: add.unpack.unwrap_or(true),
        };
        return copy_into(state, sources, &add.dest, &add.chown, &add.chmod, location);
    }
    let (dir, names) = match prepared.downloads {
        Some(done) => done,
        None => {
            let dir = download_dir(state, state.report.instructions.len());
            std::fs::create_dir_all(&dir).map_err(|source| BuildError::WorkDir {
                path: dir.clone(),
                source,
            })?;
            let mut names = Vec::new();
            for url in &urls {
                let (name, _) =
                    super::download::fetch(state.exec, url, add.checksum.as_deref(), &dir)
                        .map_err(|message| instruction_err(location, message))?;
                names.push(name);
            }
            (dir, names)
        }
    };
    let names: Vec<Source> = names.into_iter().map(Source::Path).collect();
    let tree = SourceTree {
        root: Root::open(&dir).map_err(fs_err(location))?,
        ignore: None,
        keep_owner: false,
        name: "the downloaded files".into(),
    };
    let chmod = add.chmod.clone().or(Some("600".into()));
    let sources = CopySources {
        tree: &tree,
        plan: None,
        sources: &names,
        unpack: add.unpack.unwrap_or(false),
    };
    copy_into(state, sources, &add.dest, &add.chown, &chmod, location)
}
