//! The namespaces layer: each protocol's key namespace keeps its invariant, whichever protocol
//! writes into it.
//!
//! Several protocols share one store, and some own a key prefix whose entries promise more than
//! any entry does. Bazel's HTTP cache and REAPI keep their content-addressed storage under
//! `bazel-cas/<sha256>`: a client that asks for that key trusts the bytes to hash to it, and
//! does not check. Larder's own protocol can write any key, so without this layer an entry
//! written there under `bazel-cas/<h>` with other bytes would be served to Bazel as `<h>`. The
//! check lives here, below every protocol, rather than in one handler.
//!
//! The rules, by key prefix ([`Rule`]):
//! - `bazel-cas/<sha256>`: one regular file named `value` whose bytes hash to `<sha256>` with
//!   SHA-256 (the bytes are read back from the blob when not inline).
//! - `bazel-cas-blake3/<blake3>`: the same with BLAKE3, which is larder's own content digest,
//!   so the recorded digest is compared (the store verifies blobs against it).
//! - `bazel-ac/`, `bazel-ac-blake3/`, `ccache/`: one regular file named `value` (these values
//!   are opaque to the server, only their shape is theirs).
//!
//! # Behavior
//! - A write that breaks its prefix's rule fails with [`Error::InvalidInput`] naming the key and
//!   what is wrong; nothing reaches the inner store.
//! - A read of an entry that breaks its rule (written before this layer, by another process on
//!   the same directory, or fetched from an upstream) is a miss: it is logged, removed from the
//!   inner store where that works, and never returned.
//! - A SHA-256 check that needed the blob's bytes is remembered (the pair of SHA-256 and blob
//!   digest, both content digests, so the answer cannot change), up to [`REMEMBERED`] pairs, so
//!   a blob is hashed once per process rather than on every read.
//! - Keys outside these prefixes and every other operation forward unchanged.

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use super::Layered;
use crate::digest::Digest;
use crate::entry::{Content, Entry, OutputKind};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{GetOptions, PutOptions, PutOutcome, Store};

/// The output name of a value entry (a ccache result, a Bazel action result or CAS object).
pub const VALUE_OUTPUT: &str = "value";

/// Verified (SHA-256, blob digest) pairs kept; when full, the set starts again empty.
pub const REMEMBERED: usize = 1 << 16;

/// What a key prefix promises about the entries under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// One `value` file whose bytes have the SHA-256 the key names.
    Sha256Cas,
    /// One `value` file whose bytes have the BLAKE3 digest the key names.
    Blake3Cas,
    /// One `value` file.
    Value,
}

/// Bazel's CAS over SHA-256 (HTTP `/bazel/cas`, REAPI): `bazel-cas/<sha256>`.
pub const BAZEL_CAS: &str = "bazel-cas";
/// The CAS over BLAKE3 (REAPI's BLAKE3 digest function): `bazel-cas-blake3/<blake3>`.
pub const BAZEL_CAS_BLAKE3: &str = "bazel-cas-blake3";
/// Bazel's action cache over SHA-256: `bazel-ac/[<instance>/]<sha256>`.
pub const BAZEL_AC: &str = "bazel-ac";
/// The action cache over BLAKE3: `bazel-ac-blake3/[<instance>/]<blake3>`.
pub const BAZEL_AC_BLAKE3: &str = "bazel-ac-blake3";
/// ccache's values (HTTP `/ccache`, the storage helper): `ccache/<key>`.
pub const CCACHE: &str = "ccache";

/// The prefixes with a rule (each followed by `/` in a key), and the rule.
pub const RULES: [(&str, Rule); 5] = [
    (BAZEL_CAS, Rule::Sha256Cas),
    (BAZEL_CAS_BLAKE3, Rule::Blake3Cas),
    (BAZEL_AC, Rule::Value),
    (BAZEL_AC_BLAKE3, Rule::Value),
    (CCACHE, Rule::Value),
];

/// The rule for `key` and the rest of the key after its prefix, if a rule applies.
pub fn rule_for(key: &str) -> Option<(Rule, &str)> {
    RULES.iter().find_map(|(prefix, rule)| {
        let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
        Some((*rule, rest))
    })
}

/// `S`, with each namespace's invariant checked on the way in and on the way out.
pub struct Namespaces<S> {
    inner: S,
    verified: Mutex<HashSet<([u8; 32], Digest)>>,
}

impl<S: Store> fmt::Debug for Namespaces<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespaces")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: Store> fmt::Display for Namespaces<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// 64 lowercase hex digits as 32 bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        let nibble = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
        *o = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one `value` file of a value entry.
fn value_of(entry: &Entry) -> std::result::Result<&Content, String> {
    match entry.outputs.as_slice() {
        [only] if only.path == VALUE_OUTPUT => match &only.kind {
            OutputKind::File { content, .. } => Ok(content),
            _ => Err(format!("its output {VALUE_OUTPUT:?} is not a regular file")),
        },
        [only] => Err(format!(
            "its output is {:?}, not {VALUE_OUTPUT:?}",
            only.path
        )),
        outputs => Err(format!(
            "it lists {} outputs, not one {VALUE_OUTPUT:?}",
            outputs.len()
        )),
    }
}

