//! Which instructions a change misses, read from the build report: every case starts from the
//! entries of one baseline build and changes one input.

use super::{Report, cached_build, files};
use crate::build::{World, assert_success};

/// Two stages: the builder writes /tools.txt (sees nothing), /version.txt (sees ARG VERSION) and
/// /out.txt (from the context and ENV MODE, not VERSION); the final stage writes something of its
/// own, then copies /out.txt and uses it.
const DOCKERFILE: &str = "ARG BASE
FROM $BASE AS builder
RUN echo tools > /tools.txt
ARG VERSION=1
RUN echo \"v=$VERSION\" > /version.txt
ENV MODE=dev
COPY src/ /src/
RUN cat /src/main.txt > /out.txt && echo \"$MODE\" >> /out.txt
FROM $BASE
RUN echo runtime > /runtime.txt
COPY --from=builder /out.txt /app/out.txt
RUN cat /app/out.txt > /app/final.txt
";

/// The probed instructions, by the start of their text, in Dockerfile order.
const PROBED: [&str; 5] = [
    "RUN echo tools",
    "RUN echo \"v=",
    "RUN cat /src/main.txt",
    "RUN echo runtime",
    "RUN cat /app/out.txt",
];

fn context(world: &World, name: &str, dockerfile: &str, main: &str) -> std::path::PathBuf {
    files(
        &world.context(name),
        &[("Dockerfile", dockerfile), ("src/main.txt", main)],
    )
}

/// (status, reason) of every probed instruction.
fn probed(report: &Report) -> Vec<(String, String)> {
    PROBED
        .iter()
        .map(|p| {
            let s = report.status_of(p);
            (s.status, s.reason)
        })
        .collect()
}

fn expect(spec: [&str; 5]) -> Vec<(String, String)> {
    spec.iter()
        .map(|s| match s.split_once(':') {
            Some((status, reason)) => (status.to_string(), reason.to_string()),
            None => (s.to_string(), String::new()),
        })
        .collect()
}

#[test]
fn cache_each_change_misses_exactly_what_it_should() {
    let world = World::new();
    let base2 = files(
        &world.context("base2"),
        &[(
            "Dockerfile",
            "ARG BASE\nFROM $BASE\nRUN echo 2 > /etc/base-version\n",
        )],
    );
    assert_success(&world.build(&base2, "base:2", &[]));
    let base2_arg = format!("--build-arg=BASE={}", world.image("base:2"));

    let baseline = context(&world, "baseline", DOCKERFILE, "main\n");
    let (out, cold) = cached_build(&world, &baseline, "table:base", &[]);
    assert_success(&out);
    assert_eq!(
        probed(&cold),
        expect([
            "miss:no_entry",
            "miss:parent_missed",
            "miss:parent_missed",
            "miss:no_entry",
            "miss:parent_missed",
        ]),
        "a cold build misses everything; only the first miss of each chain is `no_entry`"
    );
    let (out, warm) = cached_build(&world, &baseline, "table:warm", &[]);
    assert_success(&out);
    assert_eq!(probed(&warm), expect(["hit"; 5]));
    assert_eq!(warm.digest(), cold.digest());

    let cases: Vec<(&str, std::path::PathBuf, Vec<String>, [&str; 5])> = vec![
        (
            // VERSION is seen by the RUN writing /version.txt and every RUN after it in the
            // builder; /out.txt does not change, so the final stage hits.
            "build arg",
            baseline.clone(),
            vec!["--build-arg=VERSION=2".into()],
            ["hit", "miss:no_entry", "miss:parent_missed", "hit", "hit"],
        ),
        (
            "context file",
            context(&world, "ctx-file", DOCKERFILE, "changed\n"),
            vec![],
            ["hit", "hit", "miss:no_entry", "hit", "miss:no_entry"],
        ),
        (
            "env",
            context(
                &world,
                "env",
                &DOCKERFILE.replace("MODE=dev", "MODE=prod"),
                "main\n",
            ),
            vec![],
            ["hit", "hit", "miss:no_entry", "hit", "miss:no_entry"],
        ),
        (
            "base image",
            baseline.clone(),
            vec![base2_arg],
            [
                "miss:no_entry",
                "miss:parent_missed",
                "miss:parent_missed",
                "miss:no_entry",
                "miss:parent_missed",
            ],
        ),
        (
            // The whole builder runs again but produces the same /out.txt: what the final stage
            // copies is the same, so it hits.
            "producer rebuilt, copied file unchanged",
            context(
                &world,
                "producer-same",
                &DOCKERFILE.replace("echo tools", "echo tools v2"),
                "main\n",
            ),
            vec![],
            [
                "miss:no_entry",
                "miss:parent_missed",
                "miss:parent_missed",
                "hit",
                "hit",
            ],
        ),
        (
            "file in a producer stage changed",
            context(
                &world,
                "producer-file",
                &DOCKERFILE.replace("echo \"$MODE\"", "echo \"$MODE!\""),
                "main\n",
            ),
            vec![],
            ["hit", "hit", "miss:no_entry", "hit", "miss:no_entry"],
        ),
    ];
    for (i, (name, ctx, extra, spec)) in cases.into_iter().enumerate() {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (out, report) = cached_build(&world, &ctx, &format!("table:case{i}"), &extra);
        assert_success(&out);
        assert_eq!(
            probed(&report),
            expect(spec),
            "case {name:?}: {:#?}",
            report.statuses()
        );
    }
}

