//! Which arguments of which instruction expand, as Docker does it, and how ENV and ARG change the
//! environment for the instructions after them.
//!
//! Expanded: ENV and LABEL keys and values, ARG defaults, COPY and ADD sources, destination,
//! `--chown`, `--chmod`, `--exclude`, `--checksum` and unquoted heredoc bodies, EXPOSE, VOLUME,
//! WORKDIR, USER, STOPSIGNAL, and RUN `--mount` values. Not expanded: RUN, CMD, ENTRYPOINT,
//! SHELL and HEALTHCHECK commands (the shell does that at run time), MAINTAINER, ONBUILD triggers
//! (they expand where they run), `COPY --from` (Docker refuses variables there).
//!
//! All words of one ENV expand against the environment before it (`ENV A=1 B=$A` gives B the
//! old A); the names of one ARG are declared one after another.

use std::collections::BTreeSet;

use crate::dockerfile::expand::{Env, ExpandError, Expander};
use crate::dockerfile::instructions::*;
use crate::dockerfile::run_options::Mount;

use super::env::BuildEnv;

/// An instruction after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub instruction: Instruction,
    /// Variables whose value is not known yet (an unseen base image's ENV); their text was kept.
    pub unknown: BTreeSet<String>,
}

/// Why an instruction could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandFailure {
    /// A word failed to expand.
    Word { word: String, source: ExpandError },
    /// The expanded values are not valid (a `--mount` whose type came from an ARG, say).
    Invalid { message: String },
}

fn word_failure(word: &str, source: ExpandError) -> ExpandFailure {
    ExpandFailure::Word {
        word: word.to_string(),
        source,
    }
}

struct Words<'a> {
    env: &'a dyn Env,
    expander: &'a Expander,
    unknown: BTreeSet<String>,
}

impl Words<'_> {
    fn word(&mut self, w: &str) -> Result<String, ExpandFailure> {
        let out = self
            .expander
            .expand(w, self.env)
            .map_err(|e| word_failure(w, e))?;
        self.unknown.extend(out.unknown);
        Ok(out.text)
    }

    fn words(&mut self, w: &str) -> Result<Vec<String>, ExpandFailure> {
        let out = self
            .expander
            .expand(w, self.env)
            .map_err(|e| word_failure(w, e))?;
        self.unknown.extend(out.unknown);
        Ok(out.words)
    }

    fn opt(&mut self, w: &Option<String>) -> Result<Option<String>, ExpandFailure> {
        w.as_deref().map(|w| self.word(w)).transpose()
    }

    fn all(&mut self, ws: &[String]) -> Result<Vec<String>, ExpandFailure> {
        ws.iter().map(|w| self.word(w)).collect()
    }

    fn sources(&mut self, sources: &[Source]) -> Result<Vec<Source>, ExpandFailure> {
        let raw = self.expander.skip_quotes(true);
        sources
            .iter()
            .map(|s| match s {
                Source::Path(p) => Ok(Source::Path(self.word(p)?)),
                Source::Heredoc(h) if h.expand => {
                    let out = raw
                        .expand(&h.content, self.env)
                        .map_err(|e| word_failure(&h.content, e))?;
                    self.unknown.extend(out.unknown);
                    Ok(Source::Heredoc(Heredoc {
                        content: out.text,
                        ..h.clone()
                    }))
                }
                Source::Heredoc(h) => Ok(Source::Heredoc(h.clone())),
            })
            .collect()
    }

    fn mounts(&mut self, mounts: &[Mount]) -> Result<Vec<Mount>, ExpandFailure> {
        mounts
            .iter()
            .map(|m| {
                let failure = std::cell::RefCell::new(None);
                let expand = |v: &str| {
                    self.expander
                        .expand(v, self.env)
                        .map(|o| o.text)
                        .map_err(|e| {
                            let message = e.to_string();
                            *failure.borrow_mut() = Some(word_failure(v, e));
                            message
                        })
                };
                Mount::parse(&m.spec, Some(&expand)).map_err(|message| {
                    failure.into_inner().unwrap_or(ExpandFailure::Invalid {
                        message: format!("invalid --mount={}: {message}", m.spec),
                    })
                })
            })
            .collect()
    }
}

