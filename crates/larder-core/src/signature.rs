//! Task signatures: BLAKE3-256 over a canonical, versioned encoding of everything that
//! determines a task's outputs.
//!
//! # Encoding (schema 1)
//! The hasher is keyed by BLAKE3's `derive_key` with the context `"larder 2026 task signature"`,
//! then fed `u32` schema, then tagged fields, each string as `u64` little-endian length + bytes:
//! `K` kind; `A` each argument in order; `E` each (name, value) sorted by name; `I` each input
//! (normalized path, digest, executable flag) sorted by path; `O` each normalized output name,
//! sorted; `S` the salt; `N` the normalizer's id. Every path and value passes through the
//! [`PathNormalizer`] first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::normalize::PathNormalizer;
use crate::statcache::{FileStamp, StatCache, now_ns};

/// The signature encoding this build computes. Bumping it invalidates every signature.
pub const SIGNATURE_SCHEMA: u32 = 1;

/// A file's digest as an input of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputDigest {
    /// BLAKE3 of the contents.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Whether any execute bit is set.
    pub executable: bool,
    /// Whether the digest came from the stat cache (no read).
    pub from_cache: bool,
}

/// Hashes input files in parallel, through a [`StatCache`].
#[derive(Debug)]
pub struct InputHasher {
    cache: StatCache,
}

impl InputHasher {
    /// A hasher that remembers digests in `cache`.
    pub fn new(cache: StatCache) -> Self {
        InputHasher { cache }
    }

    /// The stat cache.
    pub fn cache(&self) -> &StatCache {
        &self.cache
    }

    /// Digest every file in `paths`, reading only those the stat cache cannot vouch for.
    /// Results are in the order of `paths`.
    ///
    /// The stat-cache answers cost one `stat` each. Under [`PARALLEL_STAT_MIN`] paths they are
    /// taken on this thread, so re-signing a small unchanged task starts no thread pool; larger
    /// lists are stat'ed in parallel. The files that must be read are hashed in parallel.
    ///
    /// # Errors
    /// [`Error::Io`] naming the first file that cannot be read.
    pub fn hash_files(&self, paths: &[PathBuf]) -> Result<Vec<InputDigest>> {
        let stamps: Vec<FileStamp> = if paths.len() < PARALLEL_STAT_MIN {
            paths.iter().map(|p| stamp_of(p)).collect::<Result<_>>()?
        } else {
            paths
                .par_iter()
                .map(|p| stamp_of(p))
                .collect::<Result<_>>()?
        };
        let mut found: Vec<Option<InputDigest>> = Vec::with_capacity(paths.len());
        let mut to_read: Vec<(usize, FileStamp)> = Vec::new();
        for (i, stamp) in stamps.into_iter().enumerate() {
            let cached = self.cached(&stamp);
            if cached.is_none() {
                to_read.push((i, stamp));
            }
            found.push(cached);
        }
        let read: Vec<(usize, InputDigest)> = match to_read.len() {
            0 => Vec::new(),
            1 => vec![(to_read[0].0, self.read(&paths[to_read[0].0], to_read[0].1)?)],
            _ => to_read
                .par_iter()
                .map(|&(i, stamp)| Ok((i, self.read(&paths[i], stamp)?)))
                .collect::<Result<_>>()?,
        };
        for (i, d) in read {
            found[i] = Some(d);
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Digest one file (see [`InputHasher::hash_files`]).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read.
    pub fn hash_file(&self, path: &Path) -> Result<InputDigest> {
        let stamp = stamp_of(path)?;
        match self.cached(&stamp) {
            Some(d) => Ok(d),
            None => self.read(path, stamp),
        }
    }

    fn cached(&self, stamp: &FileStamp) -> Option<InputDigest> {
        self.cache.lookup(stamp).map(|digest| InputDigest {
            digest,
            size: stamp.size(),
            executable: stamp.executable(),
            from_cache: true,
        })
    }

    /// Read and hash a file the stat cache could not vouch for; remember its digest.
    fn read(&self, path: &Path, stamp: FileStamp) -> Result<InputDigest> {
        let started = now_ns();
        let (digest, size) = Digest::of_file(path)?;
        // Record only if the file did not change while we read it.
        if let Ok(after) = std::fs::metadata(path)
            && FileStamp::from_metadata(&after) == stamp
        {
            self.cache.insert(&stamp, digest, started);
        }
        Ok(InputDigest {
            digest,
            size,
            executable: stamp.executable(),
            from_cache: false,
        })
    }
}

/// From this many input paths on, [`InputHasher::hash_files`] stats them on the thread pool:
/// below it, starting the pool in a one-shot process costs more than the parallel `stat`s save.
pub const PARALLEL_STAT_MIN: usize = 256;

/// A regular file's stamp.
fn stamp_of(path: &Path) -> Result<FileStamp> {
    let meta = std::fs::metadata(path).ctx(|| format!("reading input {}", path.display()))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "input {} is not a regular file",
            path.display()
        )));
    }
    Ok(FileStamp::from_metadata(&meta))
}

