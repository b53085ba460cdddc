//! The layer cache (DESIGN.md decisions 2 and 6): keys that carry their preimage, the entry
//! format, the stores entries live in, and the background work of probing and pushing.
//!
//! - [`key`]: versioned, framed keys over named parts ([`Preimage`]).
//! - [`entry`]: one entry per key, an OCI image holding the instruction's layer (or none) and
//!   the preimage (`/work/notes/contracts.md`, schema 1).
//! - [`store`]: a registry repository or an OCI image layout ([`CacheRepo`]); probes bring a
//!   hit's layer into the build's blob store.
//! - [`background`]: probes and pushes on the build's runtime, never failing the build.
//!
//! What goes into a key and when a hit is applied is the executor's business (`crate::build`);
//! this module knows nothing about Dockerfiles. Reading Kaniko's entries belongs to the cache
//! debugger.

pub mod background;
pub mod entry;
pub mod key;
pub mod store;

pub use background::{Background, PendingProbe, PushOutcome};
pub use entry::{Entry, EntryError, EntryLayer, FileCounts, NewEntry};
pub use key::{ParentKind, Part, Preimage, SCHEMA_VERSION};
pub use store::{CacheError, CacheRepo, CacheStore, MissReason, Probe};
