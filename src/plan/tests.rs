//! Plan rules: ARG scoping, FROM resolution, targets, reachability, dependencies and errors.

use super::*;
use crate::dockerfile::parse;

fn options(build_args: &[(&str, &str)], target: Option<&str>) -> PlanOptions {
    PlanOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(String::from),
        platform: "linux/arm64".parse().unwrap(),
        build_platform: "linux/amd64".parse().unwrap(),
    }
}

fn plan(src: &str, build_args: &[(&str, &str)], target: Option<&str>) -> Plan {
    let df = parse(src, "Dockerfile").unwrap();
    Plan::new(&df, &options(build_args, target)).unwrap_or_else(|e| panic!("{e}"))
}

fn plan_err(src: &str, target: Option<&str>) -> PlanError {
    let df = parse(src, "Dockerfile").unwrap();
    Plan::new(&df, &options(&[], target)).expect_err("plan should fail")
}

/// The expanded text of every instruction of stage `i`.
fn texts(p: &Plan, i: usize) -> Vec<String> {
    p.stages[i]
        .instructions
        .iter()
        .map(|i| i.text.clone())
        .collect()
}

#[test]
fn meta_args_feed_from_lines_only() {
    let p = plan(
        "ARG GO=1.21\nARG BASE=golang:${GO}\nFROM $BASE AS build\nRUN echo $GO\nARG GO\nWORKDIR /go$GO\n",
        &[("GO", "1.22")],
        None,
    );
    assert_eq!(p.stages[0].base, Base::Image("golang:1.22".into()));
    assert_eq!(p.stages[0].from, "FROM golang:1.22 AS build");
    assert_eq!(
        texts(&p, 0),
        ["RUN echo $GO", "ARG GO=1.22", "WORKDIR /go1.22"]
    );
    assert_eq!(p.meta_args[1].value.as_deref(), Some("golang:1.22"));
}

#[test]
fn args_do_not_leak_into_sibling_stages() {
    let p = plan(
        "FROM scratch AS a\nARG X=one\nWORKDIR /$X\nFROM scratch AS b\nWORKDIR /$X\n",
        &[],
        None,
    );
    assert_eq!(texts(&p, 0)[1], "WORKDIR /one");
    assert_eq!(
        texts(&p, 1)[0],
        "WORKDIR /",
        "scratch env is known: X is unset"
    );
}

#[test]
fn stages_built_from_a_stage_inherit_its_env_and_args() {
    let p = plan(
        "FROM scratch AS a\nARG X=one\nENV E=env\nFROM a\nWORKDIR /$X/$E\n",
        &[],
        None,
    );
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(texts(&p, 1), ["WORKDIR /one/env"]);
}

#[test]
fn predefined_platform_args() {
    let p = plan(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nARG BUILDOS\nRUN echo\nWORKDIR /out/$TARGETARCH-$BUILDOS\nFROM alpine\nWORKDIR /$TARGETARCH\n",
        &[],
        None,
    );
    assert_eq!(p.stages[0].platform.to_string(), "linux/amd64");
    assert_eq!(p.stages[1].platform.to_string(), "linux/arm64");
    assert_eq!(texts(&p, 0)[3], "WORKDIR /out/arm64-linux");
    assert_eq!(
        p.stages[0].instructions[2].args,
        BTreeMap::from([
            ("BUILDOS".to_string(), "linux".to_string()),
            ("TARGETARCH".to_string(), "arm64".to_string())
        ])
    );
    assert_eq!(
        texts(&p, 1),
        ["WORKDIR /$TARGETARCH"],
        "undeclared in the stage: unknown, it may come from the image"
    );
}

#[test]
fn env_wins_over_arg_and_build_args() {
    let p = plan(
        "FROM scratch\nENV V=env\nARG V=default\nWORKDIR /$V\n",
        &[("V", "cli")],
        None,
    );
    assert_eq!(texts(&p, 0), ["ENV V=env", "ARG V=cli", "WORKDIR /env"]);
}

#[test]
fn proxy_args_need_no_declaration_and_others_warn() {
    let p = plan(
        "FROM scratch\nRUN true\n",
        &[("HTTPS_PROXY", "http://p"), ("GOPROXY", "x")],
        None,
    );
    assert_eq!(
        p.warnings,
        ["build arg GOPROXY was not consumed: no ARG GOPROXY in Dockerfile"]
    );
    assert!(p.stages[0].instructions[0].args.is_empty());
}

