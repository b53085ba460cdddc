//! Physical lines to logical lines, as BuildKit's parser reads a Dockerfile: parser directives at
//! the top, comments, line continuations with the escape character (comment and blank lines inside
//! a continuation are skipped), and heredoc bodies read after the line that names them.
//!
//! The lexer does not know instructions; the parser asks it for the next logical line and, when
//! that line's instruction may carry heredocs, for their bodies.

use serde::Serialize;

use super::error::{ParseErrorKind, Warning};
use super::expand::{Expander, UnknownEnv};
use super::instructions::Heredoc;

/// The parser directives found at the top of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=`: the frontend image BuildKit would use; kbuild records it and parses itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syntax: Option<String>,
    /// `# escape=`: `\` (the default) or `` ` ``.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escape: Option<char>,
    /// `# check=`: BuildKit's lint configuration, recorded as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// One instruction's text with its continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    pub text: String,
    /// 1-based first and last physical lines.
    pub start: usize,
    pub end: usize,
}

/// A lexing error and the line it happened on.
pub type LexError = (usize, usize, ParseErrorKind);

/// Reads logical lines out of a Dockerfile's text.
pub struct Lexer<'a> {
    lines: Vec<&'a str>,
    next: usize,
    escape: char,
    directives: Directives,
    directives_done: bool,
    pub warnings: Vec<Warning>,
}

impl<'a> Lexer<'a> {
    pub fn new(source: &'a str) -> Lexer<'a> {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        Lexer {
            lines: source.split_inclusive('\n').collect(),
            next: 0,
            escape: '\\',
            directives: Directives::default(),
            directives_done: false,
            warnings: Vec::new(),
        }
    }

    pub fn escape(&self) -> char {
        self.escape
    }

    pub fn directives(&self) -> &Directives {
        &self.directives
    }

    /// The physical line `n` (1-based), without its line ending.
    pub fn physical(&self, n: usize) -> &'a str {
        self.lines
            .get(n.wrapping_sub(1))
            .map(|l| trim_newline(l))
            .unwrap_or("")
    }

