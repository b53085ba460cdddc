//! The image config (`application/vnd.docker.container.image.v1+json` / OCI's
//! `application/vnd.oci.image.config.v1+json`): kbuild's own struct, because oci-spec's maps are
//! unordered and it drops Docker's fields (Healthcheck, OnBuild, Shell, ArgsEscaped).
//!
//! Maps are BTreeMaps, fields kbuild does not know are kept in `extra` (so a base image's
//! `container_config`, `docker_version` or vendor fields survive), and [`ImageConfig::to_json`]
//! writes canonical JSON, so the same config always has the same digest.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::platform::Platform;
use crate::registry::manifest::canonical_json;

/// An image config.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// What a container started from the image runs with (Docker's field names).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(
        rename = "ArgsEscaped",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub args_escaped: Option<bool>,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `HEALTHCHECK`: durations in nanoseconds, as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Healthcheck {
    #[serde(rename = "Test", default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(rename = "Interval", default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(rename = "Timeout", default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(
        rename = "StartPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_period: Option<i64>,
    #[serde(
        rename = "StartInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_interval: Option<i64>,
    #[serde(rename = "Retries", default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The layers' uncompressed digests (diffIDs), base first.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry; `empty_layer` marks instructions that made no layer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ImageConfig {
    /// An empty config for `platform` (a `FROM scratch` image).
    pub fn for_platform(platform: &Platform) -> ImageConfig {
        ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            ..ImageConfig::default()
        }
    }

    /// Parses a config as a registry served it.
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Canonical JSON: sorted keys, no whitespace.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        canonical_json(self)
    }

    /// The platform the config says the image is for.
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONFIG: &str = r#"{
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "docker_version": "24.0.7",
        "config": {
            "Env": ["PATH=/bin"], "Cmd": ["sh"], "Labels": {"b": "2", "a": "1"},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3},
            "OnBuild": ["RUN echo hi"], "Shell": ["/bin/bash", "-c"], "ArgsEscaped": true,
            "ExposedPorts": {"80/tcp": {}}, "Image": "sha256:abc", "Hostname": ""
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
        "history": [{"created_by": "ADD file", "created": "2024-01-01T00:00:00Z"},
                    {"created_by": "CMD [\"sh\"]", "empty_layer": true}]
    }"#;

    #[test]
    fn docker_fields_and_unknown_fields_survive_a_round_trip() {
        let config = ImageConfig::from_json(DOCKER_CONFIG.as_bytes()).unwrap();
        assert_eq!(
            config.config.shell.as_deref(),
            Some(&["/bin/bash".to_string(), "-c".to_string()][..])
        );
        assert_eq!(config.config.healthcheck.as_ref().unwrap().retries, Some(3));
        assert_eq!(config.config.args_escaped, Some(true));
        assert_eq!(config.history[1].empty_layer, Some(true));
        let json = String::from_utf8(config.to_json().unwrap()).unwrap();
        assert!(json.contains(r#""docker_version":"24.0.7""#), "{json}");
        assert!(json.contains(r#""Image":"sha256:abc""#), "{json}");
        assert!(json.contains(r#""Labels":{"a":"1","b":"2"}"#), "{json}");
        assert!(json.contains(r#""OnBuild":["RUN echo hi"]"#), "{json}");
        let again = ImageConfig::from_json(json.as_bytes()).unwrap();
        assert_eq!(again, config);
        assert_eq!(again.to_json().unwrap(), json.as_bytes());
    }

    #[test]
    fn scratch_configs_name_their_platform() {
        let config = ImageConfig::for_platform(&"linux/arm/v7".parse().unwrap());
        let json = String::from_utf8(config.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"arm","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"},"variant":"v7"}"#
        );
    }
}
