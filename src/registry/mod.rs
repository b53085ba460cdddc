//! Registries: image references, credentials, mirrors and TLS, pulling images into a local
//! content-addressed blob store and pushing images from it.
//!
//! What the executor calls:
//! - [`RegistryClient::new`] with [`RegistryOptions`] (built by `cli` from Kaniko's flags) and a
//!   [`Keychain`] ([`Keychain::from_env`] reads Docker's `config.json`);
//! - [`pull_image`] to bring a base image's manifest, config and layers into a [`BlobStore`];
//! - [`push_image`] to send a finished image to every destination, after
//!   [`check_push_permissions`] as a preflight before the build.
//!
//! The API is async (tokio); a synchronous caller runs it on a runtime it creates. The store is
//! synchronous (`std::io::Write`) so layer writers need no runtime.
//!
//! Left out: schema 1 manifests (registries stopped serving them years ago), chunked uploads,
//! foreign layers' `urls`, referrers and signatures, and blob store eviction.

pub mod client;
pub mod credentials;
pub mod error;
pub mod manifest;
pub mod options;
pub mod pull;
pub mod push;
pub mod reference;
pub mod store;
mod transport;

pub use client::{BlobPush, FetchedManifest, RegistryClient};
pub use credentials::{Credential, Keychain};
pub use error::RegistryError;
pub use manifest::{Descriptor, ImageIndex, ImageManifest, MediaFamily};
pub use options::{Direction, RegistryOptions};
pub use pull::{PulledImage, pull_image};
pub use push::{ImageToPush, PushedDestination, check_push_permissions, push_image};
pub use reference::Reference;
pub use store::{BlobStore, BlobWriter, StoreError};
