//! The layer cache: keys with preimages (this file's `key` module). Stores, probing and the Kaniko
//! cache reader arrive with the executor; until then nothing here touches a registry.

pub mod key;

pub use key::{ParentKind, Part, Preimage, SCHEMA_VERSION};
