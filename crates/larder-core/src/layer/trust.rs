//! Trusted writers: entries signed with ed25519, and readers that require a trusted signer.
//!
//! Whoever can write to a shared cache decides what lands in the build trees that hit it. A
//! writer holding a [`SigningKey`] (CI, say) signs every entry it stores ([`Signed`]); a reader
//! configured with the matching [`PublicKey`]s takes only entries one of them signed
//! ([`Trusted`]): an unsigned entry, one signed by another key, or one whose signature does not
//! verify is a miss. The server uses the same layer to refuse pushes that no trusted key signed.
//!
//! # What a signature covers
//! The ed25519 signature is over a domain-separation tag, the key the entry is stored under
//! (length-prefixed) and the entry's canonical encoding without its signature (the stored form
//! of [`Entry::encode`]: magic, version, CBOR). The encoding names every output with its
//! content digest and inline bytes, the captured streams and the exit code, so a signature
//! binds the whole result to its key: an entry moved to another key, or with any output, byte
//! or field changed, no longer verifies. Blobs need no signature of their own: their digests
//! are signed, and every read verifies a blob against its digest.
//!
//! # What a signature proves
//! That the holder of the private key wrote this entry under this key. Not that the build was
//! correct or reproducible, nor that the inputs hashed into the key are what the writer really
//! built from: a trusted key vouches for its writer's machine and configuration, nothing more.
//!
//! # Where the signature travels
//! Inside the entry, as its optional `signature` field ([`EntrySignature`]), rather than beside
//! it. The [`Store`] contract moves entries as values through every backend, tier, upload queue
//! and protocol; a signature beside the entry would need a second object per key in every
//! backend, kept atomic with the entry, and would be lost by any copy that does not know it.
//! Inside, it goes wherever the entry goes, in the same atomic write. The field is optional and
//! skipped when absent, so unsigned entries encode byte for byte as before, entries written
//! before signatures existed decode unchanged, and readers that do not know the field (older
//! builds) skip it. Such an older build re-encoding an entry (an old server's replica) drops
//! the signature, which makes that copy a miss for readers that require one: it fails closed.
//! CBOR encoding of an [`Entry`] is deterministic (fields in declaration order, shortest integer
//! forms), so re-encoding a decoded entry reproduces the bytes that were signed.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;

use super::Layered;
use crate::entry::{ENTRY_MAGIC, ENTRY_VERSION, Entry, EntrySignature};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{GetOptions, PutOptions, PutOutcome, Store};

/// The text form of a public key starts with this: `ed25519:BASE64`.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";
/// The line of a private key file that holds the key starts with this: `ed25519-secret:BASE64`.
pub const SECRET_KEY_PREFIX: &str = "ed25519-secret:";
/// Domain separation: a signature over an entry is never valid for anything else.
const SIGNING_CONTEXT: &[u8] = b"larder entry signature v1\0";

/// An ed25519 public key: who a reader trusts. Text form `ed25519:BASE64` (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// A key from its 32 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the bytes are not 32 long or not a point on the curve.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::invalid(format!(
                "an ed25519 public key is 32 bytes, not {}",
                bytes.len()
            ))
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| Error::invalid("not a valid ed25519 public key"))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = Error;

    /// Parse `ed25519:BASE64`.
    fn from_str(s: &str) -> Result<PublicKey> {
        let s = s.trim();
        let Some(b64) = s.strip_prefix(PUBLIC_KEY_PREFIX) else {
            return Err(Error::invalid(format!(
                "expected a public key as {PUBLIC_KEY_PREFIX}BASE64 (from `larder key public`), got {s:?}"
            )));
        };
        let bytes = BASE64
            .decode(b64)
            .map_err(|e| Error::invalid(format!("public key {s:?}: bad base64: {e}")))?;
        PublicKey::from_bytes(&bytes).map_err(|e| Error::invalid(format!("public key {s:?}: {e}")))
    }
}

