//! COPY and ADD source wildcards: Go's `filepath.Match`, which is what Docker and BuildKit use.
//!
//! A pattern matches a path component by component (`*` and `?` never match `/`), `[...]` is a
//! class (`[^...]` negates), `\` escapes the next character. `**` has no special meaning here,
//! unlike `.dockerignore`: Docker does not give it one in COPY sources.

/// True when `path` contains a wildcard character, so it must be matched rather than looked up.
pub fn has_wildcard(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// A pattern Go would reject (`ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {0:?}")]
pub struct BadPattern(pub String);

/// Matches one path (`/`-separated, same number of components as the pattern) against a pattern.
pub fn matches(pattern: &str, path: &str) -> Result<bool, BadPattern> {
    let pats: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    if pats.len() != parts.len() {
        return Ok(false);
    }
    for (p, s) in pats.iter().zip(parts) {
        if !component(p.as_bytes(), s.as_bytes()).map_err(|()| BadPattern(pattern.into()))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Matches one component, with backtracking for `*`.
fn component(pat: &[u8], name: &[u8]) -> Result<bool, ()> {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' if n < name.len() => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' if n < name.len() => {
                    let (hit, next) = class(pat, p, name[n])?;
                    if hit {
                        p = next;
                        n += 1;
                        continue;
                    }
                }
                b'\\' => {
                    if p + 1 >= pat.len() {
                        return Err(());
                    }
                    if n < name.len() && pat[p + 1] == name[n] {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                c if c != b'?' && c != b'[' && n < name.len() && c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        } else if n == name.len() {
            return Ok(true);
        }
        // Mismatch: let the last `*` swallow one more byte, or fail.
        match star {
            Some((sp, sn)) if sn < name.len() => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            _ => {
                // Go still reports a malformed class later in the pattern as an error.
                validate(&pat[p.min(pat.len())..])?;
                return Ok(false);
            }
        }
    }
}

/// Evaluates the class starting at `pat[start] == '['` against `c`; returns (matched, index after
/// the class).
fn class(pat: &[u8], start: usize, c: u8) -> Result<(bool, usize), ()> {
    let mut i = start + 1;
    let negate = i < pat.len() && pat[i] == b'^';
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        if i >= pat.len() {
            return Err(());
        }
        if pat[i] == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = escaped(pat, &mut i)?;
        let hi = if i + 1 < pat.len() && pat[i] == b'-' && pat[i + 1] != b']' {
            i += 1;
            escaped(pat, &mut i)?
        } else {
            lo
        };
        if lo <= c && c <= hi {
            hit = true;
        }
    }
    Ok((hit != negate, i))
}

fn escaped(pat: &[u8], i: &mut usize) -> Result<u8, ()> {
    if pat[*i] == b'\\' {
        *i += 1;
        if *i >= pat.len() {
            return Err(());
        }
    }
    let c = pat[*i];
    *i += 1;
    Ok(c)
}

fn validate(rest: &[u8]) -> Result<(), ()> {
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'[' => {
                let (_, next) = class(rest, i, 0)?;
                i = next;
            }
            b'\\' if i + 1 >= rest.len() => return Err(()),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_go_filepath_match() {
        let cases = [
            ("*.go", "main.go", true),
            ("*.go", "dir/main.go", false),
            ("src/*.go", "src/a.go", true),
            ("*/*.go", "src/a.go", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*", "", true),
            ("file[]]", "file]", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(matches(pattern, path).unwrap(), want, "{pattern} on {path}");
        }
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(matches("[abc", "a").is_err());
        assert!(matches("x\\", "x").is_err());
        assert!(has_wildcard("src/*.go") && !has_wildcard("src/main.go"));
    }
}
