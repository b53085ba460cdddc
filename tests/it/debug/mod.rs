//! The cache debugger against a real registry: `kbuild cache inspect`, `cache diff` and
//! `explain`, on kbuild entries (the contract's schema 1) and Kaniko entries built here exactly
//! as CONTEXT.md section 3 describes them (single-layer Docker schema 2 image, history author
//! `kaniko`, `created_by` the instruction, tagged with the 64-hex key).

mod diff;
mod explain;
mod inspect;
mod kaniko;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use kbuild::cache::key::{ParentKind, Part, Preimage};
use kbuild::image::ImageBuilder;
use kbuild::platform::Platform;
use kbuild::registry::manifest::{
    Descriptor, ImageManifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, canonical_json,
};
use kbuild::registry::{
    BlobStore, ImageToPush, Keychain, Reference, RegistryClient, RegistryOptions, push_image,
};

use crate::harness::registry::Registry;
use crate::harness::{kbuild, run, text};

/// One entry of a test layer.
#[derive(Clone, Copy)]
pub enum T<'a> {
    File(&'a str, u32, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    /// A whiteout deleting this path.
    Gone(&'a str),
}

/// An uncompressed tar with these entries (uid 0, gid 0, mtime 0), deterministic.
pub fn layer_tar(entries: &[T]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            T::File(path, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            T::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            T::Link(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            T::Gone(path) => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, wh, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// RFC 3339 (seconds) of now minus `ago`.
pub fn created_ago(ago: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - ago).to_string()
}

pub const DAY: Duration = Duration::from_secs(86_400);

/// A registry and the means to fill it with cache entries.
pub struct CacheRegistry {
    pub registry: Registry,
    dir: tempfile::TempDir,
    store: BlobStore,
    rt: tokio::runtime::Runtime,
    client: RegistryClient,
}

impl CacheRegistry {
    pub fn new() -> CacheRegistry {
        CacheRegistry::on(Registry::start(), Keychain::anonymous())
    }

    pub fn on(registry: Registry, keychain: Keychain) -> CacheRegistry {
        CacheRegistry::with_options(registry, keychain, RegistryOptions::default())
    }

    /// As [`CacheRegistry::on`], pushing with `options` (a TLS registry's certificate).
    pub fn with_options(
        registry: Registry,
        keychain: Keychain,
        options: RegistryOptions,
    ) -> CacheRegistry {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = RegistryClient::new(options, keychain);
        CacheRegistry {
            registry,
            dir,
            store,
            rt,
            client,
        }
    }

    /// `127.0.0.1:PORT/<name>`.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.addr())
    }

    /// A scratch directory that lives as long as this registry.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn push(&self, repo: &str, tag: &str, image: ImageToPush) {
        let dest: Reference = format!("{repo}:{tag}").parse().unwrap();
        self.rt
            .block_on(push_image(&self.client, &image, &[dest], &self.store))
            .unwrap();
    }

    /// Pushes a Kaniko cache entry: one gzip layer, Docker schema 2, history author `kaniko`.
    pub fn push_kaniko(
        &self,
        repo: &str,
        key: &str,
        instruction: &str,
        files: &[T],
        created: &str,
    ) {
        let mut image = ImageBuilder::scratch(&self.store, &Platform::host());
        image
            .add_layer_tar(&layer_tar(files)[..], instruction)
            .unwrap();
        let config = image.config_mut();
        config.created = Some(created.to_string());
        config.history[0].author = Some("kaniko".into());
        let built = image.build().unwrap();
        self.push(repo, key, built.to_push());
    }

    /// Pushes a kbuild schema 1 entry for `preimage` (no layer when `files` is None); returns
    /// the key's hex.
    pub fn push_kbuild(
        &self,
        repo: &str,
        preimage: &Preimage,
        instruction: &str,
        files: Option<&[T]>,
        created: &str,
    ) -> String {
        let key = preimage.key();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut blobs = Vec::new();
        if let Some(files) = files {
            let blob = kbuild::image::gzip_into_store(&self.store, &layer_tar(files)[..]).unwrap();
            layers.push(Descriptor::new(OCI_LAYER_GZIP, blob.digest, blob.size));
            diff_ids.push(blob.diff_id.to_string());
            blobs.push(blob.digest);
        }
        let platform = Platform::host();
        let config = serde_json::json!({
            "architecture": platform.architecture, "os": platform.os, "created": created,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": created, "created_by": instruction, "author": "kbuild",
                         "comment": "kbuild cache schema 1", "empty_layer": files.is_none().then_some(true)}],
            "kbuild_cache": {"schema": 1, "key": key.to_string(), "preimage": preimage},
        });
        let config_bytes = canonical_json(&config).unwrap();
        let config_digest = self.store.put_bytes(&config_bytes).unwrap();
        blobs.insert(0, config_digest);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as u64),
            layers,
            annotations: [
                ("dev.kbuild.cache.schema", "1".to_string()),
                ("dev.kbuild.cache.key", key.to_string()),
                ("dev.kbuild.cache.instruction", instruction.to_string()),
                ("org.opencontainers.image.created", created.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            extra: Default::default(),
        };
        let bytes = canonical_json(&manifest).unwrap();
        self.store.put_bytes(&bytes).unwrap();
        self.push(
            repo,
            &key.hex(),
            ImageToPush {
                manifest: bytes,
                media_type: OCI_MANIFEST.into(),
                blobs,
                mount_sources: Vec::new(),
            },
        );
        key.hex()
    }
}

