//! Times in cache entries and reports: RFC 3339 in, compact ages out.
//!
//! Go writes `created` with the local offset (`2025-06-01T12:00:00.123+02:00`) and nanoseconds;
//! humantime reads only UTC, so an offset is applied here before handing it the rest.

use std::time::{Duration, SystemTime};

/// Parses an RFC 3339 time (`Z` or a `±HH:MM` offset, any fraction). None when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() < 20 {
        return None;
    }
    let (body, offset_secs) = match text.as_bytes()[text.len() - 6] {
        sign @ (b'+' | b'-') if text.as_bytes()[text.len() - 3] == b':' => {
            let hours: i64 = text[text.len() - 5..text.len() - 3].parse().ok()?;
            let minutes: i64 = text[text.len() - 2..].parse().ok()?;
            let secs = hours * 3600 + minutes * 60;
            (
                &text[..text.len() - 6],
                if sign == b'+' { secs } else { -secs },
            )
        }
        _ => (text.strip_suffix('Z').or(text.strip_suffix('z'))?, 0),
    };
    let local = humantime::parse_rfc3339_weak(body).ok()?;
    // `12:00+02:00` is 10:00 UTC: subtract a positive offset.
    if offset_secs >= 0 {
        local.checked_sub(Duration::from_secs(offset_secs as u64))
    } else {
        local.checked_add(Duration::from_secs((-offset_secs) as u64))
    }
}

/// `2025-06-01T10:00:00Z`.
pub fn format_rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A short age: `42s`, `17m`, `5h12m`, `3d4h`, `120d`.
pub fn format_age(age: Duration) -> String {
    let secs = age.as_secs();
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match () {
        _ if secs < 60 => format!("{secs}s"),
        _ if secs < 3600 => format!("{m}m"),
        _ if d == 0 => format!("{}h{m:02}m", secs / 3600),
        _ if d < 30 => format!("{d}d{h}h"),
        _ => format!("{d}d"),
    }
}

/// A Go-style duration for messages (`336h`, `90m`, `45s`).
pub fn format_ttl(ttl: Duration) -> String {
    let secs = ttl.as_secs();
    if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// How old `created` is at `now`, and whether that is past `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age {
    pub age: Duration,
    pub expired: bool,
}

impl Age {
    /// The age of an entry created at `created`; a time in the future counts as age zero.
    pub fn of(created: SystemTime, now: SystemTime, ttl: Duration) -> Age {
        let age = now.duration_since(created).unwrap_or_default();
        Age {
            age,
            expired: age > ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let utc = parse_rfc3339("2025-06-01T10:00:00Z").unwrap();
        assert_eq!(
            parse_rfc3339("2025-06-01T12:00:00+02:00").unwrap(),
            utc,
            "offsets are applied"
        );
        assert_eq!(parse_rfc3339("2025-06-01T07:30:00-02:30").unwrap(), utc);
        let frac = parse_rfc3339("2025-06-01T10:00:00.123456789Z").unwrap();
        assert_eq!(frac.duration_since(utc).unwrap().as_millis(), 123);
        assert_eq!(format_rfc3339(frac), "2025-06-01T10:00:00Z");
        for bad in ["", "yesterday", "2025-06-01", "2025-06-01T10:00:00"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn ages_are_short_and_ttl_is_strict() {
        let cases = [
            (5, "5s"),
            (61, "1m"),
            (3 * 3600 + 5 * 60, "3h05m"),
            (86_400 * 3 + 3600 * 4, "3d4h"),
            (86_400 * 45, "45d"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_age(Duration::from_secs(secs)), want);
        }
        let t0 = SystemTime::UNIX_EPOCH;
        let ttl = Duration::from_secs(3600);
        assert!(!Age::of(t0, t0 + ttl, ttl).expired);
        assert!(Age::of(t0, t0 + ttl + Duration::from_secs(1), ttl).expired);
        assert_eq!(Age::of(t0 + ttl, t0, ttl).age, Duration::ZERO);
        assert_eq!(format_ttl(Duration::from_secs(336 * 3600)), "336h");
        assert_eq!(format_ttl(Duration::from_secs(90 * 60)), "90m");
    }
}
