//! Parser rules, one row each: the input and what the parsed instructions render as (line range
//! and canonical text), or the error it must give.

use super::*;

/// Every instruction of every stage as `start-end TEXT`, one per line.
fn render(df: &Dockerfile) -> String {
    let mut out = Vec::new();
    for args in &df.meta_args {
        out.push(format!(
            "{}-{} {}",
            args.lines.start,
            args.lines.end,
            Instruction::Arg(args.node.clone())
        ));
    }
    for stage in &df.stages {
        let from = &stage.from;
        out.push(format!(
            "{}-{} {}",
            from.lines.start,
            from.lines.end,
            Instruction::From(from.node.clone())
        ));
        for i in &stage.instructions {
            out.push(format!("{}-{} {}", i.lines.start, i.lines.end, i.node));
        }
    }
    out.join("\n")
}

fn ok(src: &str) -> Dockerfile {
    parse(src, "Dockerfile").unwrap_or_else(|e| panic!("{src:?} failed: {e}"))
}

#[test]
fn parser_rules() {
    // (rule, Dockerfile, rendering of its instructions)
    let cases: &[(&str, &str, &str)] = &[
        (
            "case-insensitive keywords",
            "from alpine\nrun echo hi",
            "1-1 FROM alpine\n2-2 RUN echo hi",
        ),
        (
            "stage name lower-cased",
            "FROM alpine AS Build",
            "1-1 FROM alpine AS build",
        ),
        (
            "as keyword any case",
            "FROM alpine as b",
            "1-1 FROM alpine AS b",
        ),
        (
            "FROM --platform",
            "FROM --platform=$BUILDPLATFORM golang AS b",
            "1-1 FROM --platform=$BUILDPLATFORM golang AS b",
        ),
        (
            "meta ARG before FROM",
            "ARG V=1\nFROM alpine:$V",
            "1-1 ARG V=1\n2-2 FROM alpine:$V",
        ),
        (
            "continuation joins lines",
            "FROM a\nRUN echo \\\n  hi",
            "1-1 FROM a\n2-3 RUN echo   hi",
        ),
        (
            "comment inside continuation",
            "FROM a\nRUN a \\\n# c\n  b",
            "1-1 FROM a\n2-4 RUN a   b",
        ),
        (
            "blank line inside continuation",
            "FROM a\nRUN a \\\n\n  b",
            "1-1 FROM a\n2-4 RUN a   b",
        ),
        ("trailing comment lines", "FROM a\n# done\n", "1-1 FROM a"),
        (
            "leading whitespace",
            "  FROM a\n\tRUN x",
            "1-1 FROM a\n2-2 RUN x",
        ),
        (
            "CRLF line endings",
            "FROM a\r\nRUN x \\\r\n y\r\n",
            "1-1 FROM a\n2-3 RUN x  y",
        ),
        ("byte-order mark", "\u{feff}FROM a", "1-1 FROM a"),
        (
            "escape directive",
            "# escape=`\nFROM a\nRUN dir c:\\ `\n  /s",
            "2-2 FROM a\n3-4 RUN dir c:\\   /s",
        ),
        (
            "RUN exec form",
            "FROM a\nRUN [\"echo\", \"a b\"]",
            "1-1 FROM a\n2-2 RUN [\"echo\",\"a b\"]",
        ),
        (
            "invalid JSON is shell form",
            "FROM a\nRUN [ \"echo\"",
            "1-1 FROM a\n2-2 RUN [ \"echo\"",
        ),
        (
            "RUN --mount",
            "FROM a\nRUN --mount=type=cache,target=/c go build",
            "1-1 FROM a\n2-2 RUN --mount=type=cache,target=/c go build",
        ),
        (
            "RUN --network --security",
            "FROM a\nRUN --network=none --security=insecure x",
            "1-1 FROM a\n2-2 RUN --network=none --security=insecure x",
        ),
        (
            "CMD shell form",
            "FROM a\nCMD echo $HOME",
            "1-1 FROM a\n2-2 CMD echo $HOME",
        ),
        (
            "ENTRYPOINT exec form",
            "FROM a\nENTRYPOINT [\"/bin/app\"]",
            "1-1 FROM a\n2-2 ENTRYPOINT [\"/bin/app\"]",
        ),
        (
            "SHELL JSON",
            "FROM a\nSHELL [\"/bin/bash\", \"-c\"]",
            "1-1 FROM a\n2-2 SHELL [\"/bin/bash\",\"-c\"]",
        ),
        (
            "ENV several pairs",
            "FROM a\nENV A=1 B=\"x y\" C=$A",
            "1-1 FROM a\n2-2 ENV A=1 B=\"\\\"x y\\\"\" C=$A",
        ),
        (
            "ENV legacy form",
            "FROM a\nENV PATH /usr/bin:$PATH",
            "1-1 FROM a\n2-2 ENV PATH=/usr/bin:$PATH",
        ),
        (
            "ENV legacy value with spaces",
            "FROM a\nENV MSG hello  world",
            "1-1 FROM a\n2-2 ENV MSG=\"hello  world\"",
        ),
        (
            "ARG several",
            "FROM a\nARG A B=2 C=",
            "1-1 FROM a\n2-2 ARG A B=2 C=\"\"",
        ),
        (
            "LABEL",
            "FROM a\nLABEL org.opencontainers.image.title=kb v=\"1 2\"",
            "1-1 FROM a\n2-2 LABEL org.opencontainers.image.title=kb v=\"\\\"1 2\\\"\"",
        ),
        (
            "EXPOSE",
            "FROM a\nEXPOSE 80/tcp 443",
            "1-1 FROM a\n2-2 EXPOSE 80/tcp 443",
        ),
        (
            "VOLUME JSON",
            "FROM a\nVOLUME [\"/data\", \"/logs\"]",
            "1-1 FROM a\n2-2 VOLUME [\"/data\",\"/logs\"]",
        ),
        (
            "VOLUME words",
            "FROM a\nVOLUME /data /logs",
            "1-1 FROM a\n2-2 VOLUME [\"/data\",\"/logs\"]",
        ),
        (
            "WORKDIR USER STOPSIGNAL MAINTAINER",
            "FROM a\nWORKDIR /app\nUSER 1000:1000\nSTOPSIGNAL SIGTERM\nMAINTAINER me <me@x>",
            "1-1 FROM a\n2-2 WORKDIR /app\n3-3 USER 1000:1000\n4-4 STOPSIGNAL SIGTERM\n5-5 MAINTAINER me <me@x>",
        ),
        (
            "COPY flags",
            "FROM a\nCOPY --from=build --chown=1:1 --chmod=755 --link --parents --exclude=*.md a b /d/",
            "1-1 FROM a\n2-2 COPY --from=build --chown=1:1 --chmod=755 --link --parents --exclude=*.md a b /d/",
        ),
        (
            "COPY JSON form",
            "FROM a\nCOPY [\"a b\", \"/c/\"]",
            "1-1 FROM a\n2-2 COPY [\"a b\",\"/c/\"]",
        ),
        (
            "ADD flags",
            "FROM a\nADD --checksum=sha256:abc --keep-git-dir --unpack=false https://x/y.tgz /y",
            "1-1 FROM a\n2-2 ADD --keep-git-dir --checksum=sha256:abc --unpack=false https://x/y.tgz /y",
        ),
        (
            "HEALTHCHECK NONE",
            "FROM a\nHEALTHCHECK NONE",
            "1-1 FROM a\n2-2 HEALTHCHECK NONE",
        ),
        (
            "HEALTHCHECK CMD options",
            "FROM a\nHEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=500ms --retries=3 CMD curl -f http://localhost/",
            "1-1 FROM a\n2-2 HEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=500ms --retries=3 CMD curl -f http://localhost/",
        ),
        (
            "ONBUILD wraps",
            "FROM a\nONBUILD COPY --chown=1 . /app",
            "1-1 FROM a\n2-2 ONBUILD COPY --chown=1 . /app",
        ),
        (
            "heredoc body lines counted",
            "FROM a\nRUN <<EOF\necho hi\nEOF\nCMD x",
            "1-1 FROM a\n2-4 RUN <<EOF\n5-5 CMD x",
        ),
        (
            "two stages",
            "FROM a AS one\nRUN x\nFROM one\nRUN y",
            "1-1 FROM a AS one\n2-2 RUN x\n3-3 FROM one\n4-4 RUN y",
        ),
    ];
    for (rule, src, want) in cases {
        assert_eq!(render(&ok(src)), *want, "rule {rule:?}");
    }
}

