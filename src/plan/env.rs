//! Build arguments and environment as a stage sees them, instruction by instruction: the rules the
//! plan uses to expand words and the executor uses to run them.
//!
//! - [`ArgScope`] is the global scope: `--build-arg` values, the predefined platform ARGs
//!   (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT`, `BUILDPLATFORM`, `BUILDOS`,
//!   `BUILDARCH`, `BUILDVARIANT`) and the meta ARGs declared before the first FROM. FROM lines
//!   expand in it; stages do not see it unless they declare the name again (`ARG NAME`).
//! - [`BuildEnv`] is one stage's view: its base image's environment, the ENVs and ARGs declared
//!   so far. ARGs are scoped to the stage that declares them (and stages built FROM it, as in
//!   BuildKit); a sibling stage never sees them.
//!
//! Precedence is Docker's and Kaniko's: an ENV (from the Dockerfile or the base image) always wins
//! over an ARG of the same name, whatever their order. A build arg given on the command line
//! replaces an ARG's default only where the ARG is declared.
//!
//! The plan does not pull base images, so for a stage built on an image the base environment is
//! *unknown*: names no instruction set expand to [`Lookup::Unknown`] and keep their `$NAME` text.
//! There the plan assumes the image defines no ENV with the name of a declared ARG. The executor
//! passes the image's real environment, so nothing is unknown at build time.
//!
//! Proxy build args (`HTTP_PROXY`, `https_proxy`, ...) need no ARG: a RUN gets them in its process
//! environment, and they stay out of the image history unless the Dockerfile declares them.

use std::collections::BTreeMap;

use crate::dockerfile::expand::{Env, ExpandError, Expander, Lookup};
use crate::platform::Platform;

/// Build args every Dockerfile may use without declaring them, and that Docker keeps out of the
/// image history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The default PATH Docker gives a Linux image that sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The predefined platform ARGs for a target and build platform, in Docker's order.
pub fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let variant = |p: &Platform| p.variant.clone().unwrap_or_default();
    [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", variant(build)),
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", variant(target)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The global ARG scope: build args, predefined platform ARGs and meta ARGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgScope {
    build_args: BTreeMap<String, String>,
    /// Name and value of every global ARG with a value, in declaration order (last wins).
    global: Vec<(String, String)>,
}

/// A meta ARG with the value it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedArg {
    pub name: String,
    /// None when the ARG has no default and no build arg gives it a value.
    pub value: Option<String>,
}

impl ArgScope {
    /// The scope before any meta ARG: build args and predefined platform ARGs (which build args
    /// may override).
    pub fn new(
        build_args: BTreeMap<String, String>,
        target: &Platform,
        build: &Platform,
    ) -> ArgScope {
        let global = platform_args(target, build)
            .into_iter()
            .map(|(k, v)| {
                let v = build_args.get(&k).cloned().unwrap_or(v);
                (k, v)
            })
            .collect();
        ArgScope { build_args, global }
    }

    /// Declares a meta ARG (one before the first FROM): a build arg gives its value, else its
    /// default expanded in the global scope so far.
    pub fn declare(
        &mut self,
        name: &str,
        default: Option<&str>,
        expander: &Expander,
    ) -> Result<ResolvedArg, ExpandError> {
        let value = match (self.build_args.get(name), default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => Some(expander.word(d, self)?),
            (None, None) => None,
        };
        if let Some(v) = &value {
            self.global.retain(|(k, _)| k != name);
            self.global.push((name.to_string(), v.clone()));
        }
        Ok(ResolvedArg {
            name: name.to_string(),
            value,
        })
    }

    /// The value a global ARG has, if any.
    pub fn global(&self, name: &str) -> Option<&str> {
        self.global
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The build args given on the command line.
    pub fn build_args(&self) -> &BTreeMap<String, String> {
        &self.build_args
    }
}

impl Env for ArgScope {
    fn lookup(&self, name: &str) -> Lookup {
        match self.global(name) {
            Some(v) => Lookup::Set(v.to_string()),
            None => Lookup::Unset,
        }
    }
}

/// One ARG declared in a stage and the value it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredArg {
    pub name: String,
    pub value: Option<String>,
}

/// A stage's environment at one point of its instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildEnv {
    /// The image config's environment: the base image's (when known), then the stage's ENVs.
    config: Vec<(String, String)>,
    /// False while the base image's environment has not been seen (the plan).
    base_known: bool,
    /// ARGs declared in this stage (or inherited from the stage it is built FROM), in order.
    args: Vec<DeclaredArg>,
    scope: ArgScope,
}

