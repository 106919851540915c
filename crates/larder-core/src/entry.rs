//! The entry (manifest) format: a small, versioned document stored under a key, listing a task's
//! outputs by content digest, with its captured stdout/stderr and exit code and what it cost.
//!
//! On disk (and on the wire) an entry is the 4-byte magic `LRDE`, a little-endian `u16` format
//! version, then a CBOR map. CBOR keeps the document self-describing (new optional fields can be
//! added without a version bump) and stores inline bytes without hex or base64 overhead.
//!
//! A writer's ed25519 signature travels inside the entry, as the optional `signature` field
//! ([`EntrySignature`]): readers that do not know the field skip it, and entries without one
//! decode as before. What it covers and why it lives here is in [`crate::layer::trust`].

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashFn};
use crate::error::{Error, Result};
use crate::key::validate_rel_path;

/// The entry format version this build writes.
pub const ENTRY_VERSION: u16 = 1;
/// Magic bytes at the start of every encoded entry.
pub const ENTRY_MAGIC: &[u8; 4] = b"LRDE";
/// The largest encoded entry larder reads or writes; anything larger is treated as corrupt.
pub const MAX_ENTRY_BYTES: usize = 64 << 20;
/// The most outputs one entry may list.
pub const MAX_OUTPUTS: usize = 1 << 20;
/// Outputs up to this size are stored inside the entry by default (one file write instead of two).
pub const DEFAULT_INLINE_LIMIT: u64 = 4096;

/// Some bytes: a digest and size, with the bytes themselves when small enough to inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Length in bytes.
    pub size: u64,
    /// BLAKE3 of the bytes.
    pub digest: Digest,
    /// The bytes, when inlined in the entry; else they are a blob under `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<serde_bytes::ByteBuf>,
}

impl Content {
    /// Inline `bytes`.
    pub fn inline(bytes: Vec<u8>) -> Content {
        Content {
            size: bytes.len() as u64,
            digest: Digest::of(&bytes),
            inline: Some(serde_bytes::ByteBuf::from(bytes)),
        }
    }

    /// Refer to a blob.
    pub fn blob(digest: Digest, size: u64) -> Content {
        Content {
            size,
            digest,
            inline: None,
        }
    }

    /// The blob this content needs from the store, if not inline.
    pub fn blob_digest(&self) -> Option<Digest> {
        self.inline.is_none().then_some(self.digest)
    }

    /// Inline bytes of the recorded size; with `hash`, also of the recorded digest. `what` names
    /// the content in an error (built only then: this runs for every output of every entry read).
    fn validate(&self, what: impl Fn() -> String, hash: bool) -> Result<()> {
        // Entries name larder's own blobs; the index and trims of every store rely on it.
        if self.digest.func() != HashFn::Blake3 {
            return Err(Error::corrupt(
                what(),
                format!(
                    "names a {} digest; entries name BLAKE3 blobs",
                    self.digest.func()
                ),
            ));
        }
        if let Some(bytes) = &self.inline {
            if bytes.len() as u64 != self.size {
                return Err(Error::corrupt(what(), "inline size does not match"));
            }
            if hash && Digest::of(bytes) != self.digest {
                return Err(Error::corrupt(
                    what(),
                    "inline bytes do not match their digest",
                ));
            }
        }
        Ok(())
    }
}

/// What an output is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged on purpose: internal tagging and `flatten` buffer through a deserializer that
// claims to be human-readable, which breaks binary digests.
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A regular file.
    File {
        /// Its bytes.
        content: Content,
        /// Whether any execute bit was set.
        executable: bool,
    },
    /// A directory (listed so that empty directories are restored too).
    Dir,
    /// A symbolic link, restored with the same target text.
    Symlink {
        /// The link's target, as read by `readlink`.
        target: String,
    },
}

/// One output of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Relative path, `/`-separated, validated by [`validate_rel_path`].
    pub path: String,
    /// What it is.
    pub kind: OutputKind,
}

impl Output {
    /// The number of bytes this output holds (0 for directories and links).
    pub fn size(&self) -> u64 {
        match &self.kind {
            OutputKind::File { content, .. } => content.size,
            _ => 0,
        }
    }
}

/// A writer's signature over an entry (see [`crate::layer::trust`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySignature {
    /// The signer's ed25519 public key (32 bytes).
    pub public_key: serde_bytes::ByteBuf,
    /// The ed25519 signature (64 bytes) over the key and the entry's encoding without this
    /// field.
    pub signature: serde_bytes::ByteBuf,
}

