//! The root filesystem engine: a stage's rootfs as a directory, image layers going in and out.
//!
//! - [`Root`] is a directory treated as `/`. Every path given to it is resolved inside it
//!   (`openat2(RESOLVE_IN_ROOT)`, or a careful component walk where the kernel lacks it), so a
//!   symlink in the rootfs, absolute or relative, can never lead a write, a read or a metadata
//!   change outside. The executor uses it for COPY/ADD/WORKDIR; extraction uses it for layers.
//! - [`extract_layer`] streams a gzip, zstd or plain tar layer into a `Root`, with whiteouts,
//!   hardlinks, devices, ownership, modes, mtimes and xattrs, and refuses malformed or hostile
//!   entries with an error naming the layer and the entry.
//! - [`Snapshotter`] keeps a stat index of the rootfs and compares it with the tree after a step:
//!   the [`Changes`] (added, changed, deleted paths) cost one `lstat` walk, not a hash of every
//!   file.
//! - [`write_layer`] turns `Changes` into a deterministic tar, hashing it (diffID), compressing it
//!   and hashing again (digest) in one streaming pass into any `Write`.
//!
//! Deliberately left out: pulling and pushing blobs (the registry module hands us readers and
//! takes our writers), overlayfs (a later optimisation: its upper dir would replace the walk),
//! and sparse files (no image tool writes them into layers; they are refused, not mangled).
//! Privileged system calls (`mknod`, `chown`, `setxattr`) go through the [`Sys`] seam so the logic
//! around them can be tested without privileges.
//!
//! How a stage uses it:
//!
//! ```no_run
//! use kbuild::fs::{
//!     IgnoreList, LayerOptions, Root, SnapshotMode, Snapshotter, Timestamps, extract_layer,
//!     write_layer,
//! };
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let base_layers: Vec<(String, std::fs::File)> = Vec::new();
//! let root = Root::open("/kaniko/stages/0/rootfs")?;
//! for (digest, blob) in base_layers {
//!     let report = extract_layer(&root, &digest, blob)?; // check report.diff_id
//! }
//! let mut ignore = IgnoreList::from_flags(true, &["/workspace/cache"]);
//! ignore.add("/proc").add("/dev").add("/sys").add("/etc/resolv.conf");
//! let mut snap = Snapshotter::new(&root, SnapshotMode::Full, ignore)?;
//!
//! // WORKDIR /app, COPY app.conf /app/: write through the root, record what was written.
//! root.create_dir_all("/app", 0o755)?;
//! root.write_file("/app/app.conf", b"port=8080\n", 0o644)?;
//! let copy_changes = snap.record(&root, ["/app"], true)?;
//!
//! // RUN ...: the executor runs the command chrooted in root.path(), then:
//! let run_changes = snap.snapshot(&root)?;
//! let options = LayerOptions {
//!     timestamps: Timestamps::from_env(false),
//!     ..LayerOptions::default()
//! };
//! let mut blob = std::io::sink(); // the blob store's writer
//! match write_layer(&root, &run_changes, &options, &mut blob)? {
//!     Some(info) => println!("layer {} (diffID {})", info.digest, info.diff_id),
//!     None => println!("RUN changed nothing: no layer"),
//! }
//! # drop(copy_changes);
//! # Ok(())
//! # }
//! ```

mod at;
mod error;
mod extract;
mod index;
mod layer;
mod pargzip;
mod resolve;
mod root;
mod snapshot;
mod sys;
mod tar_read;
mod tar_write;

pub use error::FsError;
pub use extract::{ExtractReport, extract_layer};
pub use index::{Index, Meta};
pub use layer::{Compression, LayerInfo, LayerOptions, Timestamps, write_layer};
pub use root::{FileKind, Resolver, Root, Stat, Time};
pub use snapshot::{Change, ChangeKind, Changes, IgnoreList, SnapshotMode, Snapshotter};
pub use sys::{RealSys, Sys};
// The cache debugger lists layers with the same hardened reader extraction uses.
pub(crate) use tar_read::{EntryHeader as TarEntryHeader, EntryKind as TarEntryKind, TarReader};
