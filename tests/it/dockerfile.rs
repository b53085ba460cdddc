//! The Dockerfile front end on input nobody wrote by hand: whatever the bytes, parsing (and
//! planning what parses) returns a value or an error, never a panic.

use std::path::Path;

use kbuild::dockerfile::{parse, parse_bytes};
use kbuild::plan::{Plan, PlanOptions};
use proptest::prelude::*;

fn options() -> PlanOptions {
    PlanOptions {
        build_args: [("GOPROXY".to_string(), "https://proxy".to_string())].into(),
        target: None,
        platform: "linux/arm/v7".parse().unwrap(),
        build_platform: "linux/amd64".parse().unwrap(),
    }
}

fn fixture_sources() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("Dockerfile")).ok())
        .collect();
    out.sort();
    out
}

/// Pieces Dockerfiles are made of, so generated input reaches deep into the parser.
const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ARG ",
    "ENV ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "CMD ",
    "SHELL ",
    "LABEL ",
    "EXPOSE ",
    "WORKDIR ",
    "USER ",
    "VOLUME ",
    "STOPSIGNAL ",
    "AS ",
    "a",
    "b",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\\\n",
    "`\n",
    "# escape=`\n",
    "# syntax=x\n",
    "#",
    "<<EOF",
    "<<-'E'",
    "3<<A",
    "EOF\n",
    "A\n",
    "${",
    "}",
    "$",
    ":-",
    ":?",
    "#",
    "%%",
    "//",
    "\"",
    "'",
    "[\"",
    "\",",
    "]",
    "--mount=",
    "type=cache,",
    "from=",
    "--from=",
    "--chown=",
    "--link",
    "--platform=",
    "=",
    "0",
    "1",
    "-",
    "\u{feff}",
    "é",
    "\\",
];

fn mutate(source: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = source.as_bytes().to_vec();
    for &(pos, byte, op) in edits {
        let at = if bytes.is_empty() {
            0
        } else {
            pos % (bytes.len() + 1)
        };
        match op % 3 {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ if at < bytes.len() => bytes[at] = byte,
            _ => bytes.push(byte),
        }
    }
    bytes
}

proptest! {
    // 256 cases keep the suite fast; PROPTEST_CASES=100000 soaks locally.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_bytes(&bytes, "Dockerfile");
    }

    #[test]
    fn parser_and_plan_never_panic_on_token_soup(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80)
    ) {
        let source: String = tokens.concat();
        if let Ok(df) = parse(&source, "Dockerfile") {
            let _ = Plan::new(&df, &options());
        }
    }

    #[test]
    fn parser_and_plan_never_panic_on_mutated_dockerfiles(
        case in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12)
    ) {
        let sources = fixture_sources();
        let source = case.get(&sources);
        let bytes = mutate(source, &edits);
        if let Ok(df) = parse_bytes(&bytes, "Dockerfile") {
            let _ = Plan::new(&df, &options());
        }
    }
}

/// The mutation test has valid Dockerfiles to start from.
#[test]
fn mutation_seeds_exist_and_plan() {
    let sources = fixture_sources();
    assert!(sources.len() >= 6, "fixtures missing");
    let planned = sources
        .iter()
        .filter(|s| parse(s, "Dockerfile").is_ok_and(|df| Plan::new(&df, &options()).is_ok()))
        .count();
    assert!(planned >= 6, "most seeds should be valid Dockerfiles");
}
