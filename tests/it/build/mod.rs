//! `kbuild build` end to end: real registry, real RUN in namespaces (root, as CI runs), images
//! checked by pulling them back and looking at their files, config and history.

mod contexts;
mod instructions;
pub(crate) mod multistage;
mod outputs;
mod parallel;
mod run_mounts;
mod safety;

use std::path::{Path, PathBuf};
use std::process::Output;

use kbuild::fs::Root;
use kbuild::image::ImageConfig;
use kbuild::platform::Platform;
use kbuild::registry::{BlobStore, Keychain, RegistryClient, RegistryOptions, pull_image};

use crate::harness::registry::Registry;
use crate::harness::{kbuild, rootfs, run, text};

/// A registry with a busybox base image (`<addr>/base:1`) that kbuild built itself, offline:
/// `FROM scratch` + `COPY rootfs/ /` of busybox-static, /etc/passwd and /etc/group (root, app
/// 1000:1000 also in staff 50) and an empty /tmp.
pub struct World {
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    /// The directory holding the docker `config.json` for a registry that wants a password.
    pub docker_config: Option<PathBuf>,
}

impl World {
    pub fn new() -> World {
        World::with_base(World::bare())
    }

    /// A world whose registry wants HTTP basic auth with `user` and `pass`; its own builds and
    /// pulls use a docker `config.json` with them ([`World::docker_config`]).
    pub fn with_auth(user: &str, pass: &str) -> World {
        use base64::Engine as _;
        let registry = Registry::with_auth(user, pass);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("docker");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        write(
            &config,
            "config.json",
            &format!(
                r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
                registry.addr()
            ),
        );
        World::with_base(World {
            registry,
            dir,
            docker_config: Some(config),
        })
    }

    /// A registry and a directory, without the base image (for builds `FROM scratch`).
    pub fn bare() -> World {
        World {
            registry: Registry::start(),
            dir: tempfile::tempdir().unwrap(),
            docker_config: None,
        }
    }

    fn with_base(world: World) -> World {
        let base = world.context("base");
        rootfs::busybox(&base.join("rootfs"));
        rootfs::with_users(&base.join("rootfs"));
        std::fs::create_dir_all(base.join("rootfs/tmp")).unwrap();
        write(
            &base,
            "Dockerfile",
            "FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sh\"]\n",
        );
        let out = world.build(&base, "base:1", &[]);
        assert_success(&out);
        world
    }

    /// A fresh directory to use as a build context.
    pub fn context(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("contexts").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The base image reference.
    pub fn base(&self) -> String {
        format!("{}/base:1", self.registry.addr())
    }

    /// An image reference in this registry.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.addr())
    }

    /// The work directory all builds of this world share (as builds in one pod would).
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Runs `kbuild build` on `context`, pushing to `name` in the registry.
    pub fn build(&self, context: &Path, name: &str, extra: &[&str]) -> Output {
        let mut cmd = kbuild();
        cmd.arg("build")
            .arg(format!("--context={}", context.display()))
            .arg(format!("--destination={}", self.image(name)))
            .arg(format!("--kaniko-dir={}", self.work_dir().display()))
            .arg(format!("--build-arg=BASE={}", self.base()))
            .args(["--insecure", "--insecure-pull"])
            .args(extra);
        if let Some(config) = &self.docker_config {
            cmd.env("DOCKER_CONFIG", config);
        }
        run(&mut cmd)
    }

    /// Pulls `name` and returns its config and a rootfs with its layers applied.
    pub fn pull(&self, name: &str) -> Pulled {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let options = RegistryOptions {
            insecure_pull: true,
            ..RegistryOptions::default()
        };
        let keychain = match &self.docker_config {
            Some(config) => Keychain::load(&[config.join("config.json")]).unwrap(),
            None => Keychain::anonymous(),
        };
        let client = RegistryClient::new(options, keychain);
        let reference = self.image(name).parse().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let pulled = runtime
            .block_on(pull_image(&client, &reference, &Platform::host(), &store))
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let root = Root::open(&rootfs).unwrap();
        for layer in pulled.layers() {
            let file = store.open_blob(&layer.digest).unwrap();
            kbuild::fs::extract_layer(&root, &layer.digest.to_string(), file).unwrap();
        }
        Pulled {
            config: ImageConfig::from_json(&pulled.config).unwrap(),
            digest: pulled.digest().to_string(),
            layers: pulled.layers().len(),
            rootfs,
            _dir: dir,
        }
    }
}

/// An image pulled back from the registry.
pub struct Pulled {
    pub config: ImageConfig,
    pub digest: String,
    pub layers: usize,
    pub rootfs: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pulled {
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.rootfs.join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{path} in the image: {e}"))
    }

    pub fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.rootfs.join(path.trim_start_matches('/'))).is_ok()
    }

    /// (mode & 0o7777, uid, gid) of a path in the image.
    pub fn owner_mode(&self, path: &str) -> (u32, u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(self.rootfs.join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{path} in the image: {e}"));
        (meta.mode() & 0o7777, meta.uid(), meta.gid())
    }

    /// The history's `created_by` lines with their `empty_layer` flags.
    pub fn history(&self) -> Vec<(String, bool)> {
        self.config
            .history
            .iter()
            .map(|h| {
                (
                    h.created_by.clone().unwrap_or_default(),
                    h.empty_layer.unwrap_or(false),
                )
            })
            .collect()
    }
}

pub fn write(dir: &Path, path: &str, content: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// The build failed and its stderr says `needle`.
pub fn assert_failure_says(out: &Output, needle: &str) {
    let (_, stderr) = text(out);
    assert!(!out.status.success(), "kbuild succeeded:\n{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
}

pub fn assert_success(out: &Output) {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "kbuild failed ({:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
}