/// A cache entry: everything needed to replay a task without running it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key this entry was stored under (a signature, or a user key).
    pub key: String,
    /// The task's outputs.
    pub outputs: Vec<Output>,
    /// Captured standard output, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<Content>,
    /// Captured standard error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Content>,
    /// The task's exit code, if it was a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When the entry was made, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The producer's task kind (`exec`, `put`, `waf`, ...).
    pub producer: String,
    /// How long the task took to run, in milliseconds: what a hit saves.
    pub cost_ms: u64,
    /// The writer's signature, if it signed the entry (last, and absent when unsigned, so an
    /// unsigned entry encodes exactly as before signatures existed). Boxed: most entries have
    /// none, and an entry value stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Box<EntrySignature>>,
}

impl Entry {
    /// A new entry with no outputs, created now.
    pub fn new(key: impl Into<String>, producer: impl Into<String>) -> Entry {
        Entry {
            key: key.into(),
            outputs: Vec::new(),
            stdout: None,
            stderr: None,
            exit_code: None,
            created_ms: now_ms(),
            producer: producer.into(),
            cost_ms: 0,
            signature: None,
        }
    }

    /// Total bytes of the outputs (and captured streams).
    pub fn total_size(&self) -> u64 {
        let streams = self.stdout.iter().chain(&self.stderr).map(|c| c.size);
        self.outputs.iter().map(Output::size).chain(streams).sum()
    }

    /// Every content item of the entry (file outputs, stdout, stderr).
    pub fn contents(&self) -> impl Iterator<Item = &Content> {
        let files = self.outputs.iter().filter_map(|o| match &o.kind {
            OutputKind::File { content, .. } => Some(content),
            _ => None,
        });
        files.chain(self.stdout.iter()).chain(self.stderr.iter())
    }

