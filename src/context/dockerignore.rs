//! `.dockerignore`: reading the file and matching context paths against it exactly as Docker does
//! (BuildKit's `dockerignore.ReadAll` and moby's `patternmatcher`).
//!
//! The rules: `#` lines are comments, lines are trimmed, patterns are cleaned like Go's
//! `filepath.Clean` and made relative to the context root; `*` and `?` never cross `/`, `**`
//! crosses any number of directories, `[...]` is a class and `\` escapes; a pattern that matches a
//! parent directory matches everything below it; the last matching pattern wins and `!` makes it
//! an exception. Brace alternation does not exist in Docker's syntax, so `{` is literal.

use regex::Regex;

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    exception: bool,
    regex: Regex,
}

/// The patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line}: invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub file: String,
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<DockerIgnore, PatternError> {
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let raw = if index == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            let err = |reason: &str| PatternError {
                file: file.to_string(),
                line: index + 1,
                pattern: raw.trim().to_string(),
                reason: reason.to_string(),
            };
            if pattern.is_empty() {
                return Err(err("an exception needs a pattern after '!'"));
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let regex = compile(&cleaned).map_err(|reason| err(&reason))?;
            patterns.push(Pattern {
                text: cleaned,
                exception,
                regex,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is an exception, so an excluded directory may still hold included
    /// files and must be walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether a context path (relative, `/`-separated, no leading `/`) is excluded
    /// (patternmatcher's `MatchesOrParentMatches`).
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path.trim_start_matches('/'));
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could flip the current answer is worth evaluating.
            if pattern.exception != excluded {
                continue;
            }
            let mut hit = pattern.regex.is_match(&path);
            if !hit {
                for i in 1..=parents.len() {
                    if pattern.regex.is_match(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// The patterns as written after cleaning, `!` kept: for reports and cache preimages.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exception {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }
}

/// Translates a cleaned pattern into an anchored regex, following patternmatcher's `compile`.
fn compile(pattern: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if !in_class => {
                if chars.get(i) == Some(&'*') {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        re.push_str(".*");
                    } else {
                        re.push_str("(.*/)?");
                    }
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' if !in_class => re.push_str("[^/]"),
            '\\' => match chars.get(i) {
                Some(next) => {
                    re.push_str(&regex::escape(&next.to_string()));
                    i += 1;
                }
                None => re.push_str(r"\\"),
            },
            '[' if !in_class => {
                in_class = true;
                re.push('[');
                // Go's negation is `^`; keep it, and make a leading `]` literal as Go does not.
                if chars.get(i) == Some(&'^') {
                    re.push('^');
                    i += 1;
                }
            }
            ']' if in_class => {
                in_class = false;
                re.push(']');
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' | '^' | '#' | '&' | '~' | '-'
                if !in_class =>
            {
                re.push('\\');
                re.push(ch);
            }
            '[' | '&' | '~' => {
                re.push('\\');
                re.push(ch);
            }
            _ => re.push(ch),
        }
    }
    if in_class {
        return Err("unterminated character class '['".into());
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("syntax error in pattern: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, ".dockerignore").unwrap()
    }

    #[test]
    fn paths_clean_like_go() {
        for (input, want) in [
            ("a//b/./c/", "a/b/c"),
            ("/a/../b", "/b"),
            ("../a", "../a"),
            ("./", "."),
            ("/../x", "/x"),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn patterns_match_like_docker() {
        // (dockerignore text, path, excluded?)
        let cases: &[(&str, &str, bool)] = &[
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("**/*.md", "docs/a/README.md", true),
            ("**/*.md", "README.md", true),
            ("docs", "docs/a/b.txt", true),
            ("docs/", "docs/a/b.txt", true),
            ("/docs", "docs/x", true),
            ("./docs", "docs/x", true),
            ("doc?", "docs", true),
            ("doc?", "doc/s", false),
            (
                "node_modules\n!node_modules/keep.js",
                "node_modules/keep.js",
                false,
            ),
            (
                "node_modules\n!node_modules/keep.js",
                "node_modules/drop.js",
                true,
            ),
            ("!a.txt\n*.txt", "a.txt", true),
            ("*.txt\n!a.txt", "a.txt", false),
            ("a/**", "a/b/c", true),
            ("a/**", "a", false),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("[a-c].go", "b.go", true),
            ("[^a-c].go", "b.go", false),
            ("[^a-c].go", "d.go", true),
            ("\\*.go", "*.go", true),
            ("\\*.go", "x.go", false),
            ("{a,b}", "{a,b}", true),
            ("{a,b}", "a", false),
            ("a.b", "axb", false),
            ("# comment\n  spaced.txt  ", "spaced.txt", true),
            ("\u{feff}bom.txt", "bom.txt", true),
            ("**", "anything/at/all", true),
            ("*", "top", true),
            ("*", "dir/nested", true),
            ("*\n!keep/x", "keep/x", false),
        ];
        for (text, path, want) in cases {
            assert_eq!(ignore(text).is_excluded(path), *want, "{text:?} on {path}");
        }
    }

    #[test]
    fn bad_patterns_name_the_line() {
        let err = DockerIgnore::parse("ok\n!\n", "ctx/.dockerignore").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string().starts_with("ctx/.dockerignore: line 2"),
            "{err}"
        );
        let err = DockerIgnore::parse("[abc", ".dockerignore").unwrap_err();
        assert!(err.reason.contains("unterminated"), "{err}");
    }
}