/// Builds a task signature. Order of calls does not matter except for arguments.
#[derive(Debug)]
pub struct SignatureBuilder<'a> {
    normalizer: &'a dyn PathNormalizer,
    kind: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    inputs: BTreeMap<String, (Digest, bool)>,
    outputs: Vec<String>,
    salt: String,
}

impl<'a> SignatureBuilder<'a> {
    /// A signature for a task of `kind` (`exec`, `cc`, `waf`, ...).
    pub fn new(kind: impl Into<String>, normalizer: &'a dyn PathNormalizer) -> Self {
        SignatureBuilder {
            normalizer,
            kind: kind.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            inputs: BTreeMap::new(),
            outputs: Vec::new(),
            salt: String::new(),
        }
    }

    /// Add a command argument (normalized).
    ///
    /// # Errors
    /// Errors from the normalizer.
    pub fn arg(&mut self, arg: &str) -> Result<&mut Self> {
        self.args.push(self.normalizer.normalize_value("", arg)?);
        Ok(self)
    }

    /// Add an environment variable (its value normalized). An unset variable is recorded as
    /// such, distinct from an empty one.
    ///
    /// # Errors
    /// Errors from the normalizer.
    pub fn env(&mut self, name: &str, value: Option<&str>) -> Result<&mut Self> {
        let v = match value {
            Some(v) => format!("={}", self.normalizer.normalize_value(name, v)?),
            None => "unset".to_owned(),
        };
        self.env.insert(name.to_owned(), v);
        Ok(self)
    }

    /// Add an input file by path (normalized) and digest.
    ///
    /// # Errors
    /// Errors from the normalizer; [`Error::InvalidInput`] if two inputs normalize to one path
    /// with different contents.
    pub fn input(&mut self, path: &str, input: &InputDigest) -> Result<&mut Self> {
        let p = self.normalizer.normalize_path(path)?;
        if let Some(prev) = self
            .inputs
            .insert(p.clone(), (input.digest, input.executable))
            && prev != (input.digest, input.executable)
        {
            return Err(Error::invalid(format!(
                "two different inputs normalize to the same path {p:?}"
            )));
        }
        Ok(self)
    }

    /// Add an output name (normalized).
    ///
    /// # Errors
    /// Errors from the normalizer.
    pub fn output(&mut self, name: &str) -> Result<&mut Self> {
        self.outputs.push(self.normalizer.normalize_path(name)?);
        Ok(self)
    }

    /// Set the salt (a toolchain version, a cache-busting string).
    pub fn salt(&mut self, salt: &str) -> &mut Self {
        salt.clone_into(&mut self.salt);
        self
    }

