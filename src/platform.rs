//! Platforms (`os/arch[/variant]`): parsing, normalisation and the host default.
//!
//! One definition shared by the Dockerfile plan (TARGETPLATFORM and friends), registry index
//! resolution and image configs. Normalisation follows containerd's rules for the common cases
//! (`x86_64` is `amd64`, `aarch64` is `arm64` with variant `v8` implied), which is what registries
//! and Docker write into indexes. OS versions and features are left out: no Linux image uses them.

use std::fmt;
use std::str::FromStr;

/// A target platform such as `linux/amd64` or `linux/arm/v7`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A platform string that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid platform {input:?}: {reason}\nhint: use os/arch or os/arch/variant, like linux/amd64"
)]
pub struct PlatformError {
    pub input: String,
    pub reason: &'static str,
}

impl Platform {
    /// Builds a platform from its parts, normalising architecture and variant.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = normalize_arch(&architecture.to_ascii_lowercase(), variant);
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform kbuild runs on, normalised.
    pub fn host() -> Platform {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    /// True when an image built for `other` runs here as this platform asks: same OS and
    /// architecture, and the same variant when both name one (`arm64` matches `arm64/v8`).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_ascii_lowercase);
    match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "i386" | "i486" | "i586" | "i686" | "386" => ("386".into(), None),
        "aarch64" | "arm64" => (
            "arm64".into(),
            match variant.as_deref() {
                None | Some("8") | Some("v8") => None,
                _ => variant,
            },
        ),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => (
            "arm".into(),
            match variant.as_deref() {
                None | Some("7") | Some("v7") => Some("v7".into()),
                Some(v) if !v.starts_with('v') => Some(format!("v{v}")),
                _ => variant,
            },
        ),
        other => (other.to_string(), variant),
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let err = |reason| PlatformError {
            input: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err("empty component"));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            [_] => Err(err("missing architecture")),
            _ => Err(err("too many components")),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_normalise_like_containerd() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/riscv64", "linux/riscv64"),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<Platform>().unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn bad_platforms_say_what_is_wrong() {
        let err = "linux".parse::<Platform>().unwrap_err();
        assert_eq!(err.reason, "missing architecture");
        assert!(err.to_string().contains("hint: use os/arch"));
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn variants_match_when_one_side_is_silent() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let arm7: Platform = "linux/arm/v7".parse().unwrap();
        let arm6: Platform = "linux/arm/v6".parse().unwrap();
        assert!(arm64.matches(&Platform::new("linux", "arm64", Some("v8"))));
        assert!(!arm7.matches(&arm6));
        assert_eq!(Platform::host().os, "linux");
    }
}
