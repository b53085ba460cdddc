//! Registries that fail: stopped mid-push, corrupt blobs, transient 500s.