/// An ed25519 private key: what a writer signs with. Its `Debug` shows only the public half.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new random key, from the operating system's random source.
    ///
    /// # Errors
    /// [`Error::Store`] when the system has no random source to read.
    pub fn generate() -> Result<SigningKey> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| Error::Store {
            store: "the system's random source".into(),
            message: format!("cannot read random bytes: {e}"),
            temporary: false,
            source: None,
        })?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The public half, for readers to trust.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key file's text: a comment line naming the public key, then
    /// `ed25519-secret:BASE64`.
    pub fn to_file_text(&self) -> String {
        format!(
            "# larder signing key; readers trust it with: {}\n{SECRET_KEY_PREFIX}{}\n",
            self.public_key(),
            BASE64.encode(self.0.to_bytes())
        )
    }

    /// Parse a key file's text: `#` comment lines and blank lines, and one
    /// `ed25519-secret:BASE64` line.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when no such line holds a 32-byte key. The message never holds
    /// the file's text.
    pub fn from_file_text(text: &str) -> Result<SigningKey> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(Error::invalid(format!(
                "expected one {SECRET_KEY_PREFIX}BASE64 line (written by `larder key generate`)"
            )));
        };
        let seed = line
            .strip_prefix(SECRET_KEY_PREFIX)
            .and_then(|b64| BASE64.decode(b64).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "expected {SECRET_KEY_PREFIX} and the base64 of 32 bytes (written by `larder key generate`)"
                ))
            })?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Read a key file (see [`SigningKey::from_file_text`]).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::InvalidInput`] naming the file when it
    /// holds no key.
    pub fn read_file(path: &Path) -> Result<SigningKey> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading the signing key {}", path.display()), e))?;
        SigningKey::from_file_text(&text)
            .map_err(|e| Error::invalid(format!("signing key {}: {e}", path.display())))
    }

    /// `entry`, signed for storage under `key` (any signature it had is replaced).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the entry cannot be encoded.
    pub fn sign(&self, key: &Key, entry: &Entry) -> Result<Entry> {
        let mut signed = entry.clone();
        signed.signature = None;
        let message = signed_message(key, &signed)?;
        let signature = self.0.sign(&message);
        signed.signature = Some(Box::new(EntrySignature {
            public_key: serde_bytes::ByteBuf::from(self.0.verifying_key().to_bytes().to_vec()),
            signature: serde_bytes::ByteBuf::from(signature.to_bytes().to_vec()),
        }));
        Ok(signed)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key())
    }
}

/// The bytes a signature covers: the context tag, the key (length-prefixed), and the entry's
/// stored encoding with its `signature` field left out.
fn signed_message(key: &Key, entry: &Entry) -> Result<Vec<u8>> {
    let unsigned;
    let entry = if entry.signature.is_some() {
        let mut e = entry.clone();
        e.signature = None;
        unsigned = e;
        &unsigned
    } else {
        entry
    };
    let key = key.as_str().as_bytes();
    let mut out = Vec::with_capacity(SIGNING_CONTEXT.len() + 8 + key.len() + 256);
    out.extend_from_slice(SIGNING_CONTEXT);
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(ENTRY_MAGIC);
    out.extend_from_slice(&ENTRY_VERSION.to_le_bytes());
    ciborium::into_writer(entry, &mut out)
        .map_err(|e| Error::invalid(format!("cannot encode entry {}: {e}", entry.key)))?;
    Ok(out)
}

/// Why an entry is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Distrust {
    /// It carries no signature.
    Unsigned,
    /// It is signed by a key that is not in the trusted set (or not a valid key).
    UntrustedSigner(String),
    /// It names a trusted signer, but the signature does not verify: the entry was changed
    /// after signing, or moved to another key. Holds the signer's text form.
    BadSignature(String),
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distrust::Unsigned => f.write_str("not signed"),
            Distrust::UntrustedSigner(k) => write!(f, "signed by {k}, which is not trusted"),
            Distrust::BadSignature(k) => write!(
                f,
                "its signature by {k} does not verify (changed after signing, or moved to another key)"
            ),
        }
    }
}

/// Which of `trusted` signed `entry` for `key`.
///
/// # Errors
/// Why the entry is not trusted ([`Distrust`]).
pub fn verify_entry(
    key: &Key,
    entry: &Entry,
    trusted: &[PublicKey],
) -> std::result::Result<PublicKey, Distrust> {
    let Some(sig) = &entry.signature else {
        return Err(Distrust::Unsigned);
    };
    let signer = match PublicKey::from_bytes(&sig.public_key) {
        Ok(k) if trusted.contains(&k) => k,
        Ok(k) => return Err(Distrust::UntrustedSigner(k.to_string())),
        Err(_) => {
            return Err(Distrust::UntrustedSigner(format!(
                "an invalid key ({} bytes)",
                sig.public_key.len()
            )));
        }
    };
    let bad = || Distrust::BadSignature(signer.to_string());
    let Ok(signature) = ed25519_dalek::Signature::from_slice(&sig.signature) else {
        return Err(bad());
    };
    let Ok(message) = signed_message(key, entry) else {
        return Err(bad());
    };
    // `verify_strict` also refuses the weak keys and malleable signatures plain `verify`
    // accepts.
    match signer.0.verify_strict(&message, &signature) {
        Ok(()) => Ok(signer),
        Err(_) => Err(bad()),
    }
}

/// `S`, signing every entry written through it with one key.
///
/// Entries read come back as stored. Put it above everything an entry goes through on its way
/// out (tiers, upload queues), so every copy carries the signature.
pub struct Signed<S> {
    inner: S,
    key: Arc<SigningKey>,
}

impl<S: Store> Signed<S> {
    /// `inner`, signing with `key`.
    pub fn new(inner: S, key: Arc<SigningKey>) -> Self {
        Signed { inner, key }
    }

    /// The wrapped store (an inherent method: no ambiguity with [`Layered::inner`]).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Store> fmt::Debug for Signed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("inner", &self.inner)
            .field("key", &self.key)
            .finish()
    }
}

impl<S: Store> fmt::Display for Signed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl<S: Store> Layered for Signed<S> {
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
        let signed = self.key.sign(key, entry)?;
        self.inner.put_entry_opts(key, &signed, opts).await
    }
}

crate::impl_store_for_layer!(impl<S: Store> for Signed<S>);

/// Called with the key of each entry [`Trusted`] refuses to store or turns into a miss.
pub type RefusedFn = Arc<dyn Fn(&Key) + Send + Sync>;

/// `S`, taking only entries a trusted key signed.
///
/// - Reads (unless [`Trusted::check_reads`] turned them off): an entry that [`verify_entry`]
///   does not trust is a miss (`Ok(None)`), counted ([`Trusted::rejected`]) and logged: a
///   warning the first time per layer, debug lines after. It is not removed: the store may be
///   shared and read-only, and other readers may trust other keys.
/// - Writes (with [`Trusted::refuse_untrusted_writes`]): an entry no trusted key signed is
///   refused with [`Error::Untrusted`] (the server answers 403), except under the key prefixes
///   given as exempt (other protocols' namespaces, whose clients cannot sign).
/// - Everything else forwards unchanged: blobs are verified by digest, and their digests are
///   what the signature covers.
pub struct Trusted<S> {
    inner: S,
    keys: Arc<[PublicKey]>,
    check_reads: bool,
    check_writes: Option<Vec<String>>,
    on_refused: Option<RefusedFn>,
    on_rejected: Option<RefusedFn>,
    rejected: AtomicU64,
    refused: AtomicU64,
    warned: AtomicBool,
}

impl<S: Store> Trusted<S> {
    /// `inner`, whose entries are read only when one of `keys` signed them.
    pub fn new(inner: S, keys: impl Into<Arc<[PublicKey]>>) -> Self {
        Trusted {
            inner,
            keys: keys.into(),
            check_reads: true,
            check_writes: None,
            on_refused: None,
            on_rejected: None,
            rejected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// Whether reads are checked (default: yes). A server that only refuses untrusted pushes
    /// turns it off: its clients check what they read themselves.
    pub fn check_reads(mut self, on: bool) -> Self {
        self.check_reads = on;
        self
    }

    /// Refuse to store entries that no trusted key signed, except under keys that start with
    /// one of `exempt_prefixes`.
    pub fn refuse_untrusted_writes(mut self, exempt_prefixes: Vec<String>) -> Self {
        self.check_writes = Some(exempt_prefixes);
        self
    }

    /// Also call `f` with the key of each refused write (the server's metrics).
    pub fn on_refused(mut self, f: RefusedFn) -> Self {
        self.on_refused = Some(f);
        self
    }

    /// Also call `f` with the key of each entry read that was turned into a miss (a
    /// command's statistics).
    pub fn on_rejected(mut self, f: RefusedFn) -> Self {
        self.on_rejected = Some(f);
        self
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Entries read and turned into misses so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Entry writes refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The first distrusted entry is a warning; later ones are debug lines (one build may read
    /// thousands).
    fn log(&self, what: &str, key: &Key, why: &Distrust) {
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!("{}: {what} {key}: {why}", self.inner);
        } else {
            tracing::warn!(
                "{}: {what} {key}: {why}; entries no trusted key signed are misses (further ones are logged at debug level)",
                self.inner
            );
        }
    }
}

impl<S: Store> fmt::Debug for Trusted<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trusted")
            .field("inner", &self.inner)
            .field("keys", &self.keys)
            .field("check_reads", &self.check_reads)
            .field("check_writes", &self.check_writes)
            .field("rejected", &self.rejected)
            .field("refused", &self.refused)
            .finish()
    }
}

impl<S: Store> fmt::Display for Trusted<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl<S: Store> Layered for Trusted<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let Some(entry) = self.inner.get_entry_opts(key, opts).await? else {
            return Ok(None);
        };
        if !self.check_reads {
            return Ok(Some(entry));
        }
        match verify_entry(key, &entry, &self.keys) {
            Ok(_) => Ok(Some(entry)),
            Err(why) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = &self.on_rejected {
                    f(key);
                }
                self.log("ignoring entry", key, &why);
                Ok(None)
            }
        }
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        if let Some(exempt) = &self.check_writes
            && !exempt.iter().any(|p| key.as_str().starts_with(p.as_str()))
            && let Err(why) = verify_entry(key, entry, &self.keys)
        {
            self.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = &self.on_refused {
                f(key);
            }
            tracing::debug!("{}: refusing entry {key}: {why}", self.inner);
            return Err(Error::Untrusted {
                key: key.to_string(),
                reason: format!("{why}; this cache takes only entries signed by a trusted key"),
            });
        }
        self.inner.put_entry_opts(key, entry, opts).await
    }

    /// An entry no trusted key signed is a miss on reads, so it is missing here too: each
    /// entry is read and checked (existence alone cannot say who signed it).
    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        if !self.check_reads {
            return self.inner.find_missing_entries(keys).await;
        }
        crate::store::find_missing_entries_by_reading(self, keys).await
    }
}

crate::impl_store_for_layer!(impl<S: Store> for Trusted<S>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::entry::{Content, Output, OutputKind};

    fn entry(key: &str) -> Entry {
        let mut e = Entry::new(key, "exec");
        e.outputs.push(Output {
            path: "app".into(),
            kind: OutputKind::File {
                content: Content::inline(b"binary".to_vec()),
                executable: true,
            },
        });
        e.outputs.push(Output {
            path: "big".into(),
            kind: OutputKind::File {
                content: Content::blob(Digest::of(b"big"), 3),
                executable: false,
            },
        });
        e.exit_code = Some(0);
        e
    }

    #[test]
    fn key_texts_round_trip() {
        let sk = SigningKey::generate().unwrap();
        let text = sk.to_file_text();
        let back = SigningKey::from_file_text(&text).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        let public = sk.public_key().to_string();
        assert!(
            public.starts_with("ed25519:") && public.len() == 8 + 44,
            "{public}"
        );
        assert_eq!(public.parse::<PublicKey>().unwrap(), sk.public_key());
        assert!(text.contains(&public), "the file names its public key");
        // Debug never shows the secret.
        let secret_line = text
            .lines()
            .find(|l| l.starts_with(SECRET_KEY_PREFIX))
            .unwrap();
        let secret_b64 = secret_line.strip_prefix(SECRET_KEY_PREFIX).unwrap();
        assert!(!format!("{sk:?}").contains(secret_b64));
        for bad in [
            "",
            "ed25519:",
            "ed25519:AAAA",
            "ssh-ed25519 AAAA",
            "ed25519:!!!",
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "# only a comment\n",
            "ed25519-secret:AAAA\n",
            &format!("{text}{text}"),
        ] {
            let err = SigningKey::from_file_text(bad).unwrap_err().to_string();
            assert!(!err.contains(secret_b64), "{err}");
        }
    }

    #[test]
    fn signatures_bind_entry_and_key() {
        let ci = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let trusted = [ci.public_key()];
        let key = Key::new("k1").unwrap();
        let signed = ci.sign(&key, &entry("k1")).unwrap();
        assert_eq!(verify_entry(&key, &signed, &trusted), Ok(ci.public_key()));
        // Through the stored form and back.
        let decoded = Entry::decode(&signed.encode().unwrap()).unwrap();
        assert_eq!(verify_entry(&key, &decoded, &trusted), Ok(ci.public_key()));

        assert_eq!(
            verify_entry(&key, &entry("k1"), &trusted),
            Err(Distrust::Unsigned)
        );
        let by_other = other.sign(&key, &entry("k1")).unwrap();
        assert!(matches!(
            verify_entry(&key, &by_other, &trusted),
            Err(Distrust::UntrustedSigner(_))
        ));
        // Moved to another key.
        let k2 = Key::new("k2").unwrap();
        assert_eq!(
            verify_entry(&k2, &signed, &trusted),
            Err(Distrust::BadSignature(ci.public_key().to_string()))
        );
        // Any change after signing: an output's bytes, the exit code, a name.
        let mut changed = signed.clone();
        changed.outputs[0].kind = OutputKind::File {
            content: Content::inline(b"evil!!".to_vec()),
            executable: true,
        };
        assert!(matches!(
            verify_entry(&key, &changed, &trusted),
            Err(Distrust::BadSignature(_))
        ));
        let mut changed = signed.clone();
        changed.exit_code = Some(1);
        assert!(verify_entry(&key, &changed, &trusted).is_err());
        let mut changed = signed.clone();
        changed.outputs[1].path = "other".into();
        assert!(verify_entry(&key, &changed, &trusted).is_err());
        // Another key's signature pasted under the trusted key's name.
        let mut forged = by_other.clone();
        if let (Some(f), Some(s)) = (&mut forged.signature, &signed.signature) {
            f.public_key = s.public_key.clone();
        }
        assert!(matches!(
            verify_entry(&key, &forged, &trusted),
            Err(Distrust::BadSignature(_))
        ));
        // Garbage in the fields is distrust, not a panic.
        let mut garbage = signed.clone();
        garbage.signature = Some(Box::new(EntrySignature {
            public_key: serde_bytes::ByteBuf::from(vec![1; 5]),
            signature: serde_bytes::ByteBuf::from(vec![2; 3]),
        }));
        assert!(verify_entry(&key, &garbage, &trusted).is_err());
        let mut short_sig = signed.clone();
        if let Some(s) = &mut short_sig.signature {
            s.signature = serde_bytes::ByteBuf::from(vec![0; 10]);
        }
        assert!(verify_entry(&key, &short_sig, &trusted).is_err());
    }
}