impl BuildEnv {
    /// A stage built on an image. `base_env` is the image config's `Env` (`KEY=VALUE` strings),
    /// or None when it is not known. A known environment without PATH gets Docker's default.
    pub fn new(base_env: Option<&[String]>, scope: &ArgScope) -> BuildEnv {
        let mut config: Vec<(String, String)> = Vec::new();
        if let Some(env) = base_env {
            for kv in env {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                set(&mut config, k, v);
            }
            if !config.iter().any(|(k, _)| k == "PATH") {
                config.push(("PATH".into(), DEFAULT_PATH.into()));
            }
        }
        BuildEnv {
            config,
            base_known: base_env.is_some(),
            args: Vec::new(),
            scope: scope.clone(),
        }
    }

    /// A stage built on `scratch`: an empty environment (plus the default PATH).
    pub fn scratch(scope: &ArgScope) -> BuildEnv {
        BuildEnv::new(Some(&[]), scope)
    }

    /// A stage built FROM another stage: it starts where that stage ended, ARGs included.
    pub fn inherit(parent: &BuildEnv) -> BuildEnv {
        parent.clone()
    }

    /// True when the base image's environment is known, so no lookup is [`Lookup::Unknown`].
    pub fn base_known(&self) -> bool {
        self.base_known
    }

    /// Applies one `ENV key=value` (the value already expanded).
    pub fn set_env(&mut self, key: &str, value: &str) {
        set(&mut self.config, key, value);
    }

    /// Declares an ARG in the stage and returns the value it resolves to: a build arg's value,
    /// else the default expanded in the current environment, else the meta ARG's value (a bare
    /// `ARG NAME` brings a meta ARG into the stage), else none.
    pub fn declare_arg(
        &mut self,
        name: &str,
        default: Option<&str>,
        expander: &Expander,
    ) -> Result<Option<String>, ExpandError> {
        let value = match (self.scope.build_args.get(name), default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => Some(expander.word(d, self)?),
            (None, None) => self.scope.global(name).map(String::from),
        };
        self.args.retain(|a| a.name != name);
        self.args.push(DeclaredArg {
            name: name.to_string(),
            value: value.clone(),
        });
        Ok(value)
    }

