//! Push and pull of a 1 GiB layer through a loopback registry: throughput and peak RSS.
//!
//! `cargo bench --bench registry` (add `-- --size-mib N` for another size). Starts Debian's
//! docker-registry with the integration tests' harness, writes an incompressible layer blob into
//! a blob store, pushes it, pulls it into a fresh store, and prints one table. Peak RSS is the
//! process's VmHWM, reset before each phase through /proc/self/clear_refs, so each row shows what
//! that phase needed; the registry's own memory is not counted. Not a test: numbers go to the
//! README's performance section by hand, with the machine described.

#[path = "../tests/it/harness/registry.rs"]
mod harness_registry;

use std::io::Write;
use std::time::Instant;

use kbuild::image::{ImageBuilder, LayerBlob};
use kbuild::registry::manifest::LayerCompression;
use kbuild::registry::{
    BlobStore, Keychain, RegistryClient, RegistryOptions, pull_image, push_image,
};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn reset_peak_rss() {
    // "5" resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size_mib: u64 = args
        .iter()
        .position(|a| a == "--size-mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let reg = harness_registry::Registry::start();
    let work = tempfile::tempdir().expect("temp dir");
    let src = BlobStore::open(work.path().join("src")).expect("store");
    let dst = BlobStore::open(work.path().join("dst")).expect("store");
    let mut rows: Vec<(String, f64, f64)> = Vec::new();

    reset_peak_rss();
    let started = Instant::now();
    let mut writer = src.writer().expect("blob writer");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..size_mib {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        writer.write_all(&chunk).expect("write blob");
    }
    let (digest, written) = writer.commit().expect("commit blob");
    rows.push((
        "write layer into store".into(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
    ));

    let mut builder = ImageBuilder::scratch(&src, &"linux/amd64".parse().unwrap());
    builder.add_layer(
        LayerBlob {
            digest,
            size: written,
            diff_id: digest,
            compression: LayerCompression::Gzip,
        },
        Default::default(),
    );
    let image = builder.build().expect("image");
    let client = RegistryClient::new(RegistryOptions::default(), Keychain::anonymous());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dest: kbuild::registry::Reference = format!("{}/bench/big:1", reg.addr()).parse().unwrap();

    reset_peak_rss();
    let started = Instant::now();
    rt.block_on(push_image(
        &client,
        &image.to_push(),
        std::slice::from_ref(&dest),
        &src,
    ))
    .expect("push");
    rows.push((
        "push (monolithic upload)".into(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
    ));

    reset_peak_rss();
    let started = Instant::now();
    let pulled = rt
        .block_on(pull_image(
            &client,
            &dest,
            &"linux/amd64".parse().unwrap(),
            &dst,
        ))
        .expect("pull");
    rows.push((
        "pull (verified download)".into(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
    ));
    assert_eq!(pulled.digest(), image.digest);
    assert!(dst.contains(&digest));

    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header(["phase", "bytes", "seconds", "MiB/s", "peak RSS (MiB)"]);
    for (phase, seconds, rss) in rows {
        table.add_row([
            phase,
            written.to_string(),
            format!("{seconds:.2}"),
            format!("{:.0}", size_mib as f64 / seconds),
            format!("{rss:.1}"),
        ]);
    }
    println!("{table}");
}