#[test]
fn parser_errors() {
    // (rule, Dockerfile, line, column, part of the message)
    let cases: &[(&str, &str, usize, usize, &str)] = &[
        ("empty file", "", 1, 1, "file with no instructions"),
        (
            "only comments",
            "# hello\n\n",
            2,
            1,
            "file with no instructions",
        ),
        (
            "instruction before FROM",
            "RUN x\nFROM a",
            1,
            1,
            "RUN before the first FROM",
        ),
        (
            "unknown instruction",
            "FROM a\nFORM b",
            2,
            1,
            "unknown instruction: FORM\nhint: did you mean FROM?",
        ),
        (
            "unknown instruction, no near name",
            "FROM a\n  BOGUSWORD x",
            2,
            3,
            "unknown instruction: BOGUSWORD",
        ),
        (
            "JSON not strings",
            "FROM a\nCMD [\"a\", 1]",
            2,
            5,
            "arrays must be comprised of strings only",
        ),
        (
            "unterminated heredoc",
            "FROM a\nRUN <<EOF\necho",
            2,
            1,
            "unterminated heredoc: expected a line with only \"EOF\"",
        ),
        (
            "unknown flag",
            "FROM a\nCOPY --form=x a b",
            2,
            6,
            "unknown flag --form",
        ),
        (
            "flag not valid for instruction",
            "FROM a\nADD --from=x a b",
            2,
            5,
            "unknown flag --from",
        ),
        (
            "flag on ENV",
            "FROM a\nENV --x=1 A=1",
            2,
            5,
            "this instruction takes no flags",
        ),
        (
            "duplicate flag",
            "FROM a\nCOPY --from=a --from=b x y",
            2,
            6,
            "duplicate flag --from",
        ),
        (
            "missing flag value",
            "FROM a\nCOPY --chown a b",
            2,
            6,
            "missing a value on flag --chown",
        ),
        (
            "bad bool flag",
            "FROM a\nCOPY --link=maybe a b",
            2,
            6,
            "expecting boolean value",
        ),
        (
            "bad mount",
            "FROM a\nRUN --mount=type=volume x",
            2,
            13,
            "unsupported mount type",
        ),
        (
            "bad network",
            "FROM a\nRUN --network=bridge x",
            2,
            5,
            "unsupported network mode",
        ),
        (
            "COPY one argument",
            "FROM a\nCOPY a",
            2,
            1,
            "requires at least two arguments",
        ),
        (
            "heredoc destination",
            "FROM a\nCOPY x <<EOF\nEOF",
            2,
            8,
            "cannot accept a heredoc as a destination",
        ),
        (
            "FROM two words",
            "FROM a b",
            1,
            1,
            "FROM requires either one or three arguments",
        ),
        (
            "bad stage name",
            "FROM a AS 1x",
            1,
            11,
            "invalid name for build stage",
        ),
        (
            "ENV missing =",
            "FROM a\nENV A=1 B",
            2,
            9,
            "can't find = in \"B\"",
        ),
        (
            "ENV one word",
            "FROM a\nENV A",
            2,
            5,
            "ENV must have two arguments",
        ),
        (
            "ARG blank name",
            "FROM a\nARG =x",
            2,
            5,
            "ARG names can not be blank",
        ),
        (
            "SHELL not JSON",
            "FROM a\nSHELL /bin/sh -c",
            2,
            1,
            "SHELL requires the arguments to be in JSON form",
        ),
        (
            "HEALTHCHECK unknown type",
            "FROM a\nHEALTHCHECK RUN x",
            2,
            13,
            "unknown type \"RUN\" in HEALTHCHECK",
        ),
        (
            "HEALTHCHECK NONE args",
            "FROM a\nHEALTHCHECK NONE x",
            2,
            18,
            "HEALTHCHECK NONE takes no arguments",
        ),
        (
            "HEALTHCHECK bad interval",
            "FROM a\nHEALTHCHECK --interval=soon CMD x",
            2,
            13,
            "invalid --interval=soon",
        ),
        (
            "HEALTHCHECK short interval",
            "FROM a\nHEALTHCHECK --interval=1us CMD x",
            2,
            13,
            "cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK negative retries",
            "FROM a\nHEALTHCHECK --retries=-1 CMD x",
            2,
            13,
            "--retries must be a number",
        ),
        (
            "ONBUILD ONBUILD",
            "FROM a\nONBUILD ONBUILD RUN x",
            2,
            1,
            "Chaining ONBUILD",
        ),
        (
            "ONBUILD FROM",
            "FROM a\nONBUILD FROM b",
            2,
            1,
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "ONBUILD bad inner",
            "FROM a\nONBUILD COPY a",
            2,
            9,
            "COPY requires at least two arguments",
        ),
        (
            "duplicate directive",
            "# escape=`\n# escape=`\nFROM a",
            2,
            1,
            "only one escape parser directive",
        ),
        (
            "bad escape directive",
            "# escape=x\nFROM a",
            1,
            1,
            "invalid escape token 'x'",
        ),
        (
            "RUN without command",
            "FROM a\nRUN",
            2,
            1,
            "RUN requires at least one argument",
        ),
        (
            "WORKDIR without path",
            "FROM a\nWORKDIR",
            2,
            1,
            "WORKDIR requires exactly one argument",
        ),
    ];
    for (rule, src, line, column, want) in cases {
        let err = match parse(src, "Dockerfile") {
            Ok(df) => panic!("rule {rule:?} should fail, parsed {}", render(&df)),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            text.contains(want),
            "rule {rule:?}: {text:?} lacks {want:?}"
        );
        assert_eq!(
            (err.line, err.column),
            (*line, *column),
            "rule {rule:?}: {text}"
        );
        assert!(
            text.starts_with(&format!("Dockerfile:{line}:{column}: ")),
            "{text}"
        );
    }
}

