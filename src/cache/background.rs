//! Probes and pushes running beside a build, on its tokio runtime.
//!
//! The executor is synchronous (it runs RUNs and walks rootfs trees on a blocking thread); it
//! starts a probe for every key it knows as early as it knows it ([`Background::probe`]) and
//! waits only when it reaches that instruction ([`PendingProbe::wait`]). Pushes start when a
//! missed instruction's layer is written and are only awaited once the image is out
//! ([`Background::finish`]): a slow or failing cache repository never delays a step nor fails
//! the build. A semaphore keeps probes and pushes within the registry concurrency setting.
//! The first failure is logged as a warning; later ones only count, and all are returned to be
//! recorded in the build report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::digest::Digest;

use super::entry::NewEntry;
use super::store::{CacheStore, MissReason, Probe};

/// A probe started in the background.
pub struct PendingProbe {
    task: JoinHandle<Probe>,
}

impl PendingProbe {
    /// Waits for the probe; call from a thread that may block (not from inside the runtime's
    /// async tasks).
    pub fn wait(self, handle: &Handle) -> Probe {
        match handle.block_on(self.task) {
            Ok(probe) => probe,
            Err(e) => Probe::Miss {
                reason: MissReason::NoEntry,
                detail: Some(format!("the probe did not finish: {e}")),
                created: None,
            },
        }
    }
}

/// How a background push ended.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub key: Digest,
    /// `<repo>:<hex>`.
    pub entry: String,
    /// None when the entry was stored.
    pub error: Option<String>,
}

/// A push running in the background, by key.
type RunningPush = (Digest, JoinHandle<Result<(), String>>);

/// The probes and pushes of one build.
pub struct Background {
    store: CacheStore,
    handle: Handle,
    limit: Arc<Semaphore>,
    pushes: Mutex<Vec<RunningPush>>,
    warned: Arc<AtomicBool>,
}

impl Background {
    /// Background work against `store`, at most `concurrency` requests at a time.
    pub fn new(store: CacheStore, handle: Handle, concurrency: usize) -> Background {
        Background {
            store,
            handle,
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            pushes: Mutex::new(Vec::new()),
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The store probes and pushes go to.
    pub fn store(&self) -> &CacheStore {
        &self.store
    }

    /// Starts looking up `key`.
    pub fn probe(&self, key: Digest) -> PendingProbe {
        let store = self.store.clone();
        let limit = self.limit.clone();
        let warned = self.warned.clone();
        let task = self.handle.spawn(async move {
            let _permit = limit.acquire_owned().await.ok();
            let probe = store.probe(&key).await;
            if let Probe::Miss {
                reason: MissReason::NoEntry,
                detail: Some(detail),
                ..
            } = &probe
                && !warned.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    "cache lookup of {} failed (counted as a miss; later cache failures are only \
                     in the build report): {detail}",
                    store.repo().entry_name(&key)
                );
            }
            probe
        });
        PendingProbe { task }
    }

    /// Starts storing `entry`; its layer blob must already be in the blob store.
    pub fn push(&self, entry: NewEntry) {
        let store = self.store.clone();
        let limit = self.limit.clone();
        let warned = self.warned.clone();
        let key = entry.key;
        let task = self.handle.spawn(async move {
            let _permit = limit.acquire_owned().await.ok();
            let name = store.repo().entry_name(&entry.key);
            match store.push(&entry).await {
                Ok(()) => {
                    tracing::info!("stored cache entry {name}");
                    Ok(())
                }
                Err(e) => {
                    if !warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "cache push failed (the build goes on; later cache failures are only \
                             in the build report): {e}"
                        );
                    }
                    Err(e.to_string())
                }
            }
        });
        if let Ok(mut pushes) = self.pushes.lock() {
            pushes.push((key, task));
        }
    }

    /// Waits for every push started so far and says how each ended.
    pub async fn finish(&self) -> Vec<PushOutcome> {
        let pushes = match self.pushes.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => Vec::new(),
        };
        let mut out = Vec::new();
        for (key, task) in pushes {
            let error = match task.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(e) => Some(format!("the push did not finish: {e}")),
            };
            out.push(PushOutcome {
                key,
                entry: self.store.repo().entry_name(&key),
                error,
            });
        }
        let failed = out.iter().filter(|o| o.error.is_some()).count();
        if failed > 1 {
            tracing::warn!(
                "{failed} of {} cache pushes failed; the build report lists them",
                out.len()
            );
        }
        out
    }
}
