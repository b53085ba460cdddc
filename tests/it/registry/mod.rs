//! Pull, push, outputs and results against a real registry (Debian's docker-registry).

mod auth;
mod faults;
mod outputs;
mod pull_push;
mod tls;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use kbuild::image::{BuiltImage, ImageBuilder};
use kbuild::platform::Platform;
use kbuild::registry::{
    BlobStore, Descriptor, Keychain, Reference, RegistryClient, RegistryOptions,
};

/// A tokio runtime for calling the async registry API from a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Options with short retry waits, so fault tests stay quick.
pub fn opts() -> RegistryOptions {
    RegistryOptions {
        retry_backoff: Duration::from_millis(50),
        ..RegistryOptions::default()
    }
}

/// An anonymous client with `opts`.
pub fn client(opts: RegistryOptions) -> RegistryClient {
    RegistryClient::new(opts, Keychain::anonymous())
}

pub fn reference(s: &str) -> Reference {
    s.parse().expect("valid reference")
}

/// A blob store in a fresh temp dir (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

/// An uncompressed layer tar holding these files (mode 0644, uid 0, mtime 0).
pub fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, *content).unwrap();
    }
    tar.into_inner().unwrap()
}

/// A scratch image for `platform` with one layer per entry of `layers`.
pub fn build_image(store: &BlobStore, platform: &str, layers: &[&[(&str, &[u8])]]) -> BuiltImage {
    let platform: Platform = platform.parse().unwrap();
    let mut builder = ImageBuilder::scratch(store, &platform);
    for (i, files) in layers.iter().enumerate() {
        builder
            .add_layer_tar(&tar_layer(files)[..], &format!("COPY layer{i} /"))
            .unwrap();
    }
    builder.config_mut().config.cmd = Some(vec!["/bin/true".into()]);
    builder.build().unwrap()
}

/// The files of a gzipped layer blob in the store.
pub fn layer_files(store: &BlobStore, layer: &Descriptor) -> BTreeMap<String, Vec<u8>> {
    let file = store.open_blob(&layer.digest).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        files.insert(path, content);
    }
    files
}

/// Pseudo-random bytes that gzip cannot shrink (a fixed seed, so tests are repeatable).
#[allow(dead_code)]
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