#[test]
fn heredocs_attach_to_their_instructions() {
    let src = "FROM a\n\
RUN <<EOF cat > /x <<-'END'\n\
echo $HOME\n\
EOF\n\
\tliteral $HOME\n\
\tEND\n\
COPY <<one <<\"two\" /dest/\n\
first\n\
one\n\
second $X\n\
two\n\
RUN 3<<A cat /dev/fd/3\n\
fd three\n\
A\n";
    let df = ok(src);
    let ins = &df.stages[0].instructions;
    let Instruction::Run(run) = &ins[0].node else {
        panic!("expected RUN")
    };
    assert_eq!(ins[0].lines, LineRange { start: 2, end: 6 });
    assert_eq!(
        run.command,
        CommandLine::Shell("<<EOF cat > /x <<-'END'".into())
    );
    assert_eq!(run.heredocs.len(), 2);
    assert_eq!(run.heredocs[0].name, "EOF");
    assert!(run.heredocs[0].expand);
    assert_eq!(run.heredocs[0].content, "echo $HOME\n");
    assert_eq!(run.heredocs[1].name, "END");
    assert!(run.heredocs[1].chomp && !run.heredocs[1].expand);
    assert_eq!(run.heredocs[1].body(), "literal $HOME\n");

    let Instruction::Copy(copy) = &ins[1].node else {
        panic!("expected COPY")
    };
    assert_eq!(copy.dest, "/dest/");
    let docs: Vec<_> = copy
        .sources
        .iter()
        .map(|s| match s {
            Source::Heredoc(h) => (h.name.as_str(), h.expand, h.content.as_str()),
            Source::Path(p) => panic!("unexpected path {p}"),
        })
        .collect();
    assert_eq!(
        docs,
        [("one", true, "first\n"), ("two", false, "second $X\n")]
    );

    let Instruction::Run(run) = &ins[2].node else {
        panic!("expected RUN")
    };
    assert_eq!(run.heredocs[0].fd, Some(3));
    assert_eq!(run.heredocs[0].content, "fd three\n");
}

