//! `kbuild cache inspect`: listings, one entry, `--files`, `--find`, OCI layouts, credentials.

use kbuild::cache::key::ParentKind;
use kbuild::image::ImageBuilder;
use kbuild::platform::Platform;
use kbuild::registry::{BlobStore, Keychain};

use super::*;

pub const K_VERSION: &str = "4b43d7313b8b8af5c0e3ebd1694937a9fea937675033272a86ab7f0671be13d4";
pub const K_BUILD: &str = "70ea8c1077c64d8072e4e607affb697691384adfb77bfac37235b3ed2896370a";
pub const K_CP: &str = "e19cc2928985083ca079bfc1758eb81d1cbdc6211f168f162942cc3b74afe862";
pub const GO_BUILD: &str =
    "RUN cd services/platform/zego-streaming  && go build -o zego-streaming ./cmd/server";
pub const CP: &str =
    "RUN cp third_party/zego/lib/libZegoLiveRoom.so third_party/brpc/lib/libbrpc.a /usr/local/lib/";

/// The keys of the kbuild entries [`fill`] pushes.
pub struct Keys {
    pub copy: String,
    pub build: String,
    pub empty: String,
}

/// `app/cache` with three kbuild entries (one expired, one without a layer) and the three
/// Kaniko entries of the zego-streaming log (the `go build` one with an empty layer: poisoned).
pub fn fill(reg: &CacheRegistry) -> Keys {
    let repo = reg.repo("app/cache");
    // One instant for every entry, so entries of the same age are the same age to the second.
    let now = SystemTime::now();
    let created_ago = |ago: Duration| humantime::format_rfc3339_seconds(now - ago).to_string();
    let copy = preimage(
        ParentKind::BaseImage,
        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "COPY go.mod /src/",
        &[],
    );
    let copy_key = reg.push_kbuild(
        &repo,
        &copy,
        "COPY go.mod /src/",
        Some(&[
            T::Dir("src/"),
            T::File("src/go.mod", 0o644, b"module app\n"),
        ]),
        &created_ago(3 * DAY),
    );
    let build = preimage(
        ParentKind::Instruction,
        &format!("sha256:{copy_key}"),
        "RUN go build -o /out/app",
        &[arg("GOPROXY", "https://goproxy.example")],
    );
    let build_key = reg.push_kbuild(
        &repo,
        &build,
        "RUN go build -o /out/app",
        Some(&[
            T::Dir("out/"),
            T::File("out/app", 0o755, b"\x7fELF binary"),
            T::Link("out/current", "app"),
            T::Gone("tmp/build.log"),
        ]),
        &created_ago(2 * DAY),
    );
    let empty = preimage(
        ParentKind::Instruction,
        &format!("sha256:{build_key}"),
        "RUN true",
        &[],
    );
    let empty_key = reg.push_kbuild(&repo, &empty, "RUN true", None, &created_ago(20 * DAY));
    reg.push_kaniko(&repo, K_VERSION, "RUN go version", &[], &created_ago(DAY));
    reg.push_kaniko(&repo, K_BUILD, GO_BUILD, &[], &created_ago(DAY));
    reg.push_kaniko(
        &repo,
        K_CP,
        CP,
        &[
            T::Dir("usr/local/lib/"),
            T::File("usr/local/lib/libZegoLiveRoom.so", 0o644, b"so"),
            T::File("usr/local/lib/libbrpc.a", 0o644, b"a"),
        ],
        &created_ago(DAY),
    );
    Keys {
        copy: copy_key,
        build: build_key,
        empty: empty_key,
    }
}

/// Manifest and config digests change with the `created` times (relative to now).
fn detail_settings(reg: &CacheRegistry) -> insta::Settings {
    let mut s = settings(reg);
    s.add_filter(
        r"(manifest|config)(\s+)sha256:[0-9a-f]{64}",
        "$1${2}sha256:[DIGEST]",
    );
    s
}

fn inspect(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["cache", "inspect"];
    all.extend_from_slice(args);
    output(&mut debug_cmd(&all))
}