    /// The signature.
    pub fn finish(&self) -> Digest {
        fn s(h: &mut blake3::Hasher, tag: u8, v: &[u8]) {
            h.update(&[tag]);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
        let mut h = blake3::Hasher::new_derive_key("larder 2026 task signature");
        h.update(&SIGNATURE_SCHEMA.to_le_bytes());
        s(&mut h, b'K', self.kind.as_bytes());
        for a in &self.args {
            s(&mut h, b'A', a.as_bytes());
        }
        for (k, v) in &self.env {
            s(&mut h, b'E', k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        for (p, (d, x)) in &self.inputs {
            s(&mut h, b'I', p.as_bytes());
            h.update(d.as_bytes());
            h.update(&[u8::from(*x)]);
        }
        let mut outs = self.outputs.clone();
        outs.sort();
        for o in &outs {
            s(&mut h, b'O', o.as_bytes());
        }
        s(&mut h, b'S', self.salt.as_bytes());
        s(&mut h, b'N', self.normalizer.id().as_bytes());
        Digest::from(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::BaseDirs;

    fn input(d: &[u8]) -> InputDigest {
        InputDigest {
            digest: Digest::of(d),
            size: d.len() as u64,
            executable: false,
            from_cache: false,
        }
    }

    #[test]
    fn same_task_in_two_checkouts_has_one_signature() {
        let sign = |base: &str| {
            let n = BaseDirs::new([base]);
            let mut b = SignatureBuilder::new("exec", &n);
            b.arg("cc").unwrap();
            b.arg(&format!("-I{base}/include")).unwrap();
            b.input(&format!("{base}/b.c"), &input(b"b")).unwrap();
            b.input(&format!("{base}/a.c"), &input(b"a")).unwrap();
            b.env("CC", Some("gcc")).unwrap();
            b.output(&format!("{base}/a.o")).unwrap();
            b.finish()
        };
        assert_eq!(sign("/tmp/one"), sign("/var/two"));
    }

    #[test]
    fn every_field_changes_the_signature() {
        let n = BaseDirs::new(["/w"]);
        let base = || {
            let mut b = SignatureBuilder::new("exec", &n);
            b.arg("cc").unwrap();
            b.input("a.c", &input(b"a")).unwrap();
            b.output("a.o").unwrap();
            b
        };
        let s0 = base().finish();
        let variants = [
            {
                let mut b = base();
                b.arg("-O2").unwrap();
                b.finish()
            },
            {
                let mut b = base();
                b.input("a.c", &input(b"a")).unwrap();
                b.input("b.c", &input(b"b")).unwrap();
                b.finish()
            },
            {
                let mut b = base();
                b.env("X", None).unwrap();
                b.finish()
            },
            {
                let mut b = base();
                b.env("X", Some("")).unwrap();
                b.finish()
            },
            {
                let mut b = base();
                b.output("b.o").unwrap();
                b.finish()
            },
            {
                let mut b = base();
                b.salt("gcc-13");
                b.finish()
            },
            SignatureBuilder::new("other", &n).finish(),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, s0, "variant {i}");
        }
        // Argument boundaries matter: ["ab"] != ["a", "b"].
        let mut one = SignatureBuilder::new("exec", &n);
        one.arg("ab").unwrap();
        let mut two = SignatureBuilder::new("exec", &n);
        two.arg("a").unwrap();
        two.arg("b").unwrap();
        assert_ne!(one.finish(), two.finish());
    }

    #[test]
    fn hasher_uses_the_stat_cache_for_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.c");
        std::fs::write(&f, b"int x;").unwrap();
        let h = InputHasher::new(StatCache::in_memory());
        let first = h.hash_file(&f).unwrap();
        assert!(!first.from_cache);
        assert_eq!(first.digest, Digest::of(b"int x;"));
        // The record is racy (just written); pretend it was hashed long after.
        let stamp = FileStamp::from_metadata(&std::fs::metadata(&f).unwrap());
        h.cache()
            .insert(&stamp, first.digest, now_ns() + 10_000_000_000);
        let second = h.hash_file(&f).unwrap();
        assert!(second.from_cache);
        assert_eq!(second.digest, first.digest);
    }

    #[test]
    fn many_inputs_come_back_in_order_with_cached_and_read_ones_mixed() {
        let dir = tempfile::tempdir().unwrap();
        let n = PARALLEL_STAT_MIN + 44;
        let files: Vec<PathBuf> = (0..n)
            .map(|i| {
                let f = dir.path().join(format!("f{i}"));
                std::fs::write(&f, format!("file {i}")).unwrap();
                f
            })
            .collect();
        let h = InputHasher::new(StatCache::in_memory());
        // Every other file is vouched for by the stat cache, under a digest that is not its
        // content's, so a cached answer is told apart from a read.
        for f in files.iter().step_by(2) {
            let stamp = FileStamp::from_metadata(&std::fs::metadata(f).unwrap());
            h.cache()
                .insert(&stamp, Digest::of(b"cached"), now_ns() + 10_000_000_000);
        }
        let got = h.hash_files(&files).unwrap();
        assert_eq!(got.len(), n);
        for (i, d) in got.iter().enumerate() {
            if i % 2 == 0 {
                assert!(d.from_cache, "file {i}");
                assert_eq!(d.digest, Digest::of(b"cached"), "file {i}");
            } else {
                assert!(!d.from_cache, "file {i}");
                assert_eq!(
                    d.digest,
                    Digest::of(format!("file {i}").as_bytes()),
                    "file {i}"
                );
            }
        }
        // A missing file among many is an error naming it.
        let mut with_missing = files.clone();
        with_missing.push(dir.path().join("gone"));
        let err = h.hash_files(&with_missing).unwrap_err().to_string();
        assert!(err.contains("gone"), "{err}");
    }
}