#[test]
fn stage_names_are_case_insensitive() {
    let p = plan(
        "FROM alpine AS Build\nRUN x\nFROM BUILD\nCOPY --from=bUiLd /a /b\n",
        &[],
        Some("BUILD"),
    );
    assert_eq!(p.target, 0);
    let p = plan(
        "FROM alpine AS Build\nRUN x\nFROM build\nCOPY --from=bUiLd /a /b\n",
        &[],
        None,
    );
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(p.deps[0].producer, Producer::Stage(0));
}

#[test]
fn target_and_reachability() {
    let src = "FROM alpine AS base\n\
FROM base AS tools\n\
FROM golang AS build\n\
COPY --from=0 /etc/os-release /x\n\
FROM scratch AS unused\n\
FROM scratch AS final\n\
COPY --from=build /out/app /app\n\
COPY --from=nginx:1.27 /etc/nginx /etc/nginx\n\
RUN --mount=from=tools,target=/t true\n";
    let p = plan(src, &[], None);
    let reach: Vec<bool> = p.stages.iter().map(|s| s.reachable).collect();
    assert_eq!(reach, [true, true, true, false, true]);
    let p = plan(src, &[], Some("build"));
    let reach: Vec<bool> = p.stages.iter().map(|s| s.reachable).collect();
    assert_eq!(reach, [true, false, true, false, false]);
    let p = plan(src, &[], Some("3"));
    assert_eq!(p.target, 3);
}

#[test]
fn cross_stage_deps_resolve_paths_from_the_producer_root() {
    let p = plan(
        "FROM golang AS builder\nWORKDIR /workspace\nRUN go build -o app\n\
FROM alpine\nWORKDIR /srv\nARG NAME=app\n\
COPY --from=builder $NAME ./bin/ /app/\n\
COPY --from=builder /usr/lib/*.so /lib/\n\
RUN --mount=type=bind,from=builder,source=cache,target=/c true\n\
COPY --from=busybox:1.36 /bin/busybox /bin/\n",
        &[],
        None,
    );
    let deps: Vec<_> = p
        .deps
        .iter()
        .map(|d| (d.consumer, d.producer.clone(), d.paths.clone(), d.line))
        .collect();
    assert_eq!(
        deps,
        [
            (1, Producer::Stage(0), vec!["/app".into(), "/bin".into()], 7),
            (1, Producer::Stage(0), vec!["/usr/lib/*.so".into()], 8),
            (1, Producer::Stage(0), vec!["/cache".into()], 9),
            (
                1,
                Producer::Image("busybox:1.36".into()),
                vec!["/bin/busybox".into()],
                10
            ),
        ]
    );
}

#[test]
fn onbuild_triggers_run_in_stages_built_on_the_stage() {
    let p = plan(
        "FROM alpine AS base\nONBUILD COPY --from=tools /t /t\nONBUILD RUN make\n\
FROM alpine AS tools\n\
FROM base\nRUN test\n",
        &[],
        None,
    );
    let child = &p.stages[2];
    let got: Vec<_> = child
        .instructions
        .iter()
        .map(|i| (i.line, i.text.as_str(), i.onbuild_of))
        .collect();
    assert_eq!(
        got,
        [
            (2, "COPY --from=tools /t /t", Some(0)),
            (3, "RUN make", Some(0)),
            (6, "RUN test", None)
        ]
    );
    assert!(
        p.stages[1].reachable,
        "the trigger's --from makes tools needed"
    );
    assert_eq!(p.deps[0].consumer, 2);
}

#[test]
fn unreachable_stages_may_miss_required_args() {
    let p = plan(
        "FROM scratch AS release\nARG VERSION\nLABEL v=${VERSION:?required}\nFROM scratch AS dev\n",
        &[],
        Some("dev"),
    );
    assert_eq!(texts(&p, 0)[1], "LABEL v=${VERSION:?required}");
    let err = plan_err(
        "FROM scratch AS release\nARG VERSION\nLABEL v=${VERSION:?required}\n",
        None,
    );
    assert_eq!(
        err.to_string(),
        "Dockerfile:3: cannot expand \"${VERSION:?required}\" in `LABEL \
         v=${VERSION:?required}`: VERSION: required\nhint: pass --build-arg VERSION=<value> and declare it \
         with ARG VERSION"
    );
}