#[test]
fn heredocs_are_not_read_for_json_or_other_instructions() {
    let df = ok("FROM a\nRUN [\"cat\", \"<<EOF\"]\nCMD cat <<EOF\nENV X=1");
    let ins = &df.stages[0].instructions;
    assert_eq!(ins.len(), 3, "no line was taken as a heredoc body");
    assert!(matches!(&ins[0].node, Instruction::Run(r) if r.heredocs.is_empty()));
}

#[test]
fn onbuild_heredocs_are_kept_in_the_expression() {
    let df = ok("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
    let Instruction::Onbuild(ob) = &df.stages[0].instructions[0].node else {
        panic!("expected ONBUILD")
    };
    assert_eq!(ob.expression, "RUN <<EOF\necho hi\nEOF");
    let Instruction::Run(run) = ob.instruction.as_ref() else {
        panic!("expected RUN trigger")
    };
    assert_eq!(run.heredocs[0].content, "echo hi\n");
}

#[test]
fn stages_and_meta_args_are_grouped() {
    let df = ok("ARG A\nARG B=1 C\nFROM x AS one\nARG A\nFROM one\n");
    assert_eq!(df.meta_args.len(), 2);
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].name(), Some("one"));
    assert_eq!(df.stages[1].index, 1);
    assert_eq!(df.stages[0].instructions.len(), 1);
}