    /// The next logical line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<LogicalLine>, LexError> {
        while self.next < self.lines.len() {
            let raw = self.lines[self.next];
            self.next += 1;
            let line_no = self.next;
            let token = trim_newline(raw).trim_start();
            self.directive(token, line_no)?;
            let token = if is_comment(raw) { "" } else { token };
            let (first, mut done) = self.trim_continuation(token);
            if done && first.is_empty() {
                continue;
            }
            let mut text = first.to_string();
            let mut empty_continuation = false;
            while !done && self.next < self.lines.len() {
                let raw = self.lines[self.next];
                self.next += 1;
                if is_comment(raw) {
                    continue;
                }
                let token = trim_newline(raw);
                if token.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, end) = self.trim_continuation(token);
                text.push_str(part);
                done = end;
            }
            if empty_continuation {
                self.warnings.push(Warning {
                    line: self.next,
                    message: "empty continuation line (empty continuation lines will become \
                              errors in a future release)"
                        .into(),
                });
            }
            return Ok(Some(LogicalLine {
                text,
                start: line_no,
                end: self.next,
            }));
        }
        Ok(None)
    }

    /// Reads the body of `heredoc` from the lines that follow, up to its terminator line.
    pub fn read_heredoc(&mut self, heredoc: &mut Heredoc, start: usize) -> Result<(), LexError> {
        while self.next < self.lines.len() {
            let raw = self.lines[self.next];
            self.next += 1;
            let mut candidate = trim_newline(raw);
            if heredoc.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == heredoc.name {
                return Ok(());
            }
            heredoc.content.push_str(raw);
        }
        Err((
            start,
            1,
            ParseErrorKind::UnterminatedHeredoc {
                name: heredoc.name.clone(),
            },
        ))
    }

    /// The last physical line read so far.
    pub fn current_line(&self) -> usize {
        self.next
    }

    fn directive(&mut self, token: &str, line_no: usize) -> Result<(), LexError> {
        if self.directives_done {
            return Ok(());
        }
        let Some((key, value)) = parse_directive(token) else {
            self.directives_done = true;
            return Ok(());
        };
        let err = |message: String| Err((line_no, 1, ParseErrorKind::Directive { message }));
        let key = key.to_ascii_lowercase();
        let seen = match key.as_str() {
            "syntax" => self.directives.syntax.replace(value.to_string()).is_some(),
            "check" => self.directives.check.replace(value.to_string()).is_some(),
            "escape" => {
                let token = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return err(format!(
                            "invalid escape token '{value}' does not match ` or \\\nhint: write \
                             # escape=` or # escape=\\"
                        ));
                    }
                };
                self.escape = token;
                self.directives.escape.replace(token).is_some()
            }
            _ => {
                self.directives_done = true;
                return Ok(());
            }
        };
        if seen {
            return err(format!("only one {key} parser directive can be used"));
        }
        Ok(())
    }

    /// Removes a trailing continuation escape; returns the text and whether the line ends here.
    fn trim_continuation<'l>(&self, line: &'l str) -> (&'l str, bool) {
        let trimmed = line.trim_end_matches([' ', '\t']);
        let Some(before) = trimmed.strip_suffix(self.escape) else {
            return (line, true);
        };
        // An escaped escape character (`\\` at the end) does not continue the line.
        if before.is_empty() || !before.ends_with(self.escape) {
            (before, false)
        } else {
            (line, true)
        }
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// `# key = value` with a key of letters and digits starting with a letter.
fn parse_directive(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map_or(rest.len(), |(i, _)| i);
    let key = &rest[..key_len];
    if !key.chars().next()?.is_ascii_alphabetic() {
        return None;
    }
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

/// The heredocs a logical line names (`<<EOF`, `<<-EOF`, `<<'EOF'`, `3<<EOF`), in order.
pub fn heredocs_in_line(line: &str) -> Vec<Heredoc> {
    let lexer = Expander::new('\\').raw_quotes(true).raw_escapes(true);
    let Ok(words) = lexer.words(line, &UnknownEnv) else {
        return Vec::new();
    };
    words.iter().filter_map(|w| parse_heredoc(w)).collect()
}

/// Parses one word as a heredoc marker: `^(\d*)<<(-?)\s*([^<]*)$` with a single-word delimiter.
pub fn parse_heredoc(word: &str) -> Option<Heredoc> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let words = Expander::new('\\').words(rest, &UnknownEnv).ok()?;
    let [name] = words.as_slice() else {
        return None;
    };
    let raw = Expander::new('\\')
        .raw_quotes(true)
        .words(rest, &UnknownEnv)
        .ok()?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '"' || *c == '\'').count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Some(Heredoc {
        name: name.clone(),
        fd: word[..digits].parse().ok(),
        expand,
        chomp,
        content: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(src: &str) -> Vec<(String, usize, usize)> {
        let mut lexer = Lexer::new(src);
        let mut out = Vec::new();
        while let Some(l) = lexer.next_line().unwrap() {
            out.push((l.text, l.start, l.end));
        }
        out
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let src = "FROM a\n\nRUN echo \\\n  # a comment\n\n  hello \\\n  world\n# end\nCMD x\n";
        assert_eq!(
            lines(src),
            vec![
                ("FROM a".to_string(), 1, 1),
                ("RUN echo   hello   world".to_string(), 3, 7),
                ("CMD x".to_string(), 9, 9),
            ]
        );
    }

    #[test]
    fn escaped_escape_does_not_continue() {
        assert_eq!(
            lines("RUN echo \\\\\nCMD x"),
            vec![
                ("RUN echo \\\\".to_string(), 1, 1),
                ("CMD x".to_string(), 2, 2)
            ]
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let mut lexer = Lexer::new(
            "# syntax=docker/dockerfile:1\n#escape=`\n# check=skip=all\nFROM a `\n  AS b\n# escape=\\\n",
        );
        let first = lexer.next_line().unwrap().unwrap();
        assert_eq!(first.text, "FROM a   AS b");
        assert_eq!(lexer.escape(), '`');
        assert_eq!(
            lexer.directives().syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        assert_eq!(lexer.directives().check.as_deref(), Some("skip=all"));
        assert!(lexer.next_line().unwrap().is_none());

        let mut late = Lexer::new("# hello\n# escape=`\nFROM a\n");
        late.next_line().unwrap();
        assert_eq!(late.escape(), '\\', "a comment ends the directives");

        let mut dup = Lexer::new("# escape=`\n# escape=\\\nFROM a\n");
        let err = dup.next_line().unwrap_err();
        assert_eq!(err.0, 2);
        let mut bad = Lexer::new("# escape=x\nFROM a\n");
        assert!(bad.next_line().is_err());
    }

    #[test]
    fn heredoc_markers() {
        let docs = heredocs_in_line("RUN 3<<A cat <<-\"B\" <<'C' <<<no '<<quoted' x<<no");
        let got: Vec<_> = docs
            .iter()
            .map(|h| (h.name.as_str(), h.fd, h.chomp, h.expand))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A", Some(3), false, true),
                ("B", None, true, false),
                ("C", None, false, false)
            ]
        );
    }

    #[test]
    fn heredoc_markers_as_buildkit_tests_them() {
        // (line, delimiter name, expand) from BuildKit's parser heredoc tests.
        let cases: &[(&str, Option<(&str, bool)>)] = &[
            ("RUN <<EMPTY", Some(("EMPTY", true))),
            ("RUN <<eo'f'", Some(("eof", false))),
            ("RUN <<eo\\'f", Some(("eo'f", true))),
            ("RUN <<'e'o\\'f", Some(("eo'f", false))),
            ("RUN <<'one two'", Some(("one two", false))),
            ("RUN <<$EOF", Some(("$EOF", true))),
            ("RUN <<  EOF", Some(("EOF", true))),
            ("RUN <<  EOF  > foo", Some(("EOF", true))),
            // The lexer keeps spaces only right after `<<`: `<<-` and `EOF` are two words.
            ("RUN <<- EOF", None),
            ("RUN << -EOF", Some(("-EOF", true))),
            ("RUN <<COMPLEX python3", Some(("COMPLEX", true))),
            ("RUN \"<<NOHEREDOC\"", None),
            ("RUN '<<EOF'", None),
            ("RUN <<<EOF", None),
            ("RUN <EOF", None),
        ];
        for (line, want) in cases {
            let got = heredocs_in_line(line)
                .first()
                .map(|h| (h.name.clone(), h.expand));
            let want = want.map(|(n, e)| (n.to_string(), e));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn heredoc_bodies_keep_line_endings() {
        let mut lexer = Lexer::new("RUN <<-EOF\n\techo hi\r\n\tEOF\nCMD x\n");
        let line = lexer.next_line().unwrap().unwrap();
        let mut doc = heredocs_in_line(&line.text).remove(0);
        lexer.read_heredoc(&mut doc, 1).unwrap();
        assert_eq!(doc.content, "\techo hi\r\n");
        assert_eq!(doc.body(), "echo hi\r\n");
        assert_eq!(lexer.next_line().unwrap().unwrap().text, "CMD x");
    }
}
