//! One row per expansion rule; the expectations are BuildKit's (its shell lexer tests and docs).

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const BASE: &[(&str, &str)] = &[
    ("PWD", "/home"),
    ("SHELL", "bash"),
    ("KOREAN", "한국어"),
    ("NULL", ""),
    ("FOO", "xxyy"),
];

#[test]
fn expansion_rules() {
    // (rule, input, expected text)
    let cases: &[(&str, &str, &str)] = &[
        ("plain text", "hello", "hello"),
        ("$VAR", "$PWD", "/home"),
        ("${VAR}", "${PWD}", "/home"),
        ("$VAR inside text", "a$SHELL.b", "abash.b"),
        ("unicode value", "$KOREAN", "한국어"),
        ("unset is empty", "x${NOPE}y", "xy"),
        ("lone dollar", "$", "$"),
        ("dollar before non-name", "$.x", "$.x"),
        ("digit name", "$1abc", "abc"),
        ("special param", "$$x", "x"),
        ("${VAR:-w} set", "${PWD:-w}", "/home"),
        ("${VAR:-w} empty", "${NULL:-w}", "w"),
        ("${VAR:-w} unset", "${NOPE:-w}", "w"),
        ("${VAR-w} empty", "${NULL-w}", ""),
        ("${VAR-w} unset", "${NOPE-w}", "w"),
        ("${VAR:+w} set", "${PWD:+w}", "w"),
        ("${VAR:+w} empty", "${NULL:+w}", ""),
        ("${VAR+w} empty", "${NULL+w}", "w"),
        ("${VAR+w} unset", "${NOPE+w}", ""),
        ("${VAR:?msg} set", "${PWD:?msg}", "/home"),
        ("${VAR?msg} empty", "${NULL?msg}", ""),
        ("nested default", "${NOPE:-$SHELL}", "bash"),
        ("default with quotes", "${NOPE:-'a b'}", "a b"),
        ("${VAR#p} shortest prefix", "${FOO#*x}", "xyy"),
        ("${VAR##p} longest prefix", "${FOO##*x}", "yy"),
        ("${VAR%p} shortest suffix", "${FOO%y*}", "xxy"),
        ("${VAR%%p} longest suffix", "${FOO%%y*}", "xx"),
        ("${VAR#p} no match", "${FOO#z}", "xxyy"),
        ("${VAR#} empty pattern", "${FOO#}", "xxyy"),
        ("${VAR#*} shortest", "${FOO#*}", "xxyy"),
        ("${VAR#?\\?}", "${FOO#x?}", "yy"),
        (
            "${VAR%x} on other text",
            "${NOPE:-.}${FOO%x}${NOPE:-.}",
            ".xxyy.",
        ),
        ("${VAR/p/r} first", "${FOO/y/z}", "xxzy"),
        ("${VAR//p/r} all", "${FOO//y/z}", "xxzz"),
        ("${VAR/p/r} wildcard", "${FOO/x*/z}", "z"),
        ("${VAR/p/r} empty pattern", "${FOO/$NULL/ww}", "wwxxyy"),
        ("${VAR///} empty all", "${FOO///}", "xxyy"),
        ("${VAR/p/r} escaped slash", "${PWD//\\//\\/}", "\\/home"),
        ("single quotes are literal", "'$PWD'", "$PWD"),
        ("double quotes expand", "\"$PWD x\"", "/home x"),
        ("escape outside quotes", "\\$PWD", "$PWD"),
        ("escape a quote", "\\\"a\\\"", "\"a\""),
        ("escape in double quotes", "\"\\$PWD\\\"\"", "$PWD\""),
        ("other escape kept in double quotes", "\"\\a\"", "\\a"),
        ("trailing escape dropped", "abc\\", "abc"),
        ("quotes join words", "a'b c'd", "ab cd"),
    ];
    let ex = Expander::new('\\');
    let env = env(BASE);
    for (rule, input, want) in cases {
        match ex.word(input, &env) {
            Ok(got) => assert_eq!(&got, want, "rule {rule:?}: {input:?}"),
            Err(err) => panic!("rule {rule:?}: {input:?} failed: {err}"),
        }
    }
}

#[test]
fn expansion_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "${VAR:?msg} unset",
            "${NOPE:?must be set}",
            "NOPE: must be set",
        ),
        (
            "${VAR:?msg} empty",
            "${NULL:?must not be empty}",
            "NULL: must not be empty",
        ),
        (
            "${VAR:?} default text",
            "${NOPE:?}",
            "NOPE: is not allowed to be unset",
        ),
        (
            "${VAR:?} empty text",
            "${NULL:?}",
            "NULL: is not allowed to be empty",
        ),
        ("${VAR?msg} unset", "${NOPE?gone$SHELL}", "NOPE: gonebash"),
        ("missing brace", "${PWD", "syntax error: missing '}'"),
        (
            "missing brace after modifier",
            "${PWD:-x",
            "syntax error: missing '}'",
        ),
        ("lone ${", "${", "syntax error: missing '}'"),
        ("empty ${}", "${}", "syntax error: bad substitution"),
        ("${:x}", "${:x}", "syntax error: bad substitution"),
        (
            "unsupported =",
            "${FOO=aaa}",
            "unsupported modifier (=) in substitution",
        ),
        (
            "unsupported :x",
            "${FOO:x}",
            "unsupported modifier (:x) in substitution",
        ),
        (
            "missing slash",
            "${FOO//ww}",
            "syntax error: missing '/' in ${}",
        ),
        ("unterminated single", "'abc", "single-quote"),
        ("unterminated double", "\"abc", "double-quote"),
        ("bad pattern escape", "${FOO#\\x}", "invalid escape '\\x'"),
    ];
    let ex = Expander::new('\\');
    let env = env(BASE);
    for (rule, input, want) in cases {
        match ex.word(input, &env) {
            Ok(got) => panic!("rule {rule:?}: {input:?} should fail, gave {got:?}"),
            Err(err) => assert!(
                err.to_string().contains(want),
                "rule {rule:?}: {input:?}: {err} does not contain {want:?}"
            ),
        }
    }
}