/// A file's name is part of the key; its mtime is not (`--cache-copy-layers` probes the COPY).
#[test]
fn cache_renaming_a_file_misses_and_touching_it_hits() {
    let world = World::new();
    let dockerfile = "ARG BASE\nFROM $BASE\nCOPY src/ /src/\nRUN ls /src > /list\n";
    let ctx = files(
        &world.context("rename"),
        &[("Dockerfile", dockerfile), ("src/a.txt", "same\n")],
    );
    let flags = ["--cache-copy-layers=true"];
    let (out, first) = cached_build(&world, &ctx, "rename:1", &flags);
    assert_success(&out);

    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(ctx.join("src/a.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (out, touched) = cached_build(&world, &ctx, "rename:2", &flags);
    assert_success(&out);
    assert_eq!(
        touched.status_of("COPY").key,
        first.status_of("COPY").key,
        "an mtime is not part of a key"
    );
    assert_eq!(touched.status_of("COPY").status, "hit");
    assert_eq!(touched.status_of("RUN").status, "hit");
    assert_eq!(touched.digest(), first.digest());

    std::fs::rename(ctx.join("src/a.txt"), ctx.join("src/b.txt")).unwrap();
    let (out, renamed) = cached_build(&world, &ctx, "rename:3", &flags);
    assert_success(&out);
    let copy = renamed.status_of("COPY");
    assert_ne!(copy.key, first.status_of("COPY").key);
    assert_eq!(
        (copy.status.as_str(), copy.reason.as_str()),
        ("miss", "no_entry")
    );
    let run = renamed.status_of("RUN");
    assert_eq!(
        (run.status.as_str(), run.reason.as_str()),
        ("miss", "parent_missed")
    );
    let preimage = renamed.0["stages"][0]["instructions"][0]["cache"]["preimage"].to_string();
    assert!(preimage.contains(r#""path":"src/b.txt""#), "{preimage}");
    assert_eq!(world.pull("rename:3").read("/list"), "b.txt\n");
}

/// An entry written with other layer settings is never reused: its bytes would differ from what
/// this build writes, and a warm image must equal a cold one.
#[test]
fn cache_layer_format_is_part_of_the_key() {
    let world = World::new();
    let ctx = files(
        &world.context("format"),
        &[("Dockerfile", "ARG BASE\nFROM $BASE\nRUN echo x > /x\n")],
    );
    let (out, gzip) = cached_build(&world, &ctx, "format:gzip", &[]);
    assert_success(&out);
    let (out, zstd) = cached_build(&world, &ctx, "format:zstd", &["--compression=zstd"]);
    assert_success(&out);
    let run = zstd.status_of("RUN");
    assert_eq!(
        (run.status.as_str(), run.reason.as_str()),
        ("miss", "no_entry")
    );
    assert_ne!(run.key, gzip.status_of("RUN").key);
    let (out, zstd_warm) = cached_build(&world, &ctx, "format:zstd2", &["--compression=zstd"]);
    assert_success(&out);
    assert_eq!(zstd_warm.status_of("RUN").status, "hit");
    assert_eq!(zstd_warm.digest(), zstd.digest());
}

/// `ADD <url>` is keyed by what the URL served: the registry's blob endpoint serves a known
/// digest.
#[test]
fn cache_add_url_is_keyed_by_its_content() {
    let world = World::new();
    let layer = layer_digest(&world);
    let url = format!("http://{}/v2/base/blobs/{layer}", world.registry.addr());
    let ctx = files(
        &world.context("add-url"),
        &[(
            "Dockerfile",
            &format!(
                "ARG BASE\nFROM $BASE\nADD {url} /downloads/layer.tgz\nRUN ls -l /downloads > /list\n"
            ),
        )],
    );
    let (out, cold) = cached_build(&world, &ctx, "add-url:1", &[]);
    assert_success(&out);
    let add = &cold.0["stages"][0]["instructions"][0]["cache"];
    let parts = add["preimage"]["parts"].as_array().unwrap();
    let url_part = parts.iter().find(|p| p["part"] == "url").unwrap();
    assert_eq!(url_part["url"], url.as_str());
    assert_eq!(url_part["digest"], layer.as_str());
    let (out, warm) = cached_build(&world, &ctx, "add-url:2", &[]);
    assert_success(&out);
    assert_eq!(warm.status_of("ADD").status, "hit");
    assert_eq!(warm.status_of("RUN").status, "hit");
    assert_eq!(warm.digest(), cold.digest());
}

fn layer_digest(world: &World) -> String {
    let options = kbuild::registry::RegistryOptions {
        insecure_pull: true,
        ..Default::default()
    };
    let client =
        kbuild::registry::RegistryClient::new(options, kbuild::registry::Keychain::anonymous());
    let dir = tempfile::tempdir().unwrap();
    let store = kbuild::registry::BlobStore::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pulled = runtime
        .block_on(kbuild::registry::pull_image(
            &client,
            &world.base().parse().unwrap(),
            &kbuild::platform::Platform::host(),
            &store,
        ))
        .unwrap();
    pulled.layers()[0].digest.to_string()
}
