//! BLAKE3-256 digests of blobs and signatures, and fast hashing of files.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, IoResultExt, Result};

/// Files at least this large are hashed through a memory map with BLAKE3's multi-threaded
/// implementation; smaller ones are read into a buffer (a map costs more than it saves there).
pub const PARALLEL_HASH_THRESHOLD: u64 = 1 << 20;

/// A BLAKE3-256 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The digest of the empty blob.
    pub fn empty() -> Digest {
        Digest::of(&[])
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }

    /// Parse 64 hex digits.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `s` is not 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Digest> {
        if s.len() != 64 {
            return Err(Error::invalid(format!("digest {s:?} is not 64 hex digits")));
        }
        blake3::Hash::from_hex(s)
            .map(Digest::from)
            .map_err(|_| Error::invalid(format!("digest {s:?} is not 64 hex digits")))
    }

    /// The digest of a file's contents, read in one pass (memory-mapped and multi-threaded for
    /// large files).
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
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

impl std::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::from_hex(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Digest::from_hex(&s).map_err(D::Error::custom)
        } else {
            let b = serde_bytes::ByteBuf::deserialize(d)?;
            let arr: [u8; 32] = b
                .as_slice()
                .try_into()
                .map_err(|_| D::Error::custom("digest is not 32 bytes"))?;
            Ok(Digest(arr))
        }
    }
}

/// An incremental digest, for verifying a stream as it passes.
#[derive(Debug, Default, Clone)]
pub struct DigestWriter {
    hasher: blake3::Hasher,
}

impl DigestWriter {
    /// A new, empty hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        // Chunks of a megabyte or more are worth both cores.
        if bytes.len() >= 1 << 20 {
            self.hasher.update_rayon(bytes);
        } else {
            self.hasher.update(bytes);
        }
    }
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.hasher.count()
    }
    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.hasher.count() == 0
    }
    /// The digest of everything fed.
    pub fn finish(&self) -> Digest {
        Digest::from(self.hasher.finalize())
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
}
