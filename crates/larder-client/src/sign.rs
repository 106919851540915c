//! Signing a task: its input files hashed through the stat cache, then the signature over the
//! command, the chosen environment variables, the inputs, the output names and the salt, every
//! path and value through a [`PathNormalizer`] (see [`larder_core::signature`] for the encoding).

use std::path::PathBuf;

use larder_core::Key;
use larder_core::normalize::PathNormalizer;
use larder_core::signature::{InputDigest, InputHasher, SignatureBuilder};
use larder_core::statcache::StatCache;

use crate::error::{Error, Result};

/// An input file of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Its name in the signature: relative to the working directory when inside it, else
    /// absolute (the normalizer takes checkout paths out).
    pub name: String,
    /// The file to read.
    pub path: PathBuf,
}

/// What a task's signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    /// The task kind (`exec`), also recorded as the entry's producer.
    pub kind: &'a str,
    /// The command and its arguments.
    pub command: &'a [String],
    /// Environment variables whose value (or absence) in this process is part of the signature.
    pub env: &'a [String],
    /// The input files, in the order their digests are given to [`Task::sign`].
    pub inputs: &'a [Input],
    /// The output names, relative to the working directory.
    pub outputs: &'a [String],
    /// Any string that should change the signature (a toolchain version).
    pub salt: &'a str,
}

impl Task<'_> {
    /// Digest every input file, in the order of [`Task::inputs`], through the stat cache saved
    /// in the file `stat_cache` (an unchanged file costs a `stat`, not a read; the cache is
    /// saved again afterwards, and a failure to save is only logged), or an in-memory one.
    /// Blocking: call it inside `block_in_place` or on a blocking thread.
    ///
    /// # Errors
    /// [`Error::Hash`] naming the first input that cannot be read.
    pub fn hash_inputs(&self, stat_cache: Option<PathBuf>) -> Result<Vec<InputDigest>> {
        let statcache = stat_cache
            .map(StatCache::load)
            .unwrap_or_else(StatCache::in_memory);
        let hasher = InputHasher::new(statcache);
        let paths: Vec<PathBuf> = self.inputs.iter().map(|i| i.path.clone()).collect();
        let digests = hasher.hash_files(&paths).map_err(Error::Hash)?;
        if let Err(e) = hasher.cache().save() {
            tracing::debug!("cannot save the stat cache: {e}");
        }
        Ok(digests)
    }

    /// The task's key, from its inputs' `digests` ([`Task::hash_inputs`]), with every path and
    /// value passed through `normalizer`.
    ///
    /// # Errors
    /// [`Error::Normalize`] when the normalizer refuses a path or value: the task must not be
    /// cached.
    pub fn sign(&self, digests: &[InputDigest], normalizer: &dyn PathNormalizer) -> Result<Key> {
        let signed = || -> larder_core::Result<Key> {
            let mut sig = SignatureBuilder::new(self.kind, normalizer);
            for a in self.command {
                sig.arg(a)?;
            }
            for name in self.env {
                let value = std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
                sig.env(name, value.as_deref())?;
            }
            for (input, digest) in self.inputs.iter().zip(digests) {
                sig.input(&input.name, digest)?;
            }
            for o in self.outputs {
                sig.output(o)?;
            }
            sig.salt(self.salt);
            Ok(Key::from_signature(&sig.finish()))
        };
        signed().map_err(Error::Normalize)
    }
}
