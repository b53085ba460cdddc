//! Shell-word expansion as BuildKit's Dockerfile shell lexer does it: `$VAR`, `${VAR}`, the
//! `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#p}`,
//! `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}` and `${VAR//p/r}` forms, single and double
//! quotes, and the escape character (`\` or the one `# escape=` chose).
//!
//! The same expander serves the plan (which cannot see a base image's environment) and the
//! executor (which can): an [`Env`] answers each lookup with [`Lookup::Set`], [`Lookup::Unset`] or
//! [`Lookup::Unknown`]. An unknown variable keeps its original text (`$HOME`, `${GOPATH:-/go}`)
//! instead of expanding to nothing, so the plan shows what it cannot know rather than guessing.
//!
//! Deliberately left out, as in BuildKit: command substitution, arithmetic, bracket expressions in
//! patterns, and tilde expansion. Patterns keep BuildKit's quirks: a quoted `*` in a pattern still
//! matches anything, and the replacement of `${VAR/p/r}` keeps its backslashes.

use std::collections::{BTreeMap, BTreeSet};

/// What an environment knows about one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The variable is set (possibly to the empty string).
    Set(String),
    /// The variable is known not to be set.
    Unset,
    /// Nobody can tell yet (an ENV of a base image the plan has not pulled): keep the text as is.
    Unknown,
}

/// The variables visible to an expansion.
pub trait Env {
    /// Looks one variable up by its exact (case-sensitive) name.
    fn lookup(&self, name: &str) -> Lookup;
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Lookup {
        match self.get(name) {
            Some(v) => Lookup::Set(v.clone()),
            None => Lookup::Unset,
        }
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Lookup {
        // Later entries win, as in `KEY=VALUE` lists where a key repeats.
        match self.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) => Lookup::Set(v.clone()),
            None => Lookup::Unset,
        }
    }
}

/// An environment where every variable is [`Lookup::Unknown`]: expansion keeps all `$` text.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnknownEnv;

impl Env for UnknownEnv {
    fn lookup(&self, _name: &str) -> Lookup {
        Lookup::Unknown
    }
}

/// An expansion that cannot be done, as BuildKit words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier { modifier: String },
    #[error("unexpected end of statement while looking for matching {quote}")]
    Unterminated { quote: &'static str },
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("substitutions nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// How deeply `${...}` may nest; deeper input is refused rather than allowed to exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded text, quotes removed (unless raw quotes were asked for).
    pub text: String,
    /// The text split into words on unquoted whitespace, after expansion.
    pub words: Vec<String>,
    /// Variables that were set and used.
    pub used: BTreeSet<String>,
    /// Variables that were looked up and not set.
    pub unset: BTreeSet<String>,
    /// Variables whose value is not known; their text was kept.
    pub unknown: BTreeSet<String>,
}

/// A configured shell-word expander.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expander {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_quotes: bool,
}

impl Expander {
    /// An expander using `escape` (`\` or `` ` ``) as the escape character.
    pub const fn new(escape: char) -> Expander {
        Expander {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_quotes: false,
        }
    }