impl BuildEnv {
    /// Expands `instruction` in this environment and applies what it changes (ENV, ARG).
    pub fn expand_instruction(
        &mut self,
        instruction: &Instruction,
        expander: &Expander,
    ) -> Result<Expansion, ExpandFailure> {
        let mut w = Words {
            env: self,
            expander,
            unknown: BTreeSet::new(),
        };
        let expanded = match instruction {
            Instruction::Env(pairs) | Instruction::Label(pairs) => {
                let pairs = pairs
                    .iter()
                    .map(|kv| {
                        Ok(KeyValue {
                            key: w.word(&kv.key)?,
                            value: w.word(&kv.value)?,
                            legacy: kv.legacy,
                        })
                    })
                    .collect::<Result<Vec<_>, ExpandFailure>>()?;
                if matches!(instruction, Instruction::Env(_)) {
                    let unknown = std::mem::take(&mut w.unknown);
                    for kv in &pairs {
                        self.set_env(&kv.key, &kv.value);
                    }
                    return Ok(Expansion {
                        instruction: Instruction::Env(pairs),
                        unknown,
                    });
                }
                Instruction::Label(pairs)
            }
            Instruction::Arg(decls) => {
                let mut resolved = Vec::new();
                for decl in decls {
                    let value = self
                        .declare_arg(&decl.name, decl.default.as_deref(), expander)
                        .map_err(|e| {
                            word_failure(decl.default.as_deref().unwrap_or_default(), e)
                        })?;
                    resolved.push(ArgDecl {
                        name: decl.name.clone(),
                        default: value,
                    });
                }
                return Ok(Expansion {
                    instruction: Instruction::Arg(resolved),
                    unknown: BTreeSet::new(),
                });
            }
            Instruction::Copy(c) => Instruction::Copy(Copy {
                sources: w.sources(&c.sources)?,
                dest: w.word(&c.dest)?,
                chown: w.opt(&c.chown)?,
                chmod: w.opt(&c.chmod)?,
                exclude: w.all(&c.exclude)?,
                ..c.clone()
            }),
            Instruction::Add(a) => Instruction::Add(Add {
                sources: w.sources(&a.sources)?,
                dest: w.word(&a.dest)?,
                chown: w.opt(&a.chown)?,
                chmod: w.opt(&a.chmod)?,
                checksum: w.opt(&a.checksum)?,
                exclude: w.all(&a.exclude)?,
                ..a.clone()
            }),
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(w.words(p)?);
                }
                Instruction::Expose(out)
            }
            Instruction::Volume(vols) => Instruction::Volume(w.all(vols)?),
            Instruction::Workdir(p) => Instruction::Workdir(w.word(p)?),
            Instruction::User(u) => Instruction::User(w.word(u)?),
            Instruction::Stopsignal(s) => Instruction::Stopsignal(w.word(s)?),
            Instruction::Run(r) => Instruction::Run(Run {
                mounts: w.mounts(&r.mounts)?,
                ..r.clone()
            }),
            other => other.clone(),
        };
        Ok(Expansion {
            instruction: expanded,
            unknown: w.unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;
    use crate::plan::env::ArgScope;
    use crate::platform::Platform;

    fn walk(src: &str, base: Option<&[String]>) -> Vec<String> {
        let df = parse(src, "Dockerfile").unwrap();
        let p: Platform = "linux/amd64".parse().unwrap();
        let scope = ArgScope::new([("CLI".to_string(), "from-cli".to_string())].into(), &p, &p);
        let ex = Expander::new(df.escape);
        let mut env = BuildEnv::new(base, &scope);
        df.stages[0]
            .instructions
            .iter()
            .map(|i| {
                env.expand_instruction(&i.node, &ex)
                    .unwrap()
                    .instruction
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn which_instructions_expand() {
        let base = vec!["HOME=/root".to_string()];
        let got = walk(
            "FROM a\n\
             ENV DIR=/app NAME=kb\n\
             ENV OLD=$DIR DIR=/srv NEW=$DIR\n\
             ARG CLI=default\n\
             ARG V=1.$CLI\n\
             LABEL v=$V\n\
             WORKDIR $DIR/$NAME\n\
             USER ${UID:-1000}\n\
             EXPOSE ${PORT:-80} 443\n\
             VOLUME $HOME/data\n\
             STOPSIGNAL ${SIG:-SIGTERM}\n\
             COPY --chown=$V --exclude=$NAME.md $NAME/ $DIR/\n\
             ADD --checksum=$V x y\n\
             RUN --mount=type=cache,id=$NAME,target=$HOME/.cache echo $NAME\n\
             CMD echo $NAME\n\
             HEALTHCHECK CMD echo $NAME\n\
             ONBUILD COPY $NAME /x\n",
            Some(&base),
        );
        assert_eq!(
            got,
            [
                "ENV DIR=/app NAME=kb",
                "ENV OLD=/app DIR=/srv NEW=/app",
                "ARG CLI=from-cli",
                "ARG V=1.from-cli",
                "LABEL v=1.from-cli",
                "WORKDIR /srv/kb",
                "USER 1000",
                "EXPOSE 80 443",
                "VOLUME [\"/root/data\"]",
                "STOPSIGNAL SIGTERM",
                "COPY --chown=1.from-cli --exclude=kb.md kb/ /srv/",
                "ADD --checksum=1.from-cli x y",
                "RUN --mount=type=cache,target=/root/.cache,id=kb echo $NAME",
                "CMD echo $NAME",
                "HEALTHCHECK CMD echo $NAME",
                "ONBUILD COPY $NAME /x",
            ]
        );
    }

    #[test]
    fn unknown_base_env_keeps_text() {
        let got = walk("FROM a\nWORKDIR $HOME/app\nARG X=1\nENV P=$X:$PATH\n", None);
        assert_eq!(got, ["WORKDIR $HOME/app", "ARG X=1", "ENV P=1:$PATH"]);
    }

    #[test]
    fn copy_heredocs_expand_unless_quoted() {
        let df = parse(
            "FROM a\nARG N=kb\nCOPY <<A <<'B' /d/\n$N \"q\"\nA\n$N\nB\n",
            "Dockerfile",
        )
        .unwrap();
        let p: Platform = "linux/amd64".parse().unwrap();
        let scope = ArgScope::new(Default::default(), &p, &p);
        let ex = Expander::new('\\');
        let mut env = BuildEnv::scratch(&scope);
        let ins = &df.stages[0].instructions;
        env.expand_instruction(&ins[0].node, &ex).unwrap();
        let Instruction::Copy(c) = env
            .expand_instruction(&ins[1].node, &ex)
            .unwrap()
            .instruction
        else {
            panic!("expected COPY")
        };
        let bodies: Vec<_> = c
            .sources
            .iter()
            .map(|s| match s {
                Source::Heredoc(h) => h.content.clone(),
                Source::Path(p) => p.clone(),
            })
            .collect();
        assert_eq!(bodies, ["kb \"q\"\n", "$N\n"]);
    }

    #[test]
    fn required_variable_fails_with_the_word() {
        let df = parse("FROM a\nWORKDIR ${DIR:?set DIR}\n", "Dockerfile").unwrap();
        let p: Platform = "linux/amd64".parse().unwrap();
        let scope = ArgScope::new(Default::default(), &p, &p);
        let mut env = BuildEnv::scratch(&scope);
        let err = env
            .expand_instruction(&df.stages[0].instructions[0].node, &Expander::new('\\'))
            .unwrap_err();
        let ExpandFailure::Word { word, source } = err else {
            panic!("expected a word failure, got {err:?}")
        };
        assert_eq!(word, "${DIR:?set DIR}");
        assert_eq!(source.to_string(), "DIR: set DIR");
    }
}