#[test]
fn inspect_lists_every_entry_with_kind_age_and_ttl() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    let repo = reg.repo("app/cache");
    let (code, stdout, stderr) = inspect(&[&repo]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains('\x1b'), "no colour off a terminal");
    assert_fits(&stdout);
    assert!(
        stdout.contains("6 entries (3 kbuild, 3 Kaniko)"),
        "{stdout}"
    );
    settings(&reg).bind(|| insta::assert_snapshot!("inspect_listing", stdout));

    let (code, json, _) = inspect(&[&repo, "--format", "json"]);
    assert_eq!(code, 0);
    assert_schema("listing", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], 1);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    let by_tag = |tag: &str| entries.iter().find(|e| e["tag"] == tag).unwrap().clone();
    assert_eq!(by_tag(&keys.empty)["expired"], true, "20 days > 336h");
    assert_eq!(by_tag(&keys.empty)["layers"].as_array().unwrap().len(), 0);
    assert_eq!(by_tag(&keys.build)["expired"], false);
    assert_eq!(by_tag(&keys.build)["kind"], "kbuild");
    assert_eq!(by_tag(&keys.build)["schema"], 1);
    assert_eq!(by_tag(K_BUILD)["kind"], "kaniko");
    assert_eq!(by_tag(K_BUILD)["instruction"], GO_BUILD);
    assert!(by_tag(K_BUILD).get("preimage").is_none());
    let age = by_tag(&keys.copy)["age_seconds"].as_u64().unwrap();
    assert!((3 * 86_400..3 * 86_400 + 120).contains(&age), "{age}");

    // A shorter TTL expires more entries.
    let (_, json, _) = inspect(&[&repo, "--format", "json", "--cache-ttl", "36h"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let expired = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["expired"] == true)
        .count();
    assert_eq!(expired, 3);
}

