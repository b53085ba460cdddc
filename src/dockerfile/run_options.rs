//! The options of `RUN`: `--mount` (bind, cache, tmpfs, secret, ssh), `--network` and
//! `--security`, parsed and validated as BuildKit does.
//!
//! A mount is written as CSV `key=value` fields. Values may hold `$ARG` references, which only the
//! plan or the executor can expand; [`Mount::parse`] therefore takes an optional expander and,
//! without one, checks what it can (keys, literal values) and leaves `$`-valued fields for later,
//! as BuildKit defers them. `from=` never expands: BuildKit refuses variables there.

use std::fmt;

use serde::Serialize;

/// A `--mount` of RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// A stage name or index, or an image, to take the mount's files from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub readonly: bool,
    /// Cache id, or secret id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Sharing>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Secret exposed as this environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The `--mount` value as written.
    pub spec: String,
}

/// Mount types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// Cache mount sharing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        })
    }
}

impl fmt::Display for SecurityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityMode::Sandbox => "sandbox",
            SecurityMode::Insecure => "insecure",
        })
    }
}

impl fmt::Display for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        })
    }
}

impl NetworkMode {
    /// Parses a `--network` value.
    pub fn parse(value: &str) -> Result<NetworkMode, String> {
        match value {
            "default" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(format!(
                "unsupported network mode {value:?}, expected default, none or host"
            )),
        }
    }
}

impl SecurityMode {
    /// Parses a `--security` value.
    pub fn parse(value: &str) -> Result<SecurityMode, String> {
        match value {
            "sandbox" => Ok(SecurityMode::Sandbox),
            "insecure" => Ok(SecurityMode::Insecure),
            _ => Err(format!(
                "unsupported security mode {value:?}, expected sandbox or insecure"
            )),
        }
    }
}

/// Expands one mount value; the plan and the executor pass their expander.
pub type ExpandValue<'a> = &'a dyn Fn(&str) -> Result<String, String>;

const MOUNT_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "size",
    "env",
];

impl Mount {
    /// Parses a `--mount` value. With `expand`, every value except `from` is expanded first and
    /// everything is validated; without it, values holding `$` are kept as written and checked
    /// later.
    pub fn parse(spec: &str, expand: Option<ExpandValue<'_>>) -> Result<Mount, String> {
        let fields = split_csv(spec)?;
        let mut m = Mount {
            kind: MountType::Bind,
            from: None,
            source: None,
            target: None,
            readonly: false,
            id: None,
            sharing: None,
            required: false,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            env: None,
            spec: spec.to_string(),
        };
        let mut ro_auto = true;
        for field in fields {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
                None => {
                    match field.to_ascii_lowercase().as_str() {
                        "readonly" | "ro" => m.readonly = true,
                        "readwrite" | "rw" => m.readonly = false,
                        "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                            m.required = true;
                            continue;
                        }
                        "required" => {
                            return Err(format!(
                                "unexpected key 'required' for mount type '{}'",
                                m.kind
                            ));
                        }
                        _ => {
                            return Err(format!(
                                "invalid field '{field}' must be a key=value pair"
                            ));
                        }
                    }
                    ro_auto = false;
                    continue;
                }
            };
            if !MOUNT_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "unexpected key '{key}' in '{field}'\nhint: mount keys are {}",
                    MOUNT_KEYS.join(", ")
                ));
            }
            let value = if key == "from" {
                if has_variable(&value) {
                    return Err(
                        "'from' doesn't support variable expansion, define alias stage \
                                instead"
                            .into(),
                    );
                }
                value
            } else {
                match expand {
                    Some(expand) => expand(&value)?,
                    // Checked once the value is known.
                    None if has_variable(&value) => continue,
                    None => value,
                }
            };
            let bad = || format!("invalid value for {key}: {value}");
            match key.as_str() {
                "type" => {
                    m.kind = match value.to_ascii_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => {
                            return Err(format!(
                                "unsupported mount type {value:?}\nhint: use bind, cache, tmpfs, \
                                 secret or ssh"
                            ));
                        }
                    }
                }
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&value).ok_or_else(bad)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_bool(&value).ok_or_else(bad)?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            m.kind
                        ));
                    }
                    m.required = parse_bool(&value).ok_or_else(bad)?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(format!("unexpected key 'size' for mount type '{}'", m.kind));
                    }
                    m.size = Some(parse_ram_bytes(&value).ok_or_else(bad)?);
                }
                "id" => m.id = Some(value),
                "env" => m.env = Some(value),
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        _ => {
                            return Err(format!(
                                "unsupported sharing value {value:?}\nhint: use shared, private \
                                 or locked"
                            ));
                        }
                    })
                }
                "mode" => {
                    m.mode = Some(
                        u32::from_str_radix(&value, 8)
                            .map_err(|_| format!("invalid value {value} for mode"))?,
                    )
                }
                "uid" => {
                    m.uid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("invalid value {value} for uid"))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("invalid value {value} for gid"))?,
                    )
                }
                _ => {}
            }
        }
        m.validate(ro_auto)?;
        Ok(m)
    }

    fn validate(&mut self, ro_auto: bool) -> Result<(), String> {
        let file_info_allowed = matches!(
            self.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info_allowed {
            for (name, set) in [
                ("mode", self.mode.is_some()),
                ("uid", self.uid.is_some()),
                ("gid", self.gid.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "{name} not allowed for \"{}\" type mounts",
                        self.kind
                    ));
                }
            }
        }
        if ro_auto {
            self.readonly = !matches!(self.kind, MountType::Cache | MountType::Tmpfs);
        }
        if self.kind == MountType::Secret {
            if self.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if self.sharing.is_some() {
                return Err("secret mount should not define sharing".into());
            }
            if self.source.is_some() && self.id.is_some() {
                return Err("both source and id can't be set".into());
            }
        }
        if self.sharing.is_some() && self.kind != MountType::Cache {
            return Err(format!("invalid cache sharing set for {} mount", self.kind));
        }
        Ok(())
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind)?;
        let strings = [
            ("from", &self.from),
            ("source", &self.source),
            ("target", &self.target),
            ("id", &self.id),
            ("env", &self.env),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                write!(f, ",{key}={v}")?;
            }
        }
        if let Some(s) = self.sharing {
            write!(f, ",sharing={s}")?;
        }
        let default_ro = !matches!(self.kind, MountType::Cache | MountType::Tmpfs);
        if self.readonly != default_ro {
            f.write_str(if self.readonly { ",ro" } else { ",rw" })?;
        }
        if self.required {
            f.write_str(",required")?;
        }
        if let Some(mode) = self.mode {
            write!(f, ",mode={mode:o}")?;
        }
        if let Some(uid) = self.uid {
            write!(f, ",uid={uid}")?;
        }
        if let Some(gid) = self.gid {
            write!(f, ",gid={gid}")?;
        }
        if let Some(size) = self.size {
            write!(f, ",size={size}")?;
        }
        Ok(())
    }
}

