//! [`PolicyHost`]: loads policy components (compiling through the on-disk cache) and
//! pre-instantiates them for the world they claim to implement.

use std::path::{Path, PathBuf};

use wasmtime::component::{Component, Linker};

use crate::admission::WasmAdmission;
use crate::bindings;
use crate::engine::{compile, engine};
use crate::error::{PolicyError, Result};
use crate::eviction::WasmEviction;
use crate::normalize::{NormalizeContext, WasmNormalizer};
use crate::sandbox::{Limits, Sandbox};

/// Loads policies. Holds the settings shared by every policy it loads.
#[derive(Debug, Clone, Default)]
pub struct PolicyHost {
    cache_dir: Option<PathBuf>,
    limits: Limits,
}

/// What a component exports, as `larder policy check` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Names of the component's exports (`larder:policy/eviction@0.1.0`, ...).
    pub exports: Vec<String>,
    /// Names of its imports (must be empty: policies import nothing).
    pub imports: Vec<String>,
}

/// A loaded component: compiled, named, with its wasm hash.
struct Loaded {
    name: String,
    hash: blake3::Hash,
    component: Component,
}

impl PolicyHost {
    /// A host with default [`Limits`] and no compiled-component cache.
    pub fn new() -> Self {
        PolicyHost::default()
    }

    /// Keep compiled components in `dir` (created on demand), so start-up does not
    /// recompile. Use a directory only larder writes to, such as one inside the cache root.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Bound every guest call by these limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits guests run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn load(&self, path: &Path) -> Result<Loaded> {
        let wasm = std::fs::read(path).map_err(|source| PolicyError::Io {
            context: "reading policy",
            path: path.to_owned(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.load_bytes(name, &wasm)
    }

    fn load_bytes(&self, name: String, wasm: &[u8]) -> Result<Loaded> {
        let hash = blake3::hash(wasm);
        let component = compile(engine()?, &name, wasm, &hash, self.cache_dir.as_deref())?;
        Ok(Loaded {
            name,
            hash,
            component,
        })
    }

    /// Load an eviction policy (world `larder:policy/eviction-policy`), instantiate it and run
    /// its `init` with `config`.
    ///
    /// # Errors
    /// The file cannot be read, is not a valid component, does not export the eviction
    /// interface (or imports anything), or its `init` fails.
    pub fn eviction(&self, path: &Path, config: &str) -> Result<WasmEviction> {
        let l = self.load(path)?;
        let pre = Linker::<Sandbox>::new(engine()?)
            .instantiate_pre(&l.component)
            .and_then(bindings::eviction::EvictionPolicyPre::new)
            .map_err(|e| wrong_shape(&l.name, "an eviction policy", e))?;
        WasmEviction::new(l.name, pre, config.to_owned(), self.limits)
    }

    /// Load an admission policy (world `larder:policy/admission-policy`).
    ///
    /// # Errors
    /// As [`PolicyHost::eviction`].
    pub fn admission(&self, path: &Path, config: &str) -> Result<WasmAdmission> {
        let l = self.load(path)?;
        let pre = Linker::<Sandbox>::new(engine()?)
            .instantiate_pre(&l.component)
            .and_then(bindings::admission::AdmissionPolicyPre::new)
            .map_err(|e| wrong_shape(&l.name, "an admission policy", e))?;
        WasmAdmission::new(l.name, pre, config.to_owned(), self.limits)
    }

    /// Load a path normalizer (world `larder:policy/path-normalizer`) for this machine.
    ///
    /// # Errors
    /// As [`PolicyHost::eviction`].
    pub fn normalizer(
        &self,
        path: &Path,
        config: &str,
        ctx: NormalizeContext,
    ) -> Result<WasmNormalizer> {
        let l = self.load(path)?;
        let pre = Linker::<Sandbox>::new(engine()?)
            .instantiate_pre(&l.component)
            .and_then(bindings::normalize::PathNormalizerPre::new)
            .map_err(|e| wrong_shape(&l.name, "a path normalizer", e))?;
        WasmNormalizer::new(l.name, l.hash, pre, config.to_owned(), ctx, self.limits)
    }

    /// Compile a component and list its imports and exports, without running it.
    ///
    /// # Errors
    /// The file cannot be read or is not a valid component.
    pub fn inspect(&self, path: &Path) -> Result<ComponentInfo> {
        let l = self.load(path)?;
        let engine = engine()?;
        let ty = l.component.component_type();
        Ok(ComponentInfo {
            exports: ty.exports(engine).map(|(n, _)| n.to_owned()).collect(),
            imports: ty.imports(engine).map(|(n, _)| n.to_owned()).collect(),
        })
    }
}

fn wrong_shape(policy: &str, expected: &'static str, e: wasmtime::Error) -> PolicyError {
    PolicyError::WrongShape {
        policy: policy.to_owned(),
        expected,
        message: crate::engine::one_line(&format!("{e:#}")),
    }
}