#[test]
fn plan_errors() {
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        (
            "unknown target",
            "FROM alpine AS a\nFROM alpine AS b\n",
            Some("c"),
            "Dockerfile: target stage \"c\" could not be found\nhint: stages are a, b (or a stage index)",
        ),
        (
            "stage index out of range",
            "FROM alpine\nCOPY --from=3 /a /b\n",
            None,
            "Dockerfile:2: invalid stage index 3",
        ),
        (
            "later stage",
            "FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\nFROM a\n",
            None,
            "Dockerfile:2: cannot copy from stage \"b\", it needs to be defined before current stage \"a\"",
        ),
        (
            "cycle",
            "FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\nCOPY --from=a /x /y\n",
            None,
            "Dockerfile:4: circular dependency detected on stage: a",
        ),
        (
            "copy from itself",
            "FROM alpine AS a\nCOPY --from=a /x /y\n",
            None,
            "Dockerfile:2: circular dependency detected on stage: a",
        ),
        (
            "variable in --from",
            "ARG S=a\nFROM alpine AS a\nFROM alpine\nCOPY --from=$S /x /y\n",
            None,
            "Dockerfile:4: variable expansion is not supported for --from=$S",
        ),
        (
            "blank base",
            "ARG IMAGE\nFROM $IMAGE\n",
            None,
            "Dockerfile:2: base name ($IMAGE) should not be blank",
        ),
        (
            "bad platform",
            "FROM --platform=linux alpine\n",
            None,
            "Dockerfile:1: invalid FROM --platform=linux: invalid platform \"linux\"",
        ),
        (
            "required meta arg",
            "ARG V=${NOPE:?needed}\nFROM alpine\n",
            None,
            "Dockerfile:1: cannot expand \"${NOPE:?needed}\"",
        ),
        (
            "mount type from an arg",
            "FROM alpine\nARG T=volume\nRUN --mount=type=$T,target=/x true\n",
            None,
            "Dockerfile:3: `RUN --mount=type=$T,target=/x true`: invalid --mount=type=$T,target=/x: unsupported mount type \"volume\"",
        ),
    ];
    for (rule, src, target, want) in cases {
        let err = plan_err(src, *target).to_string();
        assert!(
            err.starts_with(want),
            "rule {rule:?}: {err:?} does not start with {want:?}"
        );
    }
}

#[test]
fn forward_reference_in_an_unneeded_stage_is_not_an_error() {
    let p = plan(
        "FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\n",
        &[],
        Some("b"),
    );
    assert!(!p.stages[0].reachable);
}

#[test]
fn mistyped_from_warns() {
    let p = plan(
        "FROM alpine AS builder\nFROM alpine\nCOPY --from=buildr /a /b\n",
        &[],
        None,
    );
    assert_eq!(
        p.warnings,
        [
            "Dockerfile:3: --from=buildr names no stage, so it is pulled as an image; did you mean stage builder?"
        ]
    );
}

#[test]
fn run_args_and_env_for_the_executor() {
    let p = plan(
        "FROM golang AS b\nARG GOPROXY\nENV CGO_ENABLED=0\nRUN go build\n",
        &[("GOPROXY", "https://proxy")],
        None,
    );
    let run = &p.stages[0].instructions[2];
    assert_eq!(
        run.args,
        BTreeMap::from([("GOPROXY".to_string(), "https://proxy".to_string())])
    );
    // The executor walks again with the real base image env.
    let base = vec!["PATH=/usr/local/go/bin:/usr/bin".to_string()];
    let mut env = BuildEnv::new(Some(&base), &p.scope);
    let ex = Expander::new('\\');
    let df = parse("FROM golang AS b\nARG GOPROXY\nENV CGO_ENABLED=0\n", "D").unwrap();
    for i in &df.stages[0].instructions {
        env.expand_instruction(&i.node, &ex).unwrap();
    }
    assert_eq!(
        env.run_env(),
        [
            "PATH=/usr/local/go/bin:/usr/bin",
            "CGO_ENABLED=0",
            "GOPROXY=https://proxy"
        ]
    );
    assert_eq!(
        env.config_env(),
        ["PATH=/usr/local/go/bin:/usr/bin", "CGO_ENABLED=0"]
    );
}
