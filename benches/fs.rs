//! Benchmark of the rootfs engine: snapshots against hashing every file, extraction, layer
//! writing. Prints a table with the machine's description.
//!
//! Run: `cargo bench --bench fs` (set `KBUILD_BENCH_DIR` to choose the scratch directory, which
//! needs about 6 GB; the default is the system temp dir). Each measurement runs in its own child
//! process so its peak RSS (VmHWM) is its own.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kbuild::fs::{
    Changes, Compression, IgnoreList, LayerOptions, Root, SnapshotMode, Snapshotter, extract_layer,
    write_layer,
};
use sha2::Digest as _;

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "layer",
        "rootfs",
        "snapshot",
        "kbuild",
        "image",
        "registry",
        "cache",
        "file",
        "directory",
        "return",
        "function",
        "struct",
        "impl",
        "let",
        "mut",
        "if",
        "else",
        "0x1f",
        "{",
        "}",
        "(",
        ")",
        ";",
        "\n",
        "    ",
        "error",
        "digest",
        "sha256",
        "config",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

fn random(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A rootfs-like tree: `n` files in 100-file directories, sizes mostly small, some large.
fn make_tree(dir: &Path, n: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    let pool = text(&mut rng, 4 << 20);
    for i in 0..n {
        let d = dir.join(format!("d{:03}/s{:02}", i / 1000, (i / 100) % 10));
        if i % 100 == 0 {
            std::fs::create_dir_all(&d).unwrap();
        }
        let size = match rng.below(100) {
            0..60 => rng.below(2048),
            60..95 => 2048 + rng.below(30 * 1024),
            _ => 32 * 1024 + rng.below(224 * 1024),
        } as usize;
        let start = rng.below((pool.len() - size) as u64) as usize;
        std::fs::write(d.join(format!("f{i:06}")), &pool[start..start + size]).unwrap();
    }
}

/// 1 GiB in 4 MiB files: a third random, a third text, a third sparse binary.
fn make_mixed(dir: &Path) {
    let mut rng = Rng(42);
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..256 {
        let data = match i % 3 {
            0 => random(&mut rng, 4 << 20),
            1 => text(&mut rng, 4 << 20),
            _ => {
                let mut d = random(&mut rng, 4 << 20);
                for chunk in d.chunks_mut(4096) {
                    let keep = rng.below(1024) as usize;
                    chunk[keep..].fill(0);
                }
                d
            }
        };
        std::fs::write(dir.join(format!("blob{i:03}")), data).unwrap();
    }
}

/// Kaniko's default: read and hash every regular file (sha256 here).
fn hash_everything(dir: &Path, buf: &mut [u8]) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let md = entry.metadata().unwrap();
        if md.is_dir() {
            let (f, b) = hash_everything(&entry.path(), buf);
            files += f;
            bytes += b;
        } else if md.is_file() {
            let mut h = sha2::Sha256::new();
            let mut file = std::fs::File::open(entry.path()).unwrap();
            loop {
                let n = file.read(buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                bytes += n as u64;
            }
            std::hint::black_box(h.finalize());
            files += 1;
        }
    }
    (files, bytes)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system, all threads) this process used so far. /proc reports clock
