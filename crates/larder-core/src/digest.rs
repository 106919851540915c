//! Blob digests that carry their hash function (BLAKE3, larder's own; SHA-256, for the Bazel and
//! REAPI CAS), and fast hashing of files.
//!
//! A [`Digest`] is a function and 32 bytes. BLAKE3 is the default and keeps every form it had
//! before functions were added: 64 hex digits as text, 32 bytes in entries (CBOR). A SHA-256
//! digest reads `sha256:<64 hex>` as text and takes 33 bytes (a tag byte first) in binary, so no
//! parser mistakes one function's digest for the other's.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::error::{Error, IoResultExt, Result};

/// Files at least this large are hashed through a memory map with BLAKE3's multi-threaded
/// implementation; smaller ones are read into a buffer (a map costs more than it saves there).
pub const PARALLEL_HASH_THRESHOLD: u64 = 1 << 20;

/// The hash function of a [`Digest`]. Exhaustive on purpose: a new function must be handled
/// (paths, names, hashing) wherever functions are matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashFn {
    /// BLAKE3-256: larder's own blobs, entries and signatures.
    #[default]
    Blake3,
    /// SHA-256: the blobs of Bazel's CAS (HTTP and REAPI).
    Sha256,
}

impl HashFn {
    /// Every function, BLAKE3 first.
    pub const ALL: [HashFn; 2] = [HashFn::Blake3, HashFn::Sha256];

    /// Its lowercase name, as in `sha256:<hex>` and REAPI resource names.
    pub fn name(self) -> &'static str {
        match self {
            HashFn::Blake3 => "blake3",
            HashFn::Sha256 => "sha256",
        }
    }

    /// The function named `name` (`blake3`, `sha256`).
    pub fn from_name(name: &str) -> Option<HashFn> {
        HashFn::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The digest of `bytes` under this function.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut w = DigestWriter::for_fn(self);
        w.update(bytes);
        w.finish()
    }

    /// The tag byte of a non-default function's binary form.
    fn tag(self) -> u8 {
        match self {
            HashFn::Blake3 => 0,
            HashFn::Sha256 => 1,
        }
    }
}

impl fmt::Display for HashFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashFn::Blake3 => "BLAKE3",
            HashFn::Sha256 => "SHA-256",
        })
    }
}

/// A blob's digest: its hash function and 32 bytes. BLAKE3 digests show as 64 lowercase hex
/// digits, SHA-256 ones as `sha256:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    func: HashFn,
    bytes: [u8; 32],
}

impl Digest {
    /// A digest of function `func` with hash `bytes`.
    pub const fn new(func: HashFn, bytes: [u8; 32]) -> Digest {
        Digest { func, bytes }
    }

    /// A BLAKE3 digest with hash `bytes`.
    pub const fn blake3(bytes: [u8; 32]) -> Digest {
        Digest::new(HashFn::Blake3, bytes)
    }

    /// A SHA-256 digest with hash `bytes`.
    pub const fn sha256(bytes: [u8; 32]) -> Digest {
        Digest::new(HashFn::Sha256, bytes)
    }

    /// The BLAKE3 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::blake3(*blake3::hash(bytes).as_bytes())
    }

    /// The BLAKE3 digest of the empty blob.
    pub fn empty() -> Digest {
        Digest::of(&[])
    }

    /// The hash function.
    pub fn func(&self) -> HashFn {
        self.func
    }

    /// The hash's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The hash as 64 lowercase hex digits, without the function (for paths and keys whose
    /// place already says which function it is).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.bytes).to_hex().to_string()
    }

    /// Parse 64 hex digits as a BLAKE3 digest.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `s` is not 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Digest> {
        Digest::from_hex_fn(HashFn::Blake3, s)
    }

    /// Parse 64 hex digits as a digest of `func`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `s` is not 64 hex digits.
    pub fn from_hex_fn(func: HashFn, s: &str) -> Result<Digest> {
        if s.len() != 64 {
            return Err(Error::invalid(format!("digest {s:?} is not 64 hex digits")));
        }
        blake3::Hash::from_hex(s)
            .map(|h| Digest::new(func, *h.as_bytes()))
            .map_err(|_| Error::invalid(format!("digest {s:?} is not 64 hex digits")))
    }

    /// Parse a digest's text form: 64 hex digits (BLAKE3), or `sha256:` or `blake3:` and 64
    /// hex digits.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for anything else.
    pub fn parse(s: &str) -> Result<Digest> {
        match s.split_once(':') {
            None => Digest::from_hex(s),
            Some((name, hex)) => match HashFn::from_name(name) {
                Some(func) => Digest::from_hex_fn(func, hex),
                None => Err(Error::invalid(format!(
                    "digest {s:?}: unknown hash function {name:?}"
                ))),
            },
        }
    }

    /// The BLAKE3 digest of a file's contents, read in one pass (memory-mapped and
    /// multi-threaded for large files).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn of_file(path: &Path) -> Result<(Digest, u64)> {
        let mut hasher = blake3::Hasher::new();
        let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        let len = file
            .metadata()
            .ctx(|| format!("reading metadata of {}", path.display()))?
            .len();
        if len >= PARALLEL_HASH_THRESHOLD {
            hasher
                .update_mmap_rayon(path)
                .ctx(|| format!("hashing {}", path.display()))?;
            return Ok((Digest::from(hasher.finalize()), hasher.count()));
        }
        let mut file = file;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            };
            hasher.update(&buf[..n]);
        }
        Ok((Digest::from(hasher.finalize()), hasher.count()))
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest::blake3(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.func != HashFn::Blake3 {
            write!(f, "{}:", self.func.name())?;
        }
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.func {
            HashFn::Blake3 => "",
            HashFn::Sha256 => "sha256:",
        };
        write!(f, "Digest({prefix}{})", &self.to_hex()[..16])
    }
}

