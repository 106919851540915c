//! REAPI digests: which hash function, the hash, the size, all validated before use.

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    Digest as ProtoDigest, digest_function,
};
use tonic::Status;

/// The hash functions the CAS accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestFn {
    /// SHA-256: what Bazel and BuildStream use, and what Bazel's HTTP cache shares.
    Sha256,
    /// BLAKE3 (REAPI 2.3): asked for explicitly, by the request's `digest_function` or a
    /// `blake3/` segment in a resource name.
    Blake3,
}

impl DigestFn {
    /// The function a request names in its `digest_function` field. UNKNOWN (0) means the
    /// server infers it from the hash length: 64 hex digits are SHA-256.
    pub(crate) fn from_field(value: i32) -> Result<DigestFn, Status> {
        match digest_function::Value::try_from(value) {
            Ok(digest_function::Value::Unknown | digest_function::Value::Sha256) => {
                Ok(DigestFn::Sha256)
            }
            Ok(digest_function::Value::Blake3) => Ok(DigestFn::Blake3),
            _ => Err(Status::invalid_argument(format!(
                "digest function {value} is not supported (SHA256 and BLAKE3 are)"
            ))),
        }
    }

    /// The lowercase name used in resource names (`blobs/blake3/{hash}/{size}`).
    pub(crate) fn from_segment(s: &str) -> Option<DigestFn> {
        match s {
            "sha256" => Some(DigestFn::Sha256),
            "blake3" => Some(DigestFn::Blake3),
            _ => None,
        }
    }

    /// The hash of the empty blob, which always exists.
    pub fn empty_hash(self) -> &'static str {
        match self {
            DigestFn::Sha256 => "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            DigestFn::Blake3 => "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        }
    }

    /// larder's name for this function.
    pub fn hash_fn(self) -> larder_core::HashFn {
        match self {
            DigestFn::Sha256 => larder_core::HashFn::Sha256,
            DigestFn::Blake3 => larder_core::HashFn::Blake3,
        }
    }

    /// A hasher for this function.
    pub(crate) fn hasher(self) -> Hasher {
        match self {
            DigestFn::Sha256 => Hasher::Sha256(Box::default()),
            DigestFn::Blake3 => Hasher::Blake3(Box::default()),
        }
    }
}

/// An incremental hash of one of the [`DigestFn`]s.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256(Box<sha2::Sha256>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// 64 lowercase hex digits.
    pub(crate) fn finalize_hex(self) -> String {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

/// The hex digest of `data` under `func`.
pub(crate) fn hash_hex(func: DigestFn, data: &[u8]) -> String {
    let mut h = func.hasher();
    h.update(data);
    h.finalize_hex()
}

/// A validated blob digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobId {
    /// The hash function.
    pub func: DigestFn,
    /// 64 lowercase hex digits.
    pub hash: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// Whether `hash` is 64 lowercase hex digits (both functions are 256-bit).
pub(crate) fn valid_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobId {
    /// Validate a digest from a request; a missing or malformed one is INVALID_ARGUMENT.
    pub(crate) fn parse(d: Option<&ProtoDigest>, func: DigestFn) -> Result<BlobId, Status> {
        let d = d.ok_or_else(|| Status::invalid_argument("a digest is missing"))?;
        BlobId::from_parts(func, &d.hash, d.size_bytes)
    }

    pub(crate) fn from_parts(func: DigestFn, hash: &str, size: i64) -> Result<BlobId, Status> {
        if !valid_hash(hash) {
            return Err(Status::invalid_argument(format!(
                "digest hash {hash:?} is not 64 lowercase hex digits"
            )));
        }
        let size = u64::try_from(size).map_err(|_| {
            Status::invalid_argument(format!("digest {hash} has a negative size {size}"))
        })?;
        Ok(BlobId {
            func,
            hash: hash.to_owned(),
            size,
        })
    }

    /// Whether this is the empty blob (always present, never stored).
    pub fn is_empty(&self) -> bool {
        self.size == 0 && self.hash == self.func.empty_hash()
    }

    /// The protocol form.
    pub(crate) fn to_proto(&self) -> ProtoDigest {
        ProtoDigest {
            hash: self.hash.clone(),
            size_bytes: self.size as i64,
        }
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hash, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hashes_are_the_hashes_of_nothing() {
        for f in [DigestFn::Sha256, DigestFn::Blake3] {
            assert_eq!(hash_hex(f, b""), f.empty_hash());
        }
    }

    #[test]
    fn digests_are_validated() {
        let h = "a".repeat(64);
        assert!(BlobId::from_parts(DigestFn::Sha256, &h, 3).is_ok());
        assert!(BlobId::from_parts(DigestFn::Sha256, &h, -1).is_err());
        assert!(BlobId::from_parts(DigestFn::Sha256, &"A".repeat(64), 1).is_err());
        assert!(BlobId::from_parts(DigestFn::Sha256, "abc", 1).is_err());
        assert!(DigestFn::from_field(9).is_ok() && DigestFn::from_field(2).is_err());
    }
}