/// The preimage of one instruction on a parent, with extra parts.
pub fn preimage(from: ParentKind, parent: &str, text: &str, extra: &[Part]) -> Preimage {
    let mut p = Preimage::new(from, parent);
    p.push(Part::Platform {
        platform: "linux/amd64".into(),
    });
    p.push(Part::Instruction {
        name: text.split_whitespace().next().unwrap().into(),
        text: text.into(),
    });
    for part in extra {
        p.push(part.clone());
    }
    p
}

pub fn arg(name: &str, value: &str) -> Part {
    Part::Arg {
        name: name.into(),
        value: value.into(),
    }
}

/// A kbuild command with no HOME, as `kubectl exec` into a shell-less step runs it.
pub fn debug_cmd(args: &[&str]) -> Command {
    let mut cmd = kbuild();
    cmd.args(args);
    cmd
}

/// Runs and returns (exit code, stdout, stderr).
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out: Output = run(cmd);
    let (stdout, stderr) = text(&out);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Snapshot settings: registry ports, temp paths, times, ages and digests that depend on time.
pub fn settings(reg: &CacheRegistry) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(&regex_escape(&reg.registry.addr()), "[REGISTRY]");
    s.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    s.add_filter(
        r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}Z)?)?",
        "YYYY-MM-DD",
    );
    s
}

pub fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// Every line at most 100 columns.
pub fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "line wider than 100 columns ({}):\n{line}\n\n{text}",
            line.chars().count()
        );
    }
}

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One instruction of a report written by a test.
#[derive(Clone)]
pub struct Step {
    pub text: String,
    pub extra: Vec<Part>,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub exit_code: Option<i32>,
    pub line: usize,
}

/// An instruction that missed the cache (`no_entry`) at a Dockerfile line.
pub fn step(line: usize, text: &str) -> Step {
    Step {
        text: text.into(),
        extra: Vec::new(),
        status: "miss",
        reason: Some("no_entry"),
        exit_code: None,
        line,
    }
}

impl Step {
    pub fn with(mut self, part: Part) -> Step {
        self.extra.push(part);
        self
    }
    pub fn hit(mut self) -> Step {
        self.status = "hit";
        self.reason = None;
        self
    }
}

/// A build report in the shape `kbuild build` writes (with the contract's cache fields): each
/// stage's keys chained from its base image digest. Returns the JSON and each stage's preimages.
pub fn report_json(
    repo: &str,
    stages: &[(&str, &str, Vec<Step>)],
    outcome: serde_json::Value,
) -> (serde_json::Value, Vec<Vec<Preimage>>) {
    let mut out = Vec::new();
    let mut all = Vec::new();
    for (index, (name, base, steps)) in stages.iter().enumerate() {
        let mut parent = (ParentKind::BaseImage, base.to_string());
        let mut instructions = Vec::new();
        let mut preimages = Vec::new();
        for s in steps {
            let p = preimage(parent.0, &parent.1, &s.text, &s.extra);
            let key = p.key();
            instructions.push(serde_json::json!({
                "location": format!("Dockerfile:{}", s.line),
                "original": s.text, "text": s.text,
                "exit_code": s.exit_code, "duration_ms": 1,
                "cache": {
                    "key": key.to_string(), "preimage": p, "status": s.status, "reason": s.reason,
                    "entry": (s.status == "hit").then(|| format!("{repo}:{}", key.hex())),
                    "created": null,
                }
            }));
            parent = (ParentKind::Instruction, key.to_string());
            preimages.push(p);
        }
        out.push(serde_json::json!({
            "index": index, "name": name, "from": format!("FROM {base}"),
            "instructions": instructions, "final_key": parent.1, "duration_ms": 1,
        }));
        all.push(preimages);
    }
    let report = serde_json::json!({
        "version": 1, "kbuild_version": "0.1.0", "dockerfile": "Dockerfile",
        "platform": "linux/amd64", "target": null, "destinations": [],
        "stages": out, "cross_stage_deps": [], "outcome": outcome, "duration_ms": 5,
        "phases": [], "cache_repo": repo, "isolation": "namespaces",
    });
    (report, all)
}

/// Writes a report file into `dir`.
pub fn write_report(dir: &Path, name: &str, report: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(report).unwrap()).unwrap();
    path
}

/// Checks a `--format json` document against `docs/debug-json.schema.json` (`def` names the
/// document kind: listing, entry_detail, files, find, diff, explanation).
pub fn assert_schema(def: &str, json: &str) {
    let mut schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/debug-json.schema.json")).unwrap();
    schema["$ref"] = serde_json::json!(format!("#/$defs/{def}"));
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let instance: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{def} does not match the documented schema:\n{}\n\n{json}",
        errors.join("\n")
    );
}
