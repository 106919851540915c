//! Keys and relative paths: everything that comes from a user or the network and ends up in a
//! file name is validated here, once, so stores never see `../`, absolute paths or NUL bytes.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The longest key larder accepts, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// The longest relative path (output name) larder accepts, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// A validated cache key: a task signature (64 hex digits) or a user-chosen name.
///
/// Keys are 1 to [`MAX_KEY_LEN`] bytes of ASCII letters, digits and `._-+=:@,`, with `/` allowed
/// between non-empty segments that are not `.` or `..`. Stores never use the key as a file name
/// directly: [`Key::storage_name`] maps it to 64 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Validate `key`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] saying which rule the key breaks.
    pub fn new(key: impl Into<String>) -> Result<Key> {
        let key = key.into();
        let reject = |reason| {
            Err(Error::InvalidKey {
                key: key.clone(),
                reason,
            })
        };
        if key.is_empty() {
            return reject("empty");
        }
        if key.len() > MAX_KEY_LEN {
            return reject("longer than 512 bytes");
        }
        if key.contains('\0') {
            return reject("contains a NUL byte");
        }
        if key.starts_with('/') {
            return reject("absolute path");
        }
        if let Some(c) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-+=:@,/".contains(*c)))
        {
            return if c == '\\' {
                reject("contains a backslash")
            } else {
                reject("contains a character outside [A-Za-z0-9._-+=:@,/]")
            };
        }
        for segment in key.split('/') {
            match segment {
                "" => return reject("empty path segment"),
                "." | ".." => return reject("contains a `.` or `..` segment"),
                _ => {}
            }
        }
        Ok(Key(key))
    }

    /// The key for a task signature.
    pub fn from_signature(sig: &Digest) -> Key {
        Key(sig.to_hex())
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fixed-length, file-name-safe name for this key: the key itself when it is already a
    /// 64-hex-digit signature, else the BLAKE3 of the key (domain-separated).
    pub fn storage_name(&self) -> String {
        if self.0.len() == 64
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            self.0.clone()
        } else {
            let mut h = blake3::Hasher::new_derive_key("larder 2026 key name v1");
            h.update(self.0.as_bytes());
            Digest::from(h.finalize()).to_hex()
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

impl std::str::FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Key::new(s)
    }
}

/// Check that `path` is a safe relative path: not empty, not absolute, no `..` or `.` segment,
/// no NUL, no backslash, no empty segment, at most [`MAX_PATH_LEN`] bytes.
///
/// Output names in entries come from whoever wrote the entry (maybe another machine): they are
/// checked on every write *and* every read.
pub fn validate_rel_path(path: &str) -> Result<()> {
    let reject = |reason| {
        Err(Error::UnsafePath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return reject("empty");
    }
    if path.len() > MAX_PATH_LEN {
        return reject("longer than 4096 bytes");
    }
    if path.contains('\0') {
        return reject("contains a NUL byte");
    }
    if path.contains('\\') {
        return reject("contains a backslash");
    }
    if path.starts_with('/') {
        return reject("absolute path");
    }
    for segment in path.split('/') {
        match segment {
            "" => return reject("empty path segment"),
            "." | ".." => return reject("contains a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_keys_are_accepted() {
        for k in [
            "a",
            "abc/def",
            "v1:gcc-12@x86_64",
            "a.b-c_d+e=f,g",
            &"x".repeat(512),
        ] {
            assert!(Key::new(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn bad_keys_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("../etc/passwd", "`.` or `..`"),
            ("a/../b", "`.` or `..`"),
            ("/etc/passwd", "absolute"),
            ("a\0b", "NUL"),
            ("a//b", "empty path segment"),
            ("a\\b", "backslash"),
            ("a b", "outside"),
        ];
        for (k, why) in cases {
            let err = Key::new(k).unwrap_err().to_string();
            assert!(err.contains(why), "{k:?}: {err}");
        }
        let long = "x".repeat(513);
        assert!(Key::new(long).unwrap_err().to_string().contains("longer"));
    }

    #[test]
    fn storage_name_is_hex_and_keeps_signatures() {
        let sig = "0123456789abcdef".repeat(4);
        assert_eq!(Key::new(sig.clone()).unwrap().storage_name(), sig);
        let other = Key::new("my/key").unwrap().storage_name();
        assert_eq!(other.len(), 64);
        assert_ne!(other, Key::new("my/key2").unwrap().storage_name());
        // Upper-case hex is a different key and must not alias the lower-case signature.
        assert_ne!(Key::new(sig.to_uppercase()).unwrap().storage_name(), sig);
    }

    #[test]
    fn rel_paths_are_checked() {
        assert!(validate_rel_path("build/app.o").is_ok());
        for p in ["", "/abs", "../up", "a/./b", "a//b", "a\0b", "a\\b"] {
            assert!(validate_rel_path(p).is_err(), "{p:?}");
        }
    }
}