    /// The image config's environment as `KEY=VALUE` strings (what the image will carry). Only
    /// what is known: the plan leaves out an unseen base image's variables.
    pub fn config_env(&self) -> Vec<String> {
        self.config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// The ARGs declared in the stage so far with the value a RUN sees (an ENV of the same name
    /// wins), in declaration order. These belong in a RUN's history line and cache key; ARGs
    /// without a value are left out.
    pub fn visible_args(&self) -> Vec<(String, String)> {
        self.args
            .iter()
            .filter_map(|a| {
                let value = match get(&self.config, &a.name) {
                    Some(env) => env.to_string(),
                    None => a.value.clone()?,
                };
                Some((a.name.clone(), value))
            })
            .collect()
    }

    /// The environment of a RUN's process: the config environment, the visible ARGs not shadowed
    /// by an ENV, and proxy build args nobody declared. Proxy values are never part of the image.
    pub fn run_env(&self) -> Vec<String> {
        let mut env = self.config.clone();
        for (k, v) in self.visible_args() {
            if get(&env, &k).is_none() {
                env.push((k, v));
            }
        }
        for name in PROXY_ARGS {
            if let Some(v) = self.scope.build_args.get(*name)
                && get(&env, name).is_none()
            {
                env.push((name.to_string(), v.clone()));
            }
        }
        env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The ARGs declared in the stage so far (with or without a value).
    pub fn declared_args(&self) -> &[DeclaredArg] {
        &self.args
    }
}

impl Env for BuildEnv {
    fn lookup(&self, name: &str) -> Lookup {
        if let Some(v) = get(&self.config, name) {
            return Lookup::Set(v.to_string());
        }
        if let Some(arg) = self.args.iter().rev().find(|a| a.name == name)
            && let Some(v) = &arg.value
        {
            return Lookup::Set(v.clone());
        }
        if self.base_known {
            Lookup::Unset
        } else {
            Lookup::Unknown
        }
    }
}

fn get<'a>(list: &'a [(String, String)], key: &str) -> Option<&'a str> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Replaces `key` in place (keeping its position, as Docker does) or appends it.
fn set(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => list.push((key.to_string(), value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(build_args: &[(&str, &str)]) -> ArgScope {
        let args = build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm/v7".parse().unwrap();
        ArgScope::new(args, &arm, &amd64)
    }

    const EX: Expander = Expander::new('\\');

    #[test]
    fn predefined_platform_args_are_global() {
        let s = scope(&[("BUILDOS", "freebsd")]);
        assert_eq!(s.global("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(s.global("TARGETVARIANT"), Some("v7"));
        assert_eq!(s.global("BUILDVARIANT"), Some(""));
        assert_eq!(
            s.global("BUILDOS"),
            Some("freebsd"),
            "a build arg overrides"
        );
    }

    #[test]
    fn meta_args_take_build_args_then_defaults() {
        let mut s = scope(&[("B", "from-cli")]);
        s.declare("A", Some("1"), &EX).unwrap();
        s.declare("B", Some("default"), &EX).unwrap();
        let c = s.declare("C", Some("${A}-$B-$TARGETARCH"), &EX).unwrap();
        assert_eq!(c.value.as_deref(), Some("1-from-cli-arm"));
        let d = s.declare("D", None, &EX).unwrap();
        assert_eq!(d.value, None);
        assert_eq!(s.lookup("D"), Lookup::Unset);
    }

    #[test]
    fn stage_sees_meta_args_only_after_a_bare_arg() {
        let mut s = scope(&[]);
        s.declare("VERSION", Some("1.2"), &EX).unwrap();
        let mut env = BuildEnv::scratch(&s);
        assert_eq!(env.lookup("VERSION"), Lookup::Unset);
        env.declare_arg("VERSION", None, &EX).unwrap();
        assert_eq!(env.lookup("VERSION"), Lookup::Set("1.2".into()));
        // A sibling stage starts fresh.
        assert_eq!(BuildEnv::scratch(&s).lookup("VERSION"), Lookup::Unset);
    }

    #[test]
    fn env_wins_over_arg_in_either_order() {
        let s = scope(&[("A", "cli")]);
        let mut env = BuildEnv::scratch(&s);
        env.set_env("A", "env");
        env.declare_arg("A", Some("default"), &EX).unwrap();
        assert_eq!(env.lookup("A"), Lookup::Set("env".into()));
        env.declare_arg("B", Some("arg"), &EX).unwrap();
        env.set_env("B", "env-later");
        assert_eq!(env.lookup("B"), Lookup::Set("env-later".into()));
        assert_eq!(
            env.visible_args(),
            [
                ("A".to_string(), "env".to_string()),
                ("B".to_string(), "env-later".to_string())
            ]
        );
    }

    #[test]
    fn base_image_env_is_known_or_unknown() {
        let s = scope(&[]);
        let base = vec!["HOME=/root".to_string(), "PATH=/bin".to_string()];
        let known = BuildEnv::new(Some(&base), &s);
        assert_eq!(known.lookup("HOME"), Lookup::Set("/root".into()));
        assert_eq!(known.lookup("NOPE"), Lookup::Unset);
        let mut unknown = BuildEnv::new(None, &s);
        assert_eq!(unknown.lookup("HOME"), Lookup::Unknown);
        unknown.declare_arg("X", Some("1"), &EX).unwrap();
        assert_eq!(unknown.lookup("X"), Lookup::Set("1".into()));
        assert_eq!(
            BuildEnv::scratch(&s).config_env(),
            [format!("PATH={DEFAULT_PATH}")]
        );
    }

    #[test]
    fn run_env_has_args_and_undeclared_proxies_but_config_does_not() {
        let s = scope(&[
            ("HTTP_PROXY", "http://proxy:3128"),
            ("GOPROXY", "https://g"),
        ]);
        let mut env = BuildEnv::new(Some(&["PATH=/bin".to_string()]), &s);
        env.declare_arg("GOPROXY", None, &EX).unwrap();
        env.declare_arg("UNSET", None, &EX).unwrap();
        env.set_env("CGO_ENABLED", "0");
        assert_eq!(
            env.run_env(),
            [
                "PATH=/bin",
                "CGO_ENABLED=0",
                "GOPROXY=https://g",
                "HTTP_PROXY=http://proxy:3128"
            ]
        );
        assert_eq!(env.config_env(), ["PATH=/bin", "CGO_ENABLED=0"]);
        assert_eq!(
            env.visible_args(),
            [("GOPROXY".to_string(), "https://g".to_string())]
        );
    }

    #[test]
    fn arg_defaults_expand_in_the_stage_env() {
        let s = scope(&[]);
        let mut env = BuildEnv::scratch(&s);
        env.set_env("BASE", "/opt");
        let v = env.declare_arg("DIR", Some("$BASE/app"), &EX).unwrap();
        assert_eq!(v.as_deref(), Some("/opt/app"));
        let child = BuildEnv::inherit(&env);
        assert_eq!(child.lookup("DIR"), Lookup::Set("/opt/app".into()));
    }
}
