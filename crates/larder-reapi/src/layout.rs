//! Where the Bazel protocols keep things in a larder store: one layout for Bazel's HTTP cache
//! (larder-server's `/bazel`) and for REAPI over gRPC, so that both see one CAS and one action
//! cache.
//!
//! - A SHA-256 CAS object is a standalone larder blob under its own SHA-256 digest
//!   ([`standalone_digest`]) when the store holds such blobs
//!   ([`Capability::sha256`](larder_core::Capability::sha256)): no entry, one file and one
//!   index row on larder-fs. Otherwise (a store that cannot, or tiers written through the
//!   upload queue, which carries entries) it is a larder entry under `bazel-cas/<sha256>`
//!   holding one file output named [`VALUE_OUTPUT`]: inline when at most
//!   [`DEFAULT_INLINE_LIMIT`] bytes, else a larder blob (by BLAKE3) the entry names. Lookups
//!   try the blob, then the entry, so a cache written before standalone blobs keeps serving.
//! - A BLAKE3 CAS object is an entry under `bazel-cas-blake3/<blake3>` as above (the entry
//!   keeps its blob referenced, so trims keep it); lookups that find no entry fall back to
//!   larder's own blob of that digest, which is the same content.
//! - An action result is the same kind of entry under `bazel-ac/<instance>/<hash>` (no
//!   instance: `bazel-ac/<hash>`), holding the serialized `ActionResult` as Bazel sends it.

use larder_core::entry::DEFAULT_INLINE_LIMIT;
use larder_core::layer::namespaces;
use larder_core::{Capability, Content, Digest, Entry, HashFn, Key, Output, OutputKind};

use crate::digest::DigestFn;

/// The output path of a value inside its entry (the one larder-core's namespaces layer checks).
pub use larder_core::layer::namespaces::VALUE_OUTPUT;

/// Resource-name segments an instance name may not contain (they delimit the rest).
const RESERVED: [&str; 7] = [
    "blobs",
    "uploads",
    "compressed-blobs",
    "actions",
    "actionResults",
    "operations",
    "capabilities",
];

fn cas_prefix(func: DigestFn) -> &'static str {
    match func {
        DigestFn::Sha256 => namespaces::BAZEL_CAS,
        DigestFn::Blake3 => namespaces::BAZEL_CAS_BLAKE3,
    }
}

fn ac_prefix(func: DigestFn) -> &'static str {
    match func {
        DigestFn::Sha256 => namespaces::BAZEL_AC,
        DigestFn::Blake3 => namespaces::BAZEL_AC_BLAKE3,
    }
}

/// The standalone blob a CAS object of `func` with hex `hash` is stored as, when a store with
/// capability `cap` holds such blobs as they are (SHA-256, where `cap.sha256`); `None`: it is
/// kept as an entry under [`cas_key`].
pub fn standalone_digest(cap: Capability, func: DigestFn, hash: &str) -> Option<Digest> {
    let f = func.hash_fn();
    if f == HashFn::Blake3 || !cap.accepts(f) {
        return None;
    }
    Digest::from_hex_fn(f, hash).ok()
}

/// The key of the CAS object with hex hash `hash` (already validated: 64 lowercase hex digits).
///
/// # Errors
/// When `hash` does not make a valid key.
pub fn cas_key(func: DigestFn, hash: &str) -> larder_core::Result<Key> {
    Key::new(format!("{}/{hash}", cas_prefix(func)))
}

/// The key of the action result for action `hash` in `instance` (`""` for none).
///
/// # Errors
/// When the instance name does not make a valid key (`..`, characters outside the key set).
pub fn ac_key(func: DigestFn, instance: &str, hash: &str) -> larder_core::Result<Key> {
    if instance.is_empty() {
        Key::new(format!("{}/{hash}", ac_prefix(func)))
    } else {
        Key::new(format!("{}/{instance}/{hash}", ac_prefix(func)))
    }
}

/// Check a REAPI instance name: empty, or `/`-separated non-empty segments that are not reserved
/// words and make a valid key.
pub(crate) fn check_instance(instance: &str) -> Result<(), String> {
    if instance.is_empty() {
        return Ok(());
    }
    if let Some(seg) = instance.split('/').find(|s| RESERVED.contains(s)) {
        return Err(format!(
            "instance name {instance:?} contains the reserved segment {seg:?}"
        ));
    }
    ac_key(DigestFn::Sha256, instance, &"0".repeat(64))
        .map(drop)
        .map_err(|e| format!("instance name {instance:?}: {e}"))
}

/// Whether a value of `size` bytes is kept inside its entry.
pub fn inlined(size: u64) -> bool {
    size <= DEFAULT_INLINE_LIMIT
}

/// The entry holding a value under `key`, written by `producer`.
pub fn value_entry(key: &Key, content: Content, producer: &str) -> Entry {
    let mut entry = Entry::new(key.as_str(), producer);
    entry.outputs.push(Output {
        path: VALUE_OUTPUT.into(),
        kind: OutputKind::File {
            content,
            executable: false,
        },
    });
    entry
}

/// The value an entry holds, if it is a value entry.
pub fn value_of(entry: Entry) -> Option<Content> {
    entry.outputs.into_iter().find_map(|o| match o.kind {
        OutputKind::File { content, .. } if o.path == VALUE_OUTPUT => Some(content),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_instances() {
        let h = "a".repeat(64);
        assert_eq!(
            cas_key(DigestFn::Sha256, &h).unwrap().as_str(),
            format!("bazel-cas/{h}")
        );
        assert_eq!(
            ac_key(DigestFn::Sha256, "team/a", &h).unwrap().as_str(),
            format!("bazel-ac/team/a/{h}")
        );
        assert_eq!(
            ac_key(DigestFn::Sha256, "", &h).unwrap().as_str(),
            format!("bazel-ac/{h}")
        );
        let mut cap = Capability::none();
        assert_eq!(standalone_digest(cap, DigestFn::Sha256, &h), None);
        cap.sha256 = true;
        let d = standalone_digest(cap, DigestFn::Sha256, &h).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{h}"));
        assert_eq!(standalone_digest(cap, DigestFn::Blake3, &h), None);
        assert!(check_instance("").is_ok());
        assert!(check_instance("team/a").is_ok());
        for bad in ["a//b", "../x", "x/blobs", "/abs", "a b", "uploads"] {
            assert!(check_instance(bad).is_err(), "{bad}");
        }
    }
}