/// ticks, which are USER_HZ = 100 per second on Linux.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the line; 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Counts bytes, discards them.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One measurement, run in a child process; prints `name|value|unit|rss` lines.
fn phase(args: &[String]) {
    let dir = PathBuf::from(&args[1]);
    let report = |name: &str, value: f64, unit: &str| {
        println!("{name}|{value:.1}|{unit}|{:.1}", peak_rss_mb());
    };
    match args[0].as_str() {
        "tree" => {
            make_tree(&dir, args[2].parse().unwrap());
            // Written back before anything is timed: the walk and the hashing should not
            // compete with the kernel flushing the tree just made.
            rustix::fs::sync();
        }
        "mixed" => make_mixed(&dir),
        "snapshot" => {
            let root = Root::open(&dir).unwrap();
            let t = Instant::now();
            let mut snap = Snapshotter::new(&root, SnapshotMode::Full, IgnoreList::new()).unwrap();
            let index_ms = t.elapsed().as_secs_f64() * 1e3;
            let n = snap.index().len();
            // Five rounds of "a step changed 10 files", each a different 10; the median counts.
            let mut rounds = Vec::new();
            for round in 0..5 {
                std::thread::sleep(std::time::Duration::from_millis(200));
                for i in 0..10 {
                    let f = (i * (n / 11) / 100 * 100 + round * 7) % n;
                    let path = dir.join(format!("d{:03}/s{:02}/f{f:06}", f / 1000, (f / 100) % 10));
                    std::fs::write(&path, format!("changed {round} {i}")).unwrap();
                }
                let t = Instant::now();
                let cpu = cpu_secs();
                let changes = snap.snapshot(&root).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let cpu_ms = (cpu_secs() - cpu) * 1e3;
                assert_eq!(changes.len(), 10, "{changes:?}");
                rounds.push((ms, cpu_ms));
            }
            rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ms, cpu_ms) = rounds[rounds.len() / 2];
            report("index", index_ms, "ms");
            report("snapshot", ms, "ms");
            report("snapshot-cpu", cpu_ms, "ms");
        }
        "hashall" => {
            let mut buf = vec![0u8; 256 * 1024];
            let t = Instant::now();
            let cpu = cpu_secs();
            let (files, bytes) = hash_everything(&dir, &mut buf);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            report("hashall", ms, "ms");
            report("hashall-cpu", (cpu_secs() - cpu) * 1e3, "ms");
            report("hashall-files", files as f64, "files");
            report("hashall-bytes", bytes as f64 / 1e6, "MB");
        }
        "write" => {
            let compression = match args[2].as_str() {
                "gzip" => Compression::Gzip,
                "zstd" => Compression::Zstd,
                _ => Compression::None,
            };
            let out = args.get(3);
            let root = Root::open(&dir).unwrap();
            let changes = Changes::from_paths(&root, root.read_dir("/").unwrap(), true).unwrap();
            // KBUILD_BENCH_THREADS overrides the zstd worker count (0: every core).
            let threads = std::env::var("KBUILD_BENCH_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let options = LayerOptions {
                compression,
                threads,
                ..LayerOptions::default()
            };
            let t = Instant::now();
            let cpu = cpu_secs();
            let info = match out {
                Some(path) => {
                    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
                    write_layer(&root, &changes, &options, file)
                        .unwrap()
                        .unwrap()
                }
                None => write_layer(&root, &changes, &options, Counter(0))
                    .unwrap()
                    .unwrap(),
            };
            let s = t.elapsed().as_secs_f64();
            report(
                "write",
                info.uncompressed_size as f64 / s / 1048576.0,
                "MiB/s",
            );
            report(
                "ratio",
                info.uncompressed_size as f64 / info.compressed_size as f64,
                "x",
            );
            report("cores", (cpu_secs() - cpu) / s, "cores");
        }
        "zstd1" => {
            // The reference: libzstd level 3 on one core, over the same bytes, no tar or hashing.
            let mut data = Vec::new();
            let mut total = 0u64;
            let t = Instant::now();
            let cpu = cpu_secs();
            let mut enc = zstd::stream::write::Encoder::new(Counter(0), 3).unwrap();
            if let Some(n) = args.get(2) {
                enc.multithread(n.parse().unwrap()).unwrap();
            }
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for p in names {
                data.clear();
                std::fs::File::open(p)
                    .unwrap()
                    .read_to_end(&mut data)
                    .unwrap();
                enc.write_all(&data).unwrap();
                total += data.len() as u64;
            }
            enc.finish().unwrap();
            let s = t.elapsed().as_secs_f64();
            report("zstd1", total as f64 / s / 1048576.0, "MiB/s");
            report("cores", (cpu_secs() - cpu) / s, "cores");
        }
        "extract" => {
            let layer = std::fs::File::open(&args[2]).unwrap();
            let root = Root::open(&dir).unwrap();
            let t = Instant::now();
            let r = extract_layer(&root, "bench", std::io::BufReader::new(layer)).unwrap();
            let s = t.elapsed().as_secs_f64();
            report("extract-files", r.files as f64 / s, "files/s");
            report("extract-mb", r.bytes as f64 / s / 1e6, "MB/s");
        }
        other => panic!("unknown phase {other}"),
    }
}

fn run(args: &[&str]) -> Vec<(String, f64, String, f64)> {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--phase")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].to_string(),
                    f[3].parse().unwrap(),
                )
            })
        })
        .collect()
}

