//! Helpers for conformance harnesses whose store keeps its data in a larder-fs directory the
//! test owns (this crate's own tests, and larder-server behind larder-http): damage stored bytes
//! the way a failing disk or a stray write would, so the suite can check they are never served.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use larder_core::{Digest, Key};

use crate::core::Layout;

/// Flip one byte in the middle of the stored blob `digest` under `root`, keeping its length.
/// Returns `false` if the blob is not there (or is empty).
pub fn corrupt_blob(root: &Path, digest: &Digest) -> bool {
    let layout = Layout::new(root.to_path_buf());
    let Some(path) = [false, true]
        .into_iter()
        .map(|compressed| layout.blob_path(digest, compressed))
        .find(|p| p.exists())
    else {
        return false;
    };
    // Blobs are stored read-only.
    if std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).is_err() {
        return false;
    }
    let Ok(mut bytes) = std::fs::read(&path) else {
        return false;
    };
    if bytes.is_empty() {
        return false;
    }
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, bytes).is_ok()
}

/// Overwrite the stored entry under `key` with bytes that do not decode. Returns `false` if there
/// is no such entry.
pub fn corrupt_entry(root: &Path, key: &Key) -> bool {
    let path = Layout::new(root.to_path_buf()).entry_path(&key.storage_name());
    path.exists() && std::fs::write(&path, b"LRDE\x01\x00 not an entry").is_ok()
}