impl std::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else if self.func == HashFn::Blake3 {
            s.serialize_bytes(&self.bytes)
        } else {
            let mut tagged = [0u8; 33];
            tagged[0] = self.func.tag();
            tagged[1..].copy_from_slice(&self.bytes);
            s.serialize_bytes(&tagged)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Digest::parse(&s).map_err(D::Error::custom)
        } else {
            let b = serde_bytes::ByteBuf::deserialize(d)?;
            let bad = || D::Error::custom("digest is not 32 bytes, or a tag byte and 32");
            match b.len() {
                32 => Ok(Digest::blake3(b.as_slice().try_into().map_err(|_| bad())?)),
                33 => {
                    let func = HashFn::ALL
                        .into_iter()
                        .find(|f| *f != HashFn::Blake3 && f.tag() == b[0])
                        .ok_or_else(|| D::Error::custom("digest of an unknown hash function"))?;
                    Ok(Digest::new(func, b[1..].try_into().map_err(|_| bad())?))
                }
                _ => Err(bad()),
            }
        }
    }
}

/// The running state of one of the [`HashFn`]s.
// BLAKE3's state is the larger one and the common case: kept inline, not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Hasher {
    Blake3(blake3::Hasher),
    Sha256(sha2::Sha256),
}

/// An incremental digest, for verifying a stream as it passes: hashes with the function it
/// was made for (BLAKE3 by default, [`DigestWriter::for_fn`] for another).
#[derive(Debug, Clone)]
pub struct DigestWriter {
    hasher: Hasher,
    len: u64,
}

impl Default for DigestWriter {
    fn default() -> Self {
        DigestWriter::for_fn(HashFn::Blake3)
    }
}

impl DigestWriter {
    /// A new, empty BLAKE3 hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, empty hasher of `func`.
    pub fn for_fn(func: HashFn) -> Self {
        let hasher = match func {
            HashFn::Blake3 => Hasher::Blake3(blake3::Hasher::new()),
            HashFn::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        };
        DigestWriter { hasher, len: 0 }
    }

    /// A new, empty hasher of `digest`'s function (to check bytes against it).
    pub fn for_digest(digest: &Digest) -> Self {
        Self::for_fn(digest.func())
    }

    /// The function it hashes with.
    pub fn func(&self) -> HashFn {
        match self.hasher {
            Hasher::Blake3(_) => HashFn::Blake3,
            Hasher::Sha256(_) => HashFn::Sha256,
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        match &mut self.hasher {
            // Chunks of a megabyte or more are worth both cores.
            Hasher::Blake3(h) if bytes.len() >= 1 << 20 => {
                h.update_rayon(bytes);
            }
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(&self) -> Digest {
        match &self.hasher {
            Hasher::Blake3(h) => Digest::from(h.finalize()),
            Hasher::Sha256(h) => Digest::sha256(h.clone().finalize().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Digest::of(b"hello");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert!(Digest::from_hex("zz").is_err());
        assert!(Digest::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn file_digest_matches_memory_digest_small_and_large() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 10, (PARALLEL_HASH_THRESHOLD as usize) + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            std::fs::write(&p, &data).unwrap();
            assert_eq!(
                Digest::of_file(&p).unwrap(),
                (Digest::of(&data), len as u64)
            );
        }
    }

    #[test]
    fn serde_is_hex_for_humans_and_bytes_for_machines() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", d.to_hex()));
        let mut cbor = Vec::new();
        ciborium::into_writer(&d, &mut cbor).unwrap();
        assert_eq!(cbor.len(), 34);
        let back: Digest = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn sha256_digests_carry_their_function_in_text_and_binary() {
        let s = HashFn::Sha256.digest(b"abc");
        assert_eq!(
            s.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.to_hex().len(), 64);
        assert_eq!(Digest::parse(&s.to_string()).unwrap(), s);
        assert_eq!(s.to_string().parse::<Digest>().unwrap(), s);
        // The same 32 bytes under BLAKE3 are another digest.
        let b = Digest::blake3(*s.as_bytes());
        assert_ne!(b, s);
        assert_eq!(Digest::parse(&s.to_hex()).unwrap(), b);
        assert_eq!(Digest::parse(&format!("blake3:{}", b.to_hex())).unwrap(), b);
        assert!(Digest::parse(&format!("md5:{}", b.to_hex())).is_err());
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        let mut cbor = Vec::new();
        ciborium::into_writer(&s, &mut cbor).unwrap();
        assert_eq!(cbor.len(), 35);
        let back: Digest = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(back, s);
        // BLAKE3's binary form is unchanged: 32 bytes.
        let mut cbor = Vec::new();
        ciborium::into_writer(&b, &mut cbor).unwrap();
        assert_eq!(cbor.len(), 34);
    }

    #[test]
    fn the_writer_hashes_with_its_function() {
        for f in HashFn::ALL {
            let mut w = DigestWriter::for_fn(f);
            w.update(b"hello ");
            w.update(&vec![7u8; 2 << 20]);
            let mut all = b"hello ".to_vec();
            all.extend(vec![7u8; 2 << 20]);
            assert_eq!(w.finish(), f.digest(&all));
            assert_eq!(w.finish().func(), f);
            assert_eq!(w.len(), all.len() as u64);
        }
        assert_eq!(HashFn::Blake3.digest(b"x"), Digest::of(b"x"));
    }
}