fn get(rows: &[(String, f64, String, f64)], name: &str) -> (f64, f64) {
    rows.iter()
        .find(|r| r.0 == name)
        .map(|r| (r.1, r.3))
        .unwrap_or((f64::NAN, f64::NAN))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--phase") {
        return phase(&args[1..]);
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not, and must not spend minutes
    // and gigabytes here.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("run with `cargo bench --bench fs`");
        return;
    }
    let base = std::env::var_os("KBUILD_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let work = tempfile::tempdir_in(base).unwrap();
    let w = |p: &str| work.path().join(p).to_string_lossy().into_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let ram = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {cores} cores ({cpu}), {ram} RAM");

    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header(["measurement", "result", "peak RSS (MB)"]);
    for n in [10_000usize, 100_000] {
        let tree = w(&format!("tree{n}"));
        eprintln!("creating {n} files...");
        run(&["tree", &tree, &n.to_string()]);
        let snap = run(&["snapshot", &tree]);
        let hash = run(&["hashall", &tree]);
        let (s, s_rss) = get(&snap, "snapshot");
        let (s_cpu, _) = get(&snap, "snapshot-cpu");
        let (i, _) = get(&snap, "index");
        let (h, h_rss) = get(&hash, "hashall");
        let (h_cpu, _) = get(&hash, "hashall-cpu");
        let (mb, _) = get(&hash, "hashall-bytes");
        table.add_row([
            format!("{n} files ({mb:.0} MB): index (first walk)"),
            format!("{i:.0} ms"),
            String::new(),
        ]);
        table.add_row([
            format!("{n} files: snapshot after changing 10 files (median of 5)"),
            format!("{s:.0} ms wall, {s_cpu:.0} ms CPU"),
            format!("{s_rss:.0}"),
        ]);
        table.add_row([
            format!("{n} files: sha256 of every file (Kaniko's cost)"),
            format!("{h:.0} ms wall, {h_cpu:.0} ms CPU"),
            format!("{h_rss:.0}"),
        ]);
        table.add_row([
            format!("{n} files: snapshot speed-up"),
            format!("{:.0}x wall, {:.0}x CPU", h / s, h_cpu / s_cpu.max(1.0)),
            String::new(),
        ]);
    }
    eprintln!("writing the 100k-file layer...");
    let layer = w("tree100k.tar.zst");
    run(&["write", &w("tree100000"), "zstd", &layer]);
    std::fs::remove_dir_all(w("tree10000")).unwrap();
    std::fs::create_dir_all(w("extracted")).unwrap();
    let ex = run(&["extract", &w("extracted"), &layer]);
    let (fps, rss) = get(&ex, "extract-files");
    let (mbs, _) = get(&ex, "extract-mb");
    table.add_row([
        "extract 100k-file zstd layer".to_string(),
        format!("{fps:.0} files/s, {mbs:.0} MB/s"),
        format!("{rss:.0}"),
    ]);
    std::fs::remove_dir_all(w("tree100000")).ok();
    std::fs::remove_dir_all(w("extracted")).ok();

    eprintln!("creating 1 GiB of mixed data...");
    let mixed = w("mixed");
    run(&["mixed", &mixed]);
    let base1 = run(&["zstd1", &mixed]);
    let (z1, z1_rss) = get(&base1, "zstd1");
    let (z1_cores, _) = get(&base1, "cores");
    let z1_per_core = z1 / z1_cores.max(0.01);
    table.add_row([
        "reference: libzstd level 3, one thread, no tar/hash".to_string(),
        format!("{z1:.0} MiB/s on {z1_cores:.2} cores = {z1_per_core:.0} MiB/s per core"),
        format!("{z1_rss:.0}"),
    ]);
    for c in ["none", "gzip", "zstd"] {
        let r = run(&["write", &mixed, c]);
        let (mibs, rss) = get(&r, "write");
        let (ratio, _) = get(&r, "ratio");
        let (used, _) = get(&r, "cores");
        let mut line = format!(
            "{mibs:.0} MiB/s (ratio {ratio:.2}) on {used:.2} cores = {:.0} MiB/s per core",
            mibs / used
        );
        if c == "zstd" {
            line.push_str(&format!(
                " = {:.0}% of the reference per core",
                100.0 * mibs / used / z1_per_core
            ));
        }
        table.add_row([
            format!("write 1 GiB mixed layer, {c} (default level)"),
            line,
            format!("{rss:.0}"),
        ]);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("{table}");
}
