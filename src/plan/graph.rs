//! The stage graph: what `COPY --from` and `RUN --mount=from=` refer to, cycles, the target and
//! the stages it needs, and source paths as the producing stage sees them.
//!
//! As in BuildKit: a `--from` value is a stage index, else a stage name (case-insensitive, any
//! stage of the file), else an image reference. A FROM line can only name an earlier stage (a later
//! name is an image). Copying from a later stage is an error only in stages the target needs; a
//! cycle is an error anywhere.

use crate::dockerfile::expand::Expander;

use super::error::PlanError;
use super::{Base, Producer};

/// Resolves a `--from` value. `names` holds every stage's name, by index.
pub fn resolve_from(
    from: &str,
    names: &[Option<String>],
    file: &str,
    line: usize,
) -> Result<Producer, PlanError> {
    let literal = Expander::new('\\')
        .word(from, &std::collections::BTreeMap::new())
        .ok();
    if literal.as_deref() != Some(from) {
        return Err(PlanError::FromVariable {
            file: file.to_string(),
            line,
            from: from.to_string(),
        });
    }
    if let Ok(index) = from.parse::<usize>() {
        return if index < names.len() {
            Ok(Producer::Stage(index))
        } else {
            Err(PlanError::StageIndex {
                file: file.to_string(),
                line,
                index,
                count: names.len(),
            })
        };
    }
    let lower = from.to_ascii_lowercase();
    Ok(
        match names.iter().position(|n| n.as_deref() == Some(&lower)) {
            Some(i) => Producer::Stage(i),
            None => Producer::Image(from.to_string()),
        },
    )
}

/// The stages each stage needs directly: its base stage and the stages it copies or mounts from.
pub fn edges(bases: &[Base], refs: &[Vec<(usize, Producer)>]) -> Vec<Vec<(usize, usize)>> {
    bases
        .iter()
        .zip(refs)
        .map(|(base, refs)| {
            let mut out = Vec::new();
            if let Base::Stage(p) = base {
                out.push((*p, 0));
            }
            for (line, producer) in refs {
                if let Producer::Stage(p) = producer {
                    out.push((*p, *line));
                }
            }
            out
        })
        .collect()
}

/// Finds a cycle; returns the stage it was detected on and the line of the reference closing it.
pub fn find_cycle(edges: &[Vec<(usize, usize)>]) -> Option<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (stage, next edge to look at).
        let mut stack = vec![(start, 0usize)];
        marks[start] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            match edges[node].get(*next) {
                Some(&(child, line)) => {
                    *next += 1;
                    match marks.get(child).copied() {
                        Some(Mark::Active) => return Some((child, line)),
                        Some(Mark::New) => {
                            marks[child] = Mark::Active;
                            stack.push((child, 0));
                        }
                        _ => {}
                    }
                }
                None => {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }
    None
}

/// The stages `target` needs, itself included.
pub fn reachable(edges: &[Vec<(usize, usize)>], target: usize) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut todo = vec![target];
    while let Some(s) = todo.pop() {
        if std::mem::replace(&mut seen[s], true) {
            continue;
        }
        todo.extend(
            edges[s]
                .iter()
                .map(|(p, _)| *p)
                .filter(|p| *p < edges.len()),
        );
    }
    seen
}

/// A source path as the producing stage's filesystem sees it: relative paths start at its root
/// `/` (not its WORKDIR), `.` and `..` are resolved, wildcards are kept as written.
pub fn root_path(source: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<Option<String>> {
        vec![Some("builder".into()), None, Some("final".into())]
    }

    #[test]
    fn from_values_resolve_like_buildkit() {
        let n = names();
        assert_eq!(
            resolve_from("Builder", &n, "D", 1).unwrap(),
            Producer::Stage(0)
        );
        assert_eq!(resolve_from("1", &n, "D", 1).unwrap(), Producer::Stage(1));
        assert_eq!(
            resolve_from("alpine:3", &n, "D", 1).unwrap(),
            Producer::Image("alpine:3".into())
        );
        assert!(matches!(
            resolve_from("7", &n, "D", 4),
            Err(PlanError::StageIndex {
                index: 7,
                count: 3,
                line: 4,
                ..
            })
        ));
        assert!(matches!(
            resolve_from("$STAGE", &n, "D", 2),
            Err(PlanError::FromVariable { .. })
        ));
    }

    #[test]
    fn cycles_and_reachability() {
        // 0 <- 1 <- 2, and 3 alone.
        let e = vec![vec![], vec![(0, 3)], vec![(1, 5)], vec![]];
        assert_eq!(find_cycle(&e), None);
        assert_eq!(reachable(&e, 2), [true, true, true, false]);
        let looped = vec![vec![(1, 2)], vec![(0, 4)]];
        assert_eq!(find_cycle(&looped), Some((0, 4)));
        let itself = vec![vec![(0, 9)]];
        assert_eq!(find_cycle(&itself), Some((0, 9)));
    }

    #[test]
    fn paths_start_at_the_producer_root() {
        assert_eq!(root_path("app/bin"), "/app/bin");
        assert_eq!(root_path("/workspace/./out/"), "/workspace/out");
        assert_eq!(root_path("../../etc/x"), "/etc/x");
        assert_eq!(root_path("."), "/");
        assert_eq!(root_path("/lib/*.so"), "/lib/*.so");
    }
}