    /// Keep quote characters in the output (they still group words).
    pub fn raw_quotes(mut self, on: bool) -> Expander {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output.
    pub fn raw_escapes(mut self, on: bool) -> Expander {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters (heredoc bodies of COPY and ADD).
    pub fn skip_quotes(mut self, on: bool) -> Expander {
        self.skip_quotes = on;
        self
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` and returns the text, the words and which variables it used.
    pub fn expand(&self, word: &str, env: &dyn Env) -> Result<Expanded, ExpandError> {
        let mut scanner = Scanner {
            chars: word.chars().collect(),
            pos: 0,
            env,
            opts: *self,
            raw_escapes: self.raw_escapes,
            depth: 0,
            used: BTreeSet::new(),
            unset: BTreeSet::new(),
            unknown: BTreeSet::new(),
        };
        let (text, words) = scanner.process_until(None, self.raw_escapes)?;
        Ok(Expanded {
            text,
            words,
            used: scanner.used,
            unset: scanner.unset,
            unknown: scanner.unknown,
        })
    }

    /// Expands `word` to a single string (BuildKit's `ProcessWord`).
    pub fn word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        Ok(self.expand(word, env)?.text)
    }

    /// Expands `word` and splits the result into words (BuildKit's `ProcessWords`).
    pub fn words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        Ok(self.expand(word, env)?.words)
    }
}

/// Word splitting state: unquoted whitespace from expansions separates words, quoted text never.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    opts: Expander,
    raw_escapes: bool,
    depth: usize,
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
    unknown: BTreeSet<String>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn original(&self, start: usize) -> String {
        self.chars[start..self.pos].iter().collect()
    }

    fn lookup(&mut self, name: &str) -> Lookup {
        let found = self.env.lookup(name);
        let set = match &found {
            Lookup::Set(_) => &mut self.used,
            Lookup::Unset => &mut self.unset,
            Lookup::Unknown => &mut self.unknown,
        };
        set.insert(name.to_string());
        found
    }

    /// Processes characters until `stop` (consumed) or the end of the input.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_until_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            let quote = !self.opts.skip_quotes && (ch == '\'' || ch == '"');
            if ch == '$' {
                let value = self.process_dollar()?;
                result.push_str(&value);
                words.add_string(&value);
            } else if ch == '<' {
                // As BuildKit: `<<` keeps the whitespace after it in the same word, so
                // `<<  EOF` is one heredoc marker.
                self.pos += 1;
                let mut value = String::from("<");
                if self.peek() == Some('<') {
                    self.pos += 1;
                    value.push('<');
                    while let Some(space) = self.peek().filter(|c| c.is_whitespace()) {
                        value.push(space);
                        self.pos += 1;
                    }
                }
                result.push_str(&value);
                words.add_raw_string(&value);
            } else if quote {
                let value = if ch == '\'' {
                    self.process_single_quote()?
                } else {
                    self.process_double_quote()?
                };
                result.push_str(&value);
                words.add_raw_string(&value);
            } else {
                self.pos += 1;
                if ch == self.opts.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    match self.next() {
                        None => break,
                        Some(escaped) => {
                            words.add_raw_char(escaped);
                            result.push(escaped);
                        }
                    }
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(stop) => Err(ExpandError::Unterminated {
                quote: quote_name(stop),
            }),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        self.pos += 1;
        if self.opts.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::Unterminated {
                        quote: "single-quote",
                    });
                }
                Some('\'') => {
                    if self.opts.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        self.pos += 1;
        if self.opts.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::Unterminated {
                        quote: "double-quote",
                    });
                }
                Some('"') => {
                    self.pos += 1;
                    if self.opts.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the very end is dropped; the loop then reports the
                            // missing closing quote.
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.opts.escape =>
                            {
                                self.pos += 1;
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExpandError::TooDeep);
        }
        self.depth += 1;
        let result = self.process_dollar_inner();
        self.depth -= 1;
        result
    }

    fn process_dollar_inner(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Lookup::Set(v) => v,
                Lookup::Unset => String::new(),
                Lookup::Unknown => self.original(start),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{') | Some('}') | Some(':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(first) = self.next() else {
            return Err(ExpandError::MissingBrace);
        };
        let mut modifier = first.to_string();
        match first {
            '}' => Ok(match self.lookup(&name) {
                Lookup::Set(v) => v,
                Lookup::Unset => String::new(),
                Lookup::Unknown => self.original(start),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut op = first;
                let null_is_unset = first == ':';
                if null_is_unset {
                    let Some(second) = self.next() else {
                        return Err(ExpandError::MissingBrace);
                    };
                    op = second;
                    modifier.push(second);
                }
                let raw = op == '#' || op == '%';
                let word = match self.process_until(Some('}'), raw) {
                    Ok((word, _)) => word,
                    Err(_) if self.peek().is_none() => return Err(ExpandError::MissingBrace),
                    Err(err) => return Err(err),
                };
                let value = match self.lookup(&name) {
                    Lookup::Unknown => return Ok(self.original(start)),
                    Lookup::Set(v) => Some(v),
                    Lookup::Unset => None,
                };
                let empty_or_unset = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    '-' => Ok(if empty_or_unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty_or_unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(required(&name, word, "is not allowed to be unset")),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(required(&name, word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest.to_string(), true),
                            None => (word, false),
                        };
                        let value = value.unwrap_or_default();
                        let pattern = Pattern::parse(&pattern)?;
                        Ok(if op == '#' {
                            pattern.trim_prefix(&value, greedy)
                        } else {
                            pattern.trim_suffix(&value, greedy)
                        })
                    }
                    _ => Err(ExpandError::UnsupportedModifier { modifier }),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = match self.process_until(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(_) if self.peek().is_none() => return Err(ExpandError::MissingSlash),
                    Err(err) => return Err(err),
                };
                let replacement = match self.process_until(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(_) if self.peek().is_none() => return Err(ExpandError::MissingBrace),
                    Err(err) => return Err(err),
                };
                let value = match self.lookup(&name) {
                    Lookup::Unknown => return Ok(self.original(start)),
                    Lookup::Set(v) => v,
                    Lookup::Unset => String::new(),
                };
                Ok(Pattern::parse(&pattern)?.replace(&value, &replacement, all))
            }
            _ => Err(ExpandError::UnsupportedModifier { modifier }),
        }
    }
}

fn required(name: &str, word: String, default: &str) -> ExpandError {
    ExpandError::Required {
        name: name.to_string(),
        message: if word.is_empty() {
            default.to_string()
        } else {
            word
        },
    }
}

fn quote_name(stop: char) -> &'static str {
    match stop {
        '}' => "}",
        '/' => "/",
        '\'' => "single-quote",
        _ => "double-quote",
    }
}

fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// A shell pattern of `${VAR#p}` and friends: `*`, `?` and literals; `\` escapes `*`, `?` and
/// `\`, and is dropped before `}` and `/`.
#[derive(Debug, PartialEq, Eq)]
struct Pattern(Vec<Token>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Lit(char),
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Pattern, ExpandError> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => match chars.peek().copied() {
                    Some('}') | Some('/') => {}
                    Some(c @ ('*' | '?' | '\\')) => {
                        chars.next();
                        tokens.push(Token::Lit(c));
                    }
                    other => {
                        return Err(ExpandError::InvalidPattern {
                            pattern: pattern.to_string(),
                            reason: match other {
                                Some(c) => format!("invalid escape '\\{c}'"),
                                None => "trailing escape".to_string(),
                            },
                        });
                    }
                },
                c => tokens.push(Token::Lit(c)),
            }
        }
        Ok(Pattern(tokens))
    }

    /// Every `end` for which the pattern matches `text[start..end]` exactly, in increasing order.
    /// A set-of-states walk over the pattern: linear in the text for each start.
    fn ends(tokens: &[Token], text: &[char], start: usize) -> Vec<usize> {
        let m = tokens.len();
        let close = |states: &mut Vec<bool>| {
            for i in 0..m {
                if states[i] && tokens[i] == Token::Star {
                    states[i + 1] = true;
                }
            }
        };
        let mut states = vec![false; m + 1];
        states[0] = true;
        close(&mut states);
        let mut out = Vec::new();
        if states[m] {
            out.push(start);
        }
        for (k, &c) in text[start..].iter().enumerate() {
            let mut next = vec![false; m + 1];
            for i in (0..m).filter(|&i| states[i]) {
                match tokens[i] {
                    Token::Star => next[i] = true,
                    Token::Any => next[i + 1] = true,
                    Token::Lit(l) if l == c => next[i + 1] = true,
                    Token::Lit(_) => {}
                }
            }
            close(&mut next);
            states = next;
            if states[m] {
                out.push(start + k + 1);
            }
            if !states.contains(&true) {
                break;
            }
        }
        out
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = Pattern::ends(&self.0, &chars, 0);
        let cut = if greedy { ends.last() } else { ends.first() };
        match cut {
            Some(&n) => chars[n..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        // A suffix match is a prefix match of the reversed pattern on the reversed value.
        let reversed: Vec<char> = value.chars().rev().collect();
        let tokens: Vec<Token> = self.0.iter().rev().copied().collect();
        let ends = Pattern::ends(&tokens, &reversed, 0);
        let cut = if greedy { ends.last() } else { ends.first() };
        match cut {
            Some(&n) => reversed[n..].iter().rev().collect(),
            None => value.to_string(),
        }
    }

    /// The leftmost match starting at or after `from`, longest at that position.
    fn find(&self, chars: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=chars.len()).find_map(|start| {
            Pattern::ends(&self.0, chars, start)
                .last()
                .map(|&end| (start, end))
        })
    }

    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        let mut last_match_end: Option<usize> = None;
        while pos <= chars.len() {
            let Some((start, end)) = self.find(&chars, pos) else {
                break;
            };
            // As Go's regexp: an empty match right after a previous match is skipped.
            if start == end && last_match_end == Some(start) {
                if start < chars.len() {
                    out.push(chars[start]);
                }
                pos = start + 1;
                continue;
            }
            out.extend(&chars[pos..start]);
            out.push_str(replacement);
            last_match_end = Some(end);
            if start == end {
                if start < chars.len() {
                    out.push(chars[start]);
                }
                pos = end + 1;
            } else {
                pos = end;
            }
            if !all {
                break;
            }
        }
        if pos < chars.len() {
            out.extend(&chars[pos..]);
        }
        out
    }
}

#[cfg(test)]
mod tests;