#[test]
fn patterns_escape_regex_characters_and_stars() {
    let ex = Expander::new('\\');
    let e = env(&[
        ("FOO", "()[]{}^$.*?|\\x"),
        ("STARS", "a***yy*"),
        ("X", "xx**"),
    ]);
    assert_eq!(ex.word("${FOO#()[]{\\}^$.\\*\\?|\\\\}", &e).unwrap(), "x");
    assert_eq!(ex.word("${X%%\\**}", &e).unwrap(), "xx");
    assert_eq!(ex.word("${STARS%%\\**\\*}", &e).unwrap(), "a");
    let e = env(&[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")]);
    assert_eq!(
        ex.word("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", &e).unwrap(),
        "/foo.*/*.txt - /foo..*.txt"
    );
    let e = env(&[("FOO", "/a/foo/b/c.txt"), ("N", "/?/"), ("R", "/")]);
    assert_eq!(
        ex.word("${FOO/$N/$R} - ${FOO//$N/$R}", &e).unwrap(),
        "/foo/b/c.txt - /foo/c.txt"
    );
}

#[test]
fn words_split_on_unquoted_whitespace_only() {
    let ex = Expander::new('\\');
    let e = env(&[("A", "x y"), ("EMPTY", "")]);
    let cases: &[(&str, &[&str])] = &[
        ("a b  c", &["a", "b", "c"]),
        ("$A", &["x", "y"]),
        ("\"$A\"", &["x y"]),
        ("'a b' c", &["a b", "c"]),
        ("a\\ b", &["a b"]),
        ("\"\" x", &["x"]),
        ("pre$A", &["prex", "y"]),
        ("$EMPTY", &[]),
        ("cat <<  EOF x", &["cat", "<<  EOF", "x"]),
        ("a < b", &["a", "<", "b"]),
    ];
    for (input, want) in cases {
        assert_eq!(&ex.words(input, &e).unwrap(), want, "{input:?}");
    }
}

#[test]
fn unknown_variables_keep_their_text() {
    let ex = Expander::new('\\');
    let cases: &[(&str, &str)] = &[
        ("$HOME/bin", "$HOME/bin"),
        ("${HOME}/bin", "${HOME}/bin"),
        ("${GOPATH:-/go}/src", "${GOPATH:-/go}/src"),
        ("${V#*.}", "${V#*.}"),
        ("${V/a/b}", "${V/a/b}"),
        ("${V:?required}", "${V:?required}"),
        ("\"$HOME\"", "$HOME"),
    ];
    for (input, want) in cases {
        let out = ex.expand(input, &UnknownEnv).unwrap();
        assert_eq!(&out.text, want, "{input:?}");
        assert!(
            !out.unknown.is_empty(),
            "{input:?} should report unknown names"
        );
    }
}

#[test]
fn lookups_are_reported() {
    let ex = Expander::new('\\');
    let out = ex
        .expand("${FOO-a} ${NULL:-b} ${BAZ:-c}", &env(BASE))
        .unwrap();
    assert_eq!(out.text, "xxyy b c");
    assert_eq!(out.used.iter().collect::<Vec<_>>(), ["FOO", "NULL"]);
    assert_eq!(out.unset.iter().collect::<Vec<_>>(), ["BAZ"]);
}

#[test]
fn backtick_escape() {
    let ex = Expander::new('`');
    let e = env(BASE);
    assert_eq!(ex.word("`$PWD", &e).unwrap(), "$PWD");
    assert_eq!(ex.word("c:\\dir\\$SHELL", &e).unwrap(), "c:\\dir\\bash");
    assert_eq!(ex.word("\"`\"q`\"\"", &e).unwrap(), "\"q\"");
}

#[test]
fn raw_modes_keep_quotes_and_escapes() {
    let e = env(BASE);
    let raw = Expander::new('\\').raw_quotes(true).raw_escapes(true);
    assert_eq!(
        raw.word("'a' \"$SHELL\" \\x", &e).unwrap(),
        "'a' \"bash\" \\x"
    );
    let skip = Expander::new('\\').skip_quotes(true);
    assert_eq!(
        skip.word("echo '$SHELL' \"x\"", &e).unwrap(),
        "echo 'bash' \"x\""
    );
}

#[test]
fn list_env_takes_the_last_value() {
    let list = vec![
        ("A".to_string(), "1".to_string()),
        ("A".to_string(), "2".to_string()),
    ];
    let ex = Expander::new('\\');
    assert_eq!(ex.word("$A", &list).unwrap(), "2");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
    let err = Expander::new('\\').word(&deep, &UnknownEnv).unwrap_err();
    assert_eq!(err, ExpandError::TooDeep);
    let ok = format!("{}x{}", "${A:-".repeat(20), "}".repeat(20));
    assert_eq!(
        Expander::new('\\').word(&ok, &BTreeMap::new()).unwrap(),
        "x"
    );
}

#[test]
fn patterns_on_long_values() {
    let value = "ab".repeat(20_000);
    let e = env(&[("V", value.as_str())]);
    let ex = Expander::new('\\');
    assert_eq!(ex.word("${V//a*b/x}", &e).unwrap(), "x");
    assert_eq!(ex.word("${V%%b*}", &e).unwrap(), "a");
    assert_eq!(ex.word("${V#*b}", &e).unwrap().len(), value.len() - 2);
}