#[test]
fn directives_and_warnings_are_recorded() {
    let df = ok("# syntax=docker/dockerfile:1.7\n# check=error=true\nFROM a\nRUN a \\\n\n b\n");
    assert_eq!(
        df.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(df.directives.check.as_deref(), Some("error=true"));
    assert_eq!(df.escape, '\\');
    assert_eq!(df.warnings.len(), 1);
    assert!(df.warnings[0].message.contains("empty continuation line"));
}

#[test]
fn invalid_utf8_names_the_position() {
    let err = parse_bytes(b"FROM a\nRUN echo \xff\n", "Dockerfile").unwrap_err();
    assert_eq!((err.line, err.column), (2, 10));
    assert!(err.to_string().contains("not valid UTF-8"));
}

#[test]
fn original_text_and_spans_are_kept() {
    let df = ok("FROM a\nCOPY --from=x \\\n  /a /b\n");
    let copy = &df.stages[0].instructions[0];
    assert_eq!(copy.original, "COPY --from=x   /a /b");
    assert_eq!(copy.lines, LineRange { start: 2, end: 3 });
}

#[test]
fn heredoc_bodies_are_read_in_marker_order() {
    // BuildKit's test: each body ends at its own delimiter, whatever the other one is called.
    let df =
        ok("FROM a\nCOPY <<X <<Y /dest\nY\nX\nX\nY\nRUN <<COMMENT\n# not a comment\nCOMMENT\n");
    let ins = &df.stages[0].instructions;
    let Instruction::Copy(copy) = &ins[0].node else {
        panic!("expected COPY")
    };
    let bodies: Vec<_> = copy
        .sources
        .iter()
        .map(|s| match s {
            Source::Heredoc(h) => (h.name.as_str(), h.content.as_str()),
            Source::Path(p) => panic!("unexpected path {p}"),
        })
        .collect();
    assert_eq!(bodies, [("X", "Y\n"), ("Y", "X\n")]);
    let Instruction::Run(run) = &ins[1].node else {
        panic!("expected RUN")
    };
    assert_eq!(run.heredocs[0].content, "# not a comment\n");
    // USER takes no heredoc, so the next line is an instruction of its own.
    let err = parse("FROM a\nUSER <<INVALID\nINVALID\n", "Dockerfile").unwrap_err();
    assert_eq!(err.line, 3);
    assert!(err.to_string().contains("unknown instruction: INVALID"));
}