fn has_variable(value: &str) -> bool {
    value
        .char_indices()
        .any(|(i, c)| c == '$' && i + 1 < value.len())
}

fn parse_bool(value: &str) -> Option<bool> {
    // Go's strconv.ParseBool.
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a size like Docker's `RAMInBytes`: `64m`, `1.5g`, `512k`, `100` (bytes), binary units.
pub fn parse_ram_bytes(value: &str) -> Option<u64> {
    let lower = value.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let multiplier: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return None,
    };
    let bytes = number * multiplier;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Splits one CSV record as Go's encoding/csv does for a single line: commas separate fields, a
/// field that starts with `"` is quoted and `""` inside it is a quote.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("failed to parse csv mounts: unterminated quote".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(c) => {
                    return Err(format!(
                        "failed to parse csv mounts: unexpected {c:?} after a quoted field"
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(
                            "failed to parse csv mounts: bare \" in non-quoted field".into()
                        );
                    }
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_like_buildkit() {
        let m = Mount::parse(
            "type=cache,target=/root/.cache/go-build,id=go,sharing=locked",
            None,
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache/go-build"));
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert!(!m.readonly, "cache mounts are writable by default");

        let m = Mount::parse("from=builder,source=/out,target=/in", None).unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly, "bind mounts are read-only by default");
        assert_eq!(m.from.as_deref(), Some("builder"));

        let m = Mount::parse("type=bind,rw,target=/x", None).unwrap();
        assert!(!m.readonly);
        let m = Mount::parse("type=secret,id=npmrc,required,mode=0400,uid=1000", None).unwrap();
        assert!(m.required);
        assert_eq!(m.mode, Some(0o400));
        let m = Mount::parse("type=tmpfs,target=/tmp,size=64m", None).unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = Mount::parse("\"type=secret,id=a\",target=/x", None);
        assert!(m.is_err(), "a quoted field holds both pairs as one value");
    }

    #[test]
    fn bad_mounts_say_why() {
        let cases = [
            ("type=volume", "unsupported mount type \"volume\""),
            ("type=cache,sharing=maybe", "unsupported sharing value"),
            (
                "type=bind,mode=0755",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=cache,target",
                "invalid field 'target' must be a key=value pair",
            ),
            ("type=cache,color=red", "unexpected key 'color'"),
            (
                "type=bind,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            ("type=secret,from=x", "secret mount should not have a from"),
            ("from=$STAGE", "doesn't support variable expansion"),
            ("type=tmpfs,size=big", "invalid value for size: big"),
            ("type=cache,uid=-1", "invalid value -1 for uid"),
        ];
        for (spec, want) in cases {
            let err = Mount::parse(spec, None).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn variables_wait_for_the_expander() {
        let m = Mount::parse("type=cache,id=$ID,uid=$UID,target=/c", None).unwrap();
        assert_eq!(m.uid, None);
        let expand = |v: &str| Ok(v.replace("$UID", "1000").replace("$ID", "gomod"));
        let m = Mount::parse("type=cache,id=$ID,uid=$UID,target=/c", Some(&expand)).unwrap();
        assert_eq!(m.uid, Some(1000));
        assert_eq!(m.id.as_deref(), Some("gomod"));
        assert_eq!(m.to_string(), "type=cache,target=/c,id=gomod,uid=1000");
    }

    #[test]
    fn network_and_security_modes() {
        assert_eq!(NetworkMode::parse("none").unwrap(), NetworkMode::None);
        assert!(NetworkMode::parse("bridge").is_err());
        assert_eq!(
            SecurityMode::parse("insecure").unwrap(),
            SecurityMode::Insecure
        );
        assert!(SecurityMode::parse("privileged").is_err());
    }
}
