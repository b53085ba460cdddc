//! Where a build's time and memory go: pull, key, cache, extract, run, snapshot, copy, layer,
//! push, cache_push_wait.
//!
//! Each phase's wall time is summed over the build, and its peak resident memory is kbuild's own
//! (VmHWM, reset at the start of every timed section through `/proc/self/clear_refs`), so the
//! report shows what kbuild itself costs per phase. A RUN's processes are not kbuild's memory and
//! are not counted. Where the kernel refuses the reset, the peak is the process's peak so far.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// One phase's totals.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PhaseStat {
    pub name: String,
    pub ms: u64,
    /// How many times the phase ran (layers extracted, RUNs, ...).
    pub count: u64,
    pub peak_rss_kb: u64,
}

/// Accumulates phase timings; shared by reference across a build.
#[derive(Debug, Default)]
pub struct Phases {
    stats: Mutex<BTreeMap<&'static str, PhaseStat>>,
}

/// The phases, in the order a build meets them: `key` is hashing COPY/ADD sources for cache
/// keys, `cache` waiting for cache lookups (and the layers of hits), `cache_push_wait` waiting
/// at the end for cache pushes still running.
pub const ORDER: [&str; 10] = [
    "pull",
    "key",
    "cache",
    "extract",
    "run",
    "snapshot",
    "copy",
    "layer",
    "push",
    "cache_push_wait",
];

impl Phases {
    /// Times `f` as part of phase `name`.
    pub fn time<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> T {
        reset_peak();
        let started = Instant::now();
        let out = f();
        self.add(name, started, peak_rss_kb());
        out
    }

    /// Records a section that started at `started` (for async sections timed by the caller).
    pub fn add(&self, name: &'static str, started: Instant, peak_kb: u64) {
        let ms = started.elapsed().as_millis() as u64;
        if let Ok(mut stats) = self.stats.lock() {
            let stat = stats.entry(name).or_insert_with(|| PhaseStat {
                name: name.to_string(),
                ..PhaseStat::default()
            });
            stat.ms += ms;
            stat.count += 1;
            stat.peak_rss_kb = stat.peak_rss_kb.max(peak_kb);
        }
    }

    /// The totals in [`ORDER`].
    pub fn snapshot(&self) -> Vec<PhaseStat> {
        let stats = match self.stats.lock() {
            Ok(stats) => stats.clone(),
            Err(_) => return Vec::new(),
        };
        ORDER
            .iter()
            .filter_map(|name| stats.get(name).cloned())
            .collect()
    }
}

/// Resets the process's peak RSS so the next reading covers only what follows.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set size in KiB since the last reset (0 when unknown).
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_sum_and_keep_their_order() {
        let phases = Phases::default();
        phases.time("push", || ());
        phases.time("run", || {
            std::thread::sleep(std::time::Duration::from_millis(5))
        });
        phases.time("run", || ());
        let stats = phases.snapshot();
        let names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["run", "push"]);
        assert_eq!(stats[0].count, 2);
        assert!(stats[0].ms >= 5);
        assert!(stats[0].peak_rss_kb > 0, "VmHWM is readable on Linux");
    }
}