impl<S: Store> Namespaces<S> {
    /// `inner`, with the namespaces' invariants enforced.
    pub fn new(inner: S) -> Self {
        Namespaces {
            inner,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// The wrapped store (an inherent method: no ambiguity with [`Layered::inner`]).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn remembered(&self, pair: &([u8; 32], Digest)) -> bool {
        self.verified.lock().is_ok_and(|set| set.contains(pair))
    }

    fn remember(&self, pair: ([u8; 32], Digest)) {
        if let Ok(mut set) = self.verified.lock() {
            if set.len() >= REMEMBERED {
                set.clear();
            }
            set.insert(pair);
        }
    }

    /// `Ok(Err(why))` when `entry` breaks `rule` for the key part `name`; `Err` when the check
    /// itself failed (the blob could not be read). `from_store`: the entry was read from a
    /// store, whose decode already checked its inline bytes against their BLAKE3 digest (the
    /// store contract), so they are not hashed again.
    async fn check(
        &self,
        rule: Rule,
        name: &str,
        entry: &Entry,
        from_store: bool,
    ) -> Result<std::result::Result<(), String>> {
        let content = match value_of(entry) {
            Ok(c) => c,
            Err(why) => return Ok(Err(why)),
        };
        if let Some(bytes) = &content.inline
            && (bytes.len() as u64 != content.size
                || (!from_store && Digest::of(bytes) != content.digest))
        {
            return Ok(Err("its inline bytes do not match their digest".into()));
        }
        match rule {
            Rule::Value => Ok(Ok(())),
            Rule::Blake3Cas => Ok(if Some(*content.digest.as_bytes()) == hex32(name) {
                Ok(())
            } else {
                Err(format!(
                    "its bytes have the BLAKE3 digest {}, not the key's",
                    content.digest
                ))
            }),
            Rule::Sha256Cas => {
                let Some(want) = hex32(name) else {
                    return Ok(Err(
                        "the key is not a SHA-256 (64 lowercase hex digits)".into()
                    ));
                };
                let pair = (want, content.digest);
                if content.inline.is_none() && self.remembered(&pair) {
                    return Ok(Ok(()));
                }
                let got = match &content.inline {
                    Some(bytes) => Sha256::digest(bytes).into(),
                    None => match self.blob_sha256(content).await? {
                        Some(got) => got,
                        None => {
                            return Ok(Err(format!(
                                "its blob {} is not in the store",
                                content.digest
                            )));
                        }
                    },
                };
                if got != want {
                    return Ok(Err(format!("its bytes have the SHA-256 {}", hex(&got))));
                }
                if content.inline.is_none() {
                    self.remember(pair);
                }
                Ok(Ok(()))
            }
        }
    }

    /// The SHA-256 of the blob `content` names, read from the inner store; `None` when the
    /// blob is absent or not of the recorded size.
    async fn blob_sha256(&self, content: &Content) -> Result<Option<[u8; 32]>> {
        let Some(read) = self.inner.get_blob(&content.digest).await? else {
            return Ok(None);
        };
        let mut stream = read.stream;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            len += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((len == content.size).then(|| hasher.finalize().into()))
    }
}

#[async_trait]
impl<S: Store> Layered for Namespaces<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        if let Some((rule, name)) = rule_for(key.as_str())
            && let Err(why) = self.check(rule, name, entry, false).await?
        {
            return Err(Error::invalid(format!(
                "entry {key} refused: {why} ({} holds {})",
                &key.as_str()[..key.as_str().len() - name.len()],
                match rule {
                    Rule::Sha256Cas => "one value named by its SHA-256",
                    Rule::Blake3Cas => "one value named by its BLAKE3 digest",
                    Rule::Value => "one value per key",
                }
            )));
        }
        self.inner.put_entry_opts(key, entry, opts).await
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let Some(entry) = self.inner.get_entry_opts(key, opts).await? else {
            return Ok(None);
        };
        let Some((rule, name)) = rule_for(key.as_str()) else {
            return Ok(Some(entry));
        };
        match self.check(rule, name, &entry, true).await? {
            Ok(()) => Ok(Some(entry)),
            Err(why) => {
                tracing::warn!(
                    "{}: entry {key} is a miss and is removed: {why}",
                    self.inner
                );
                if let Err(e) = self.inner.delete(key).await {
                    tracing::warn!("{}: cannot remove entry {key}: {e}", self.inner);
                }
                Ok(None)
            }
        }
    }
}

crate::impl_store_for_layer!(impl<S: Store> for Namespaces<S>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_hex() {
        let h = "0f".repeat(32);
        assert_eq!(
            rule_for(&format!("bazel-cas/{h}")),
            Some((Rule::Sha256Cas, h.as_str()))
        );
        assert_eq!(
            rule_for(&format!("bazel-cas-blake3/{h}")),
            Some((Rule::Blake3Cas, h.as_str()))
        );
        assert_eq!(rule_for("ccache/ab/cd").map(|r| r.0), Some(Rule::Value));
        assert_eq!(rule_for("bazel-ac/inst/x").map(|r| r.0), Some(Rule::Value));
        assert_eq!(rule_for("bazel-casx/y"), None);
        assert_eq!(rule_for("mine/ccache/y"), None);
        assert_eq!(hex32(&h), Some([0x0f; 32]));
        assert_eq!(hex(&[0x0f; 32]), h);
        for bad in [
            "0F".repeat(32),
            "0f".repeat(31),
            "zz".repeat(32),
            "é".repeat(32),
        ] {
            assert_eq!(hex32(&bad), None, "{bad}");
        }
    }
}
