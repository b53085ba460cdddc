//! BuildKit's line parsers: how the arguments of an instruction are split before the instruction
//! itself looks at them (JSON arrays, quote-aware words for ENV, LABEL and ARG, whitespace-separated
//! words), and Go durations as HEALTHCHECK writes them.

use std::time::Duration;

/// What BuildKit's `[\t\v\f\r ]+` splits on.
pub const TOKEN_SPACE: [char; 5] = [' ', '\t', '\u{b}', '\u{c}', '\r'];

/// True when the arguments are a JSON array (of strings or not): exec form.
pub fn is_json_array(args: &str) -> bool {
    matches!(
        parse_json(args),
        JsonArgs::Strings(_) | JsonArgs::NotStrings
    )
}

/// What a possible JSON array turned out to be.
pub enum JsonArgs {
    Strings(Vec<String>),
    NotStrings,
    NotJson,
}

/// BuildKit's `parseJSON`: a JSON array of strings, a JSON array of something else (an error for
/// the caller), or not JSON at all (shell form).
pub fn parse_json(args: &str) -> JsonArgs {
    let args = args.trim_start();
    if !args.starts_with('[') {
        return JsonArgs::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(args) {
        Err(_) => JsonArgs::NotJson,
        Ok(values) => values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map_or(JsonArgs::NotStrings, JsonArgs::Strings),
    }
}

/// Words of ENV, LABEL and ARG: split on whitespace outside quotes, quotes and escapes kept.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None => {
                if ch.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    in_word = false;
                    continue;
                }
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    match chars.next() {
                        None => continue,
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    match chars.next() {
                        None => {
                            quote = None;
                            continue;
                        }
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Words separated by BuildKit's token whitespace, quotes not considered (COPY, EXPOSE, FROM).
pub fn split_whitespace(rest: &str) -> Vec<String> {
    rest.split(TOKEN_SPACE)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parses a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`); negative values are rejected.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 30s or 1m30s, got {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += value * unit;
        rest = &rest[u..];
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words("A=\"x y\" B='$z' C=a\\ b", '\\'),
            ["A=\"x y\"", "B='$z'", "C=a\\ b"]
        );
        assert_eq!(parse_words("  \"\"  ", '\\'), ["\"\""]);
        assert_eq!(parse_words("", '\\'), Vec::<String>::new());
    }

    #[test]
    fn json_arrays_of_strings_only() {
        assert!(matches!(parse_json(" [\"a\", \"b\"] "), JsonArgs::Strings(v) if v == ["a", "b"]));
        assert!(matches!(parse_json("[\"a\", 1]"), JsonArgs::NotStrings));
        assert!(matches!(parse_json("[a]"), JsonArgs::NotJson));
        assert!(matches!(parse_json("echo [a]"), JsonArgs::NotJson));
    }

    #[test]
    fn go_durations() {
        let cases = [
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("1.5h", 5_400_000),
            ("500ms", 500),
        ];
        for (input, millis) in cases {
            assert_eq!(
                parse_go_duration(input).unwrap().as_millis(),
                millis,
                "{input}"
            );
        }
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "-1s", "1x", "s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
