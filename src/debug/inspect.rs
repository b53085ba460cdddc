//! `kbuild cache inspect`: a repository's entries with their age under `--cache-ttl`, or one
//! entry in full. Listing a layer's files is [`super::layer`]'s job; the command streams it.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::DebugError;
use super::entry::{CacheEntry, EntryKind};
use super::repo::CacheRepo;
use super::time::{format_rfc3339, format_ttl};

/// An entry with its age at the time of listing.
#[derive(Debug, Clone, Serialize)]
pub struct ListedEntry {
    #[serde(flatten)]
    pub entry: CacheEntry,
    /// Seconds since `created`; None when `created` is missing or unreadable.
    pub age_seconds: Option<u64>,
    /// Older than `--cache-ttl`: a build would not use it.
    pub expired: Option<bool>,
}

impl ListedEntry {
    pub fn new(entry: CacheEntry, now: SystemTime, ttl: Duration) -> ListedEntry {
        let age = entry.age(now, ttl);
        ListedEntry {
            entry,
            age_seconds: age.map(|a| a.age.as_secs()),
            expired: age.map(|a| a.expired),
        }
    }
}

/// A tag that could not be read as an entry.
#[derive(Debug, Clone, Serialize)]
pub struct TagError {
    pub tag: String,
    pub error: String,
}

/// `kbuild cache inspect REPO` (`--format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub version: u32,
    pub repository: String,
    /// `--cache-ttl`, as a Go duration.
    pub ttl: String,
    /// When the listing was made (ages are relative to it).
    pub listed_at: String,
    /// Newest first.
    pub entries: Vec<ListedEntry>,
    pub errors: Vec<TagError>,
}

impl Listing {
    /// How many entries of a kind.
    pub fn count(&self, kind: EntryKind) -> usize {
        self.entries.iter().filter(|e| e.entry.kind == kind).count()
    }
}

/// Lists every entry of `repo`, fetching manifests and configs concurrently.
pub async fn list(repo: &CacheRepo, ttl: Duration, now: SystemTime) -> Result<Listing, DebugError> {
    let tags = repo.tags().await?;
    tracing::info!("{}: reading {} entries", repo.name(), tags.len());
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (tag, result) in repo.entries(&tags).await {
        match result {
            Ok(entry) => entries.push(ListedEntry::new(entry, now, ttl)),
            Err(e) => errors.push(TagError {
                tag,
                error: e.to_string(),
            }),
        }
    }
    // Newest first; equal (or unknown) times by tag, so the order is stable.
    entries.sort_by(|a, b| {
        b.entry
            .created_time()
            .cmp(&a.entry.created_time())
            .then_with(|| a.entry.tag.cmp(&b.entry.tag))
    });
    Ok(Listing {
        version: super::JSON_VERSION,
        repository: repo.name(),
        ttl: format_ttl(ttl),
        listed_at: format_rfc3339(now),
        entries,
        errors,
    })
}

/// `kbuild cache inspect REPO:KEY` (`--format json`, without `--files`/`--find`).
#[derive(Debug, Clone, Serialize)]
pub struct EntryDetail {
    pub version: u32,
    pub ttl: String,
    pub entry: ListedEntry,
}
