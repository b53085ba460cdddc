//! The rootfs engine: safe root, layer extraction, snapshots, layer writing.
//!
//! These tests run as root (as CI does): they create device nodes, chown and set
//! `security.capability`.

mod extract;
mod layer;
mod malicious;
mod root;
mod snapshot;
pub mod tarlib;
pub mod tree;

use std::sync::Arc;

use kbuild::fs::{RealSys, Resolver, Root};

/// Both resolvers, so every containment property is checked with openat2 and with the walk.
pub const RESOLVERS: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

pub fn open_root(dir: &std::path::Path, resolver: Resolver) -> Root {
    let root = Root::open_with(dir, Some(resolver), Arc::new(RealSys)).unwrap();
    assert_eq!(root.resolver(), resolver);
    root
}
