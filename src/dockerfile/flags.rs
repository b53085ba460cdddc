//! Splitting a logical line into keyword, `--flags` and arguments, and checking the flags against
//! what each instruction accepts, with BuildKit's rules: flags come first, each `--name` or
//! `--name=value`, quotes and `\` work inside them, `--` ends them; a boolean flag takes `true` or
//! `false`; only list flags (`--mount`, `--exclude`) may repeat.

use std::collections::BTreeMap;

/// A logical line split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLine {
    /// The keyword as written.
    pub keyword: String,
    /// The `--flag[=value]` words, quotes and escapes removed.
    pub flags: Vec<String>,
    /// The rest of the line, trimmed.
    pub args: String,
}

/// Splits a logical line like BuildKit's `splitCommand`.
pub fn split_line(line: &str) -> SplitLine {
    let line = line.trim();
    let (keyword, rest) = match line.find(is_token_space) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_token_space)),
        None => (line, ""),
    };
    let (args, flags) = extract_flags(rest);
    SplitLine {
        keyword: keyword.to_string(),
        flags,
        args: args.trim().to_string(),
    }
}

fn is_token_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Takes the leading `--flag` words off `line`; returns the rest of the line and the flags.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    loop {
        let Some(&(pos, ch)) = chars.get(i) else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return ("", words);
        };
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                let next_is_dash = chars.get(i + 1).is_some_and(|&(_, c)| c == '-');
                if ch != '-' || !next_is_dash {
                    return (&line[pos..], words);
                }
                phase = Phase::Word;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    if word == "--" {
                        return (&line[pos..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    i += 1;
                    continue;
                }
                if ch == '\\' {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    i += 1;
                    word.push(chars[i].1);
                } else {
                    word.push(ch);
                }
                i += 1;
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                if ch == '\\' {
                    if i + 1 == chars.len() {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    i += 1;
                    word.push(chars[i].1);
                } else {
                    word.push(ch);
                }
                i += 1;
            }
        }
    }
}

/// The kinds of flag an instruction accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    String,
    /// Repeatable.
    Strings,
}

/// The parsed flags of one instruction.
#[derive(Debug, Default)]
pub struct FlagValues {
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
}

impl FlagValues {
    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }

    pub fn bool_opt(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }

    pub fn string(&mut self, name: &str) -> Option<String> {
        self.strings.remove(name)
    }

    pub fn list(&mut self, name: &str) -> Vec<String> {
        self.lists.remove(name).unwrap_or_default()
    }
}

/// A flag problem: the message and the flag word it is about.
pub type FlagError = (String, String);

/// Checks `flags` against `accepted` and returns their values.
pub fn parse_flags(
    flags: &[String],
    accepted: &[(&'static str, FlagKind)],
) -> Result<FlagValues, FlagError> {
    let mut values = FlagValues::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for word in flags {
        let Some(body) = word.strip_prefix("--") else {
            return Err((format!("flag should start with --: {word}"), word.clone()));
        };
        if body.is_empty() {
            break;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(name, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
            let hint = if accepted.is_empty() {
                "this instruction takes no flags".to_string()
            } else {
                let names: Vec<String> = accepted.iter().map(|(n, _)| format!("--{n}")).collect();
                format!("expected one of {}", names.join(", "))
            };
            return Err((format!("unknown flag --{name}\nhint: {hint}"), word.clone()));
        };
        if kind != FlagKind::Strings && seen.contains(&name) {
            return Err((format!("duplicate flag --{name}"), word.clone()));
        }
        seen.push(name);
        let missing = || (format!("missing a value on flag --{name}"), word.clone());
        match kind {
            FlagKind::Bool => {
                let v = match value.map(str::to_ascii_lowercase).as_deref() {
                    None => true,
                    Some("true") => true,
                    Some("false") => false,
                    Some("") => return Err(missing()),
                    Some(_) => {
                        return Err((
                            format!(
                                "expecting boolean value for flag --{name}, not: {}",
                                value.unwrap_or_default()
                            ),
                            word.clone(),
                        ));
                    }
                };
                values.bools.insert(name, v);
            }
            FlagKind::String => {
                values
                    .strings
                    .insert(name, value.ok_or_else(missing)?.to_string());
            }
            FlagKind::Strings => {
                values
                    .lists
                    .entry(name)
                    .or_default()
                    .push(value.ok_or_else(missing)?.to_string());
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_flags_apart() {
        let s = split_line("  copy --from=build --chown=\"a b\" --link  src dst ");
        assert_eq!(s.keyword, "copy");
        assert_eq!(s.flags, ["--from=build", "--chown=a b", "--link"]);
        assert_eq!(s.args, "src dst");

        let s = split_line("RUN -- --not-a-flag");
        assert!(s.flags.is_empty());
        assert_eq!(s.args, "--not-a-flag");

        let s = split_line("RUN -x");
        assert!(s.flags.is_empty());
        assert_eq!(s.args, "-x");

        let s = split_line("FROM");
        assert_eq!((s.keyword.as_str(), s.args.as_str()), ("FROM", ""));
    }

    #[test]
    fn flags_follow_bflag_rules() {
        let accepted = [
            ("link", FlagKind::Bool),
            ("from", FlagKind::String),
            ("exclude", FlagKind::Strings),
        ];
        let flags: Vec<String> = ["--link=FALSE", "--from=a", "--exclude=x", "--exclude=y"]
            .map(String::from)
            .to_vec();
        let mut v = parse_flags(&flags, &accepted).unwrap();
        assert!(!v.bool("link"));
        assert_eq!(v.string("from").as_deref(), Some("a"));
        assert_eq!(v.list("exclude"), ["x", "y"]);

        let err = |f: &[&str]| {
            let flags: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            parse_flags(&flags, &accepted).unwrap_err().0
        };
        assert!(err(&["--nope"]).starts_with("unknown flag --nope"));
        assert!(err(&["--from=a", "--from=b"]).starts_with("duplicate flag --from"));
        assert!(err(&["--from"]).starts_with("missing a value on flag --from"));
        assert!(err(&["--link="]).starts_with("missing a value on flag --link"));
        assert!(err(&["--link=yes"]).starts_with("expecting boolean value"));
    }
}