#[test]
fn inspect_of_an_empty_or_missing_repository_lists_nothing() {
    let reg = CacheRegistry::new();
    let (code, stdout, stderr) = inspect(&[&reg.repo("nobody/cache")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("0 entries") && stdout.contains("no entries"),
        "{stdout}"
    );
}

#[test]
fn inspect_shows_a_kbuild_entry_with_its_preimage() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    // A 12-character key prefix names the entry, as the listing shows it.
    let target = format!("{}:{}", reg.repo("app/cache"), &keys.build[..12]);
    let (code, stdout, stderr) = inspect(&[&target]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(stdout.contains(&keys.build), "the full key is shown");
    assert!(stdout.contains("GOPROXY") && stdout.contains("https://goproxy.example"));
    assert!(stdout.contains("application/vnd.oci.image.layer.v1.tar+gzip"));
    detail_settings(&reg).bind(|| insta::assert_snapshot!("inspect_kbuild_entry", stdout));

    let (_, json, _) = inspect(&[&target, "--format", "json"]);
    assert_schema("entry_detail", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["entry"]["key"], format!("sha256:{}", keys.build));
    assert_eq!(v["entry"]["preimage"]["parts"][4]["name"], "GOPROXY");
    assert!(
        v["entry"]["problems"].is_null(),
        "a well-formed entry has no problems"
    );
}

#[test]
fn inspect_shows_a_kaniko_entry_and_says_it_has_no_preimage() {
    let reg = CacheRegistry::new();
    fill(&reg);
    let target = format!("{}:{K_CP}", reg.repo("app/cache"));
    let (code, stdout, stderr) = inspect(&[&target]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(
        stdout.contains("Kaniko (history author \"kaniko\")"),
        "{stdout}"
    );
    assert!(stdout.contains("No preimage"), "{stdout}");
    detail_settings(&reg).bind(|| insta::assert_snapshot!("inspect_kaniko_entry", stdout));
}

#[test]
fn unknown_keys_and_ambiguous_prefixes_are_errors_with_hints() {
    let reg = CacheRegistry::new();
    fill(&reg);
    let repo = reg.repo("app/cache");
    let (code, _, stderr) = inspect(&[&format!("{repo}:{}", "0".repeat(64))]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no cache entry") && stderr.contains("hint: `kbuild cache inspect"),
        "{stderr}"
    );
    let (code, _, stderr) = inspect(&[&format!("{repo}:latest")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the tag is not a cache key"), "{stderr}");
    let (code, _, stderr) = inspect(&[&repo, "--files"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--files and --find need one entry"),
        "{stderr}"
    );
}

#[test]
fn files_streams_the_layer_with_whiteouts_and_links_marked() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    let target = format!("{}:{}", reg.repo("app/cache"), keys.build);
    let (code, stdout, stderr) = inspect(&[&target, "--files"]);
    assert_eq!(code, 0, "{stderr}");
    assert_fits(&stdout);
    assert!(stdout.contains("-rwxr-xr-x 0/0"), "{stdout}");
    assert!(stdout.contains("/out/current -> app"), "{stdout}");
    assert!(
        stdout.contains("/tmp/build.log  (whiteout: deleted by this layer)"),
        "{stdout}"
    );
    settings(&reg).bind(|| insta::assert_snapshot!("inspect_files", stdout));

    let (code, json, _) = inspect(&[&target, "--files", "--format", "json"]);
    assert_eq!(code, 0);
    assert_schema("files", &json);
    let v: serde_json::Value = serde_json::from_str(&json).expect("streamed JSON is one document");
    let files = v["layers"][0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 4);
    assert_eq!(files[1]["path"], "/out/app");
    assert_eq!(files[1]["mode"], "0755");
    assert_eq!(files[1]["size"], 11);
    assert_eq!(files[3]["type"], "whiteout");
    assert_eq!(v["layers"][0]["summary"]["files"], 1);

    // An entry without a layer says so.
    let (code, stdout, _) = inspect(&[
        &format!("{}:{}", reg.repo("app/cache"), keys.empty),
        "--files",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("no layer: the instruction changed nothing"),
        "{stdout}"
    );
}

#[test]
fn find_answers_with_its_exit_code() {
    let reg = CacheRegistry::new();
    let keys = fill(&reg);
    let target = format!("{}:{}", reg.repo("app/cache"), keys.build);
    let (code, stdout, stderr) = inspect(&[&target, "--find", "/out/app"]);
    assert_eq!(code, 0, "{stderr}");
    settings(&reg).bind(|| insta::assert_snapshot!("find_present", stdout));
    let (code, stdout, _) = inspect(&[&target, "--find", "out/*"]);
    assert_eq!(code, 0, "relative globs are from /");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("  -") || l.starts_with("  l"))
            .count(),
        2
    );
    let (code, stdout, stderr) = inspect(&[&target, "--find", "/out/app.debug"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stdout.contains("/out/app.debug is not in the layer"),
        "{stdout}"
    );
    assert!(stderr.contains("hint: `kbuild cache inspect"), "{stderr}");
    let (code, stdout, _) = inspect(&[&target, "--find", "/tmp/build.log"]);
    assert_eq!(code, 4, "a whiteout deletes, it is not a file");
    assert!(stdout.contains("deleted by the layer"), "{stdout}");
    let (code, json, _) = inspect(&[&target, "--find", "/out/**", "--format", "json"]);
    assert_eq!(code, 0);
    assert_schema("find", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["present"], true);
    assert_eq!(v["matches"].as_array().unwrap().len(), 2);

    // The poisoned Kaniko entry: its layer is empty, the binary is not in it.
    let kaniko = format!("{}:{K_BUILD}", reg.repo("app/cache"));
    let zego = "/workspace/services/platform/zego-streaming/zego-streaming";
    let (code, stdout, _) = inspect(&[&kaniko, "--find", zego]);
    assert_eq!(code, 4);
    settings(&reg).bind(|| insta::assert_snapshot!("find_absent_in_poisoned_entry", stdout));
}

#[test]
fn an_oci_layout_cache_reads_like_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("store")).unwrap();
    let mut image = ImageBuilder::scratch(&store, &Platform::host());
    image
        .add_layer_tar(
            &layer_tar(&[T::File("etc/motd", 0o644, b"hi\n")])[..],
            "RUN echo hi > /etc/motd",
        )
        .unwrap();
    image.config_mut().created = Some("2026-01-01T00:00:00Z".into());
    image.config_mut().history[0].author = Some("kaniko".into());
    let built = image.build().unwrap();
    let layout = dir.path().join("layout");
    kbuild::image::write_oci_layout(&built, &store, &layout, Some(K_CP)).unwrap();
    let target = format!("oci:{}", layout.display());
    let (code, stdout, stderr) = inspect(&[&target, "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_schema("listing", &stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["entries"][0]["tag"], K_CP);
    assert_eq!(v["entries"][0]["kind"], "kaniko");
    let (code, stdout, stderr) =
        inspect(&[&format!("{target}:{}", &K_CP[..8]), "--find", "/etc/motd"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// `kubectl exec POD -c step-build -- /kbuild cache inspect ...`: no shell, no HOME, an
/// environment with little more than DOCKER_CONFIG; credentials are read as `kbuild build`
/// reads them.
#[test]
fn credentials_come_from_docker_config_without_home_or_shell() {
    let registry = Registry::with_auth("ci", "s3cret");
    let creds = tempfile::tempdir().unwrap();
    let auth = base64_auth("ci", "s3cret");
    std::fs::write(
        creds.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let keychain = Keychain::load(&[creds.path().join("config.json")]).unwrap();
    let reg = CacheRegistry::on(registry, keychain);
    let repo = reg.repo("app/cache");
    reg.push_kaniko(&repo, K_VERSION, "RUN go version", &[], &created_ago(DAY));

    let exec = |docker_config: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbuild"));
        cmd.env_clear()
            .env("HOME", "/nonexistent/home")
            .args(["cache", "inspect", &repo, "--format", "json"]);
        if let Some(dir) = docker_config {
            cmd.env("DOCKER_CONFIG", dir);
        }
        output(&mut cmd)
    };
    let (code, stdout, stderr) = exec(Some(creds.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(K_VERSION));
    let (code, _, stderr) = exec(None);
    assert_eq!(code, 1);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/home/.docker/config.json"),
        "says where it looked: {stderr}"
    );
}

fn base64_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// Memory never grows with the layer: a layer of 96 MiB of incompressible bytes is listed and
/// searched with a peak RSS far below its size (kbuild logs its own VmHWM after each layer).
#[test]
fn files_and_find_stream_a_large_layer_in_flat_memory() {
    const SIZE: usize = 96 << 20;
    let reg = CacheRegistry::new();
    let repo = reg.repo("big/cache");
    let mut data = vec![0u8; SIZE];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_exact_mut(8) {
        // xorshift64: incompressible enough that the blob is as large as the file.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    reg.push_kaniko(
        &repo,
        K_VERSION,
        "RUN make big",
        &[T::File("data/big.bin", 0o644, &data)],
        &created_ago(DAY),
    );
    drop(data);
    let target = format!("{repo}:{K_VERSION}");
    let peak = |stderr: &str| -> u64 {
        let line = stderr
            .lines()
            .find(|l| l.contains("peak memory"))
            .unwrap_or_else(|| panic!("no peak memory line:\n{stderr}"));
        let kib = line.rsplit("peak memory ").next().unwrap();
        kib.trim_end_matches(" KiB").trim().parse().unwrap()
    };
    let (code, stdout, stderr) = inspect(&[&target, "--files"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("100663296 /data/big.bin"), "{stdout}");
    assert!(stdout.contains("96.0 MiB"), "{stdout}");
    let files_peak = peak(&stderr);
    let (code, _, stderr) = inspect(&[&target, "--find", "/data/big.bin"]);
    assert_eq!(code, 0, "{stderr}");
    let find_peak = peak(&stderr);
    for (what, kib) in [("--files", files_peak), ("--find", find_peak)] {
        assert!(
            kib > 0 && kib < 48 * 1024,
            "{what} peaked at {kib} KiB for a {} MiB layer",
            SIZE >> 20
        );
    }
}

/// The build's TLS flags reach the cache repository: a self-signed registry is refused by
/// default, read with its certificate, and read with the build's `--skip-tls-verify`.
#[test]
fn tls_flags_of_the_build_reach_the_cache_repository() {
    let registry = Registry::with_tls();
    let mut certs = std::collections::BTreeMap::new();
    certs.insert(registry.addr(), registry.certificate());
    let options = kbuild::registry::RegistryOptions {
        registry_certificates: certs,
        ..Default::default()
    };
    let cert = format!(
        "--registry-certificate={}={}",
        registry.addr(),
        registry.certificate().display()
    );
    let reg = CacheRegistry::with_options(registry, Keychain::anonymous(), options);
    let repo = reg.repo("secure/cache");
    reg.push_kaniko(&repo, K_VERSION, "RUN go version", &[], &created_ago(DAY));
    let (code, _, stderr) = inspect(&[&repo]);
    assert_eq!(code, 1);
    assert!(stderr.contains("certificate"), "{stderr}");
    for flag in [cert.as_str(), "--skip-tls-verify", "--skip-tls-verify-pull"] {
        let (code, stdout, stderr) = inspect(&[&repo, flag]);
        assert_eq!(code, 0, "{flag}: {stderr}");
        assert!(
            stdout.contains("1 entry (0 kbuild, 1 Kaniko)"),
            "{flag}: {stdout}"
        );
    }
}

/// Tags that are not keys are skipped; an image that is neither kind is listed as unknown.
#[test]
fn other_images_in_a_cache_repository_are_not_mistaken_for_entries() {
    let reg = CacheRegistry::new();
    let repo = reg.repo("mixed/cache");
    reg.push_kaniko(&repo, K_VERSION, "RUN go version", &[], &created_ago(DAY));
    let store_dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(store_dir.path()).unwrap();
    let plain = |tag: &str| {
        let mut image = ImageBuilder::scratch(&store, &Platform::host());
        image
            .add_layer_tar(&layer_tar(&[T::File("x", 0o644, b"x")])[..], "COPY x /")
            .unwrap();
        let built = image.build().unwrap();
        let dest: kbuild::registry::Reference = format!("{repo}:{tag}").parse().unwrap();
        let client =
            kbuild::registry::RegistryClient::new(Default::default(), Keychain::anonymous());
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(kbuild::registry::push_image(
                &client,
                &built.to_push(),
                &[dest],
                &store,
            ))
            .unwrap();
    };
    plain("latest");
    plain(K_CP);
    let (code, stdout, stderr) = inspect(&[&repo, "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("skipped 1 tag(s) that are not cache keys"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let kinds: Vec<(&str, &str)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["tag"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds.contains(&(K_CP, "unknown")) && kinds.contains(&(K_VERSION, "kaniko")),
        "{kinds:?}"
    );
    let (code, stdout, _) = inspect(&[&format!("{repo}:{K_CP}")]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("unknown: neither a kbuild nor a Kaniko cache entry"),
        "{stdout}"
    );
}