    /// The digests of blobs this entry needs from the store (deduplicated, sorted).
    pub fn blob_digests(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = self.contents().filter_map(Content::blob_digest).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Check every rule an entry must satisfy: safe, unique output paths, no output below a
    /// file or symlink output, inline bytes matching their digests.
    ///
    /// # Errors
    /// [`Error::UnsafePath`] or [`Error::Corrupt`] naming the first broken rule.
    pub fn validate(&self) -> Result<()> {
        self.check(true)
    }

    /// [`Entry::validate`] without hashing inline bytes: for entries whose inline digests are
    /// known to match, because [`Content::inline`] computed them or [`Entry::decode`] checked
    /// them.
    pub(crate) fn validate_shape(&self) -> Result<()> {
        self.check(false)
    }

    fn check(&self, hash: bool) -> Result<()> {
        if self.outputs.len() > MAX_OUTPUTS {
            return Err(Error::TooLarge {
                what: "entry output list".into(),
                size: self.outputs.len() as u64,
                limit: MAX_OUTPUTS as u64,
            });
        }
        let mut paths: Vec<&str> = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            validate_rel_path(&o.path)?;
            if let OutputKind::File { content, .. } = &o.kind {
                content.validate(|| format!("entry {} output {}", self.key, o.path), hash)?;
            }
            paths.push(o.path.as_str());
        }
        paths.sort_unstable();
        if let Some(pair) = paths.windows(2).find(|p| p[0] == p[1]) {
            return Err(Error::UnsafePath {
                path: pair[0].to_owned(),
                reason: "listed twice in one entry",
            });
        }
        // A file or symlink must not be a parent of another output: restoring would write through
        // a symlink or fail on a file.
        let non_dirs: std::collections::HashSet<&str> = self
            .outputs
            .iter()
            .filter(|o| !matches!(o.kind, OutputKind::Dir))
            .map(|o| o.path.as_str())
            .collect();
        for o in &self.outputs {
            let mut p = o.path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                if non_dirs.contains(p) {
                    return Err(Error::UnsafePath {
                        path: o.path.clone(),
                        reason: "lies below a file or symlink output",
                    });
                }
            }
        }
        for (name, c) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if let Some(c) = c {
                c.validate(|| format!("entry {} {name}", self.key), hash)?;
            }
        }
        Ok(())
    }

    /// Encode to the stored form (magic, version, CBOR).
    ///
    /// # Errors
    /// [`Error::TooLarge`] over [`MAX_ENTRY_BYTES`]; validation errors from [`Entry::validate`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out = Vec::with_capacity(256 + self.outputs.len() * 96);
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&ENTRY_VERSION.to_le_bytes());
        ciborium::into_writer(self, &mut out)
            .map_err(|e| Error::invalid(format!("cannot encode entry {}: {e}", self.key)))?;
        if out.len() > MAX_ENTRY_BYTES {
            return Err(Error::TooLarge {
                what: format!("entry {}", self.key),
                size: out.len() as u64,
                limit: MAX_ENTRY_BYTES as u64,
            });
        }
        Ok(out)
    }

    /// Decode and validate a stored entry.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the bytes are not a valid entry of a version this build reads.
    pub fn decode(bytes: &[u8]) -> Result<Entry> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(Error::corrupt("entry", "larger than the entry size limit"));
        }
        if bytes.len() < 6 || &bytes[..4] != ENTRY_MAGIC {
            return Err(Error::corrupt("entry", "bad magic"));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != ENTRY_VERSION {
            return Err(Error::corrupt(
                "entry",
                format!("format version {version}, this build reads {ENTRY_VERSION}"),
            ));
        }
        let entry: Entry = ciborium::from_reader(&bytes[6..])
            .map_err(|e| Error::corrupt("entry", format!("undecodable: {e}")))?;
        entry.validate().map_err(|e| match e {
            Error::Corrupt { .. } => e,
            other => Error::corrupt("entry", other.to_string()),
        })?;
        Ok(entry)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        let mut e = Entry::new("k", "exec");
        e.outputs.push(Output {
            path: "bin/app".into(),
            kind: OutputKind::File {
                content: Content::blob(Digest::of(b"big"), 3),
                executable: true,
            },
        });
        e.outputs.push(Output {
            path: "lib/a.o".into(),
            kind: OutputKind::File {
                content: Content::inline(b"obj".to_vec()),
                executable: false,
            },
        });
        e.outputs.push(Output {
            path: "empty".into(),
            kind: OutputKind::Dir,
        });
        e.stdout = Some(Content::inline(b"hello\n".to_vec()));
        e.exit_code = Some(0);
        e.cost_ms = 1234;
        e
    }

    #[test]
    fn round_trip() {
        let e = sample();
        let bytes = e.encode().unwrap();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        assert_eq!(e.blob_digests(), vec![Digest::of(b"big")]);
        assert_eq!(e.total_size(), 3 + 3 + 6);
    }

    #[test]
    fn signatures_are_optional_both_ways() {
        // An entry as this build wrote it before signatures existed: the same fields, no
        // `signature`.
        #[derive(Serialize, Deserialize)]
        struct Old {
            key: String,
            outputs: Vec<Output>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            stdout: Option<Content>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            stderr: Option<Content>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            exit_code: Option<i32>,
            created_ms: u64,
            producer: String,
            cost_ms: u64,
        }
        let e = sample();
        let old = Old {
            key: e.key.clone(),
            outputs: e.outputs.clone(),
            stdout: e.stdout.clone(),
            stderr: e.stderr.clone(),
            exit_code: e.exit_code,
            created_ms: e.created_ms,
            producer: e.producer.clone(),
            cost_ms: e.cost_ms,
        };
        let mut old_bytes = ENTRY_MAGIC.to_vec();
        old_bytes.extend_from_slice(&ENTRY_VERSION.to_le_bytes());
        ciborium::into_writer(&old, &mut old_bytes).unwrap();
        // Unsigned entries are byte for byte what older builds wrote, and read back.
        assert_eq!(e.encode().unwrap(), old_bytes);
        assert_eq!(Entry::decode(&old_bytes).unwrap(), e);
        // A signed entry is still readable by a reader that does not know the field.
        let mut signed = e.clone();
        signed.signature = Some(Box::new(EntrySignature {
            public_key: serde_bytes::ByteBuf::from(vec![7; 32]),
            signature: serde_bytes::ByteBuf::from(vec![9; 64]),
        }));
        let bytes = signed.encode().unwrap();
        let read_by_old: Old = ciborium::from_reader(&bytes[6..]).unwrap();
        assert_eq!(read_by_old.outputs, e.outputs);
        assert_eq!(Entry::decode(&bytes).unwrap(), signed);
    }

    #[test]
    fn corrupt_documents_are_rejected() {
        let bytes = sample().encode().unwrap();
        assert!(Entry::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(Entry::decode(b"nope").is_err());
        let mut other_version = bytes.clone();
        other_version[4] = 9;
        assert!(Entry::decode(&other_version).is_err());
        // Flip a byte inside the inline data: the digest check catches it.
        let pos = bytes.windows(3).position(|w| w == b"obj").unwrap();
        let mut flipped = bytes.clone();
        flipped[pos] ^= 1;
        assert!(matches!(
            Entry::decode(&flipped),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "a\0"] {
            let mut e = sample();
            e.outputs[0].path = bad.into();
            assert!(e.encode().is_err(), "{bad:?}");
        }
        let mut dup = sample();
        dup.outputs[1].path = "bin/app".into();
        assert!(dup.validate().is_err());
        let mut below_link = sample();
        below_link.outputs.push(Output {
            path: "link".into(),
            kind: OutputKind::Symlink {
                target: "/etc".into(),
            },
        });
        below_link.outputs.push(Output {
            path: "link/passwd".into(),
            kind: OutputKind::File {
                content: Content::inline(vec![]),
                executable: false,
            },
        });
        assert!(below_link.validate().is_err());
    }
}
