//! The one wasmtime [`Engine`] every policy shares, its epoch ticker, and the on-disk cache of
//! compiled components.
//!
//! CPU time is bounded with epoch interruption rather than fuel: a ticker thread advances the
//! engine's epoch every [`TICK`], and each call gets a deadline a number of ticks away. Epoch
//! checks cost a load and a compare at loop heads and function entries, where fuel would count
//! every instruction (select-victims over a million entries has to stay near native speed).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

use crate::error::{PolicyError, Result};

/// How often the epoch advances: the granularity of call time budgets.
pub const TICK: Duration = Duration::from_millis(5);

/// Magic at the start of every compiled component larder writes.
const MAGIC: &[u8; 16] = b"larder-cwasm-v1\n";

/// The shared engine, created (with its ticker thread) on first use.
///
/// # Errors
/// Only if wasmtime rejects the configuration (it should not on a supported host).
pub(crate) fn engine() -> Result<&'static Engine> {
    static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();
    let e = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("larder-policy-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
        Ok(engine)
    });
    e.as_ref().map_err(|message| PolicyError::Compile {
        policy: "(engine)".into(),
        message: message.clone(),
    })
}

/// Ticks to allow for a call budget (rounded up, at least one full tick).
pub(crate) fn ticks(budget: Duration) -> u64 {
    (budget.as_nanos() / TICK.as_nanos()) as u64 + 2
}

/// The first line of an error message, at most 300 characters (wasmtime's messages can embed
/// multi-line byte dumps).
pub(crate) fn one_line(message: &str) -> String {
    let line = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches([' ', '[', '=']);
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_owned(),
    }
}

/// Feeds `Hash` output into BLAKE3, for a stable digest of the engine's compatibility hash.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let h = self.0.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        u64::from_le_bytes(b)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache file for this wasm on this engine: keyed by the wasm's BLAKE3 and the engine's
/// compatibility hash (wasmtime version, target, settings), so a changed engine never reads
/// a stale artifact.
fn cache_path(engine: &Engine, dir: &Path, wasm_hash: &blake3::Hash) -> PathBuf {
    let mut h = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    let compat = h.0.finalize();
    dir.join(format!(
        "{}-{}.cwasm",
        &wasm_hash.to_hex()[..32],
        &compat.to_hex()[..16]
    ))
}

/// Compile `wasm` (whose BLAKE3 is `wasm_hash`) into a component, through the cache in
/// `cache_dir` when given.
///
/// Only files larder wrote are deserialized: each starts with a magic string and the BLAKE3 of
/// the serialized artifact, checked before wasmtime sees a byte, and they live in larder's own
/// directory. A missing, damaged or foreign file is recompiled and replaced.
pub(crate) fn compile(
    engine: &Engine,
    policy: &str,
    wasm: &[u8],
    wasm_hash: &blake3::Hash,
    cache_dir: Option<&Path>,
) -> Result<Component> {
    let path = cache_dir.map(|d| cache_path(engine, d, wasm_hash));
    if let Some(c) = path.as_deref().and_then(|p| read_cached(engine, p)) {
        return Ok(c);
    }
    let component = Component::new(engine, wasm).map_err(|e| PolicyError::Compile {
        policy: policy.to_owned(),
        message: one_line(&format!("{e:#}")),
    })?;
    if let Some(path) = &path {
        // A cache we cannot write is only slower next time.
        if let Err(e) = write_cached(&component, path) {
            tracing::debug!("not caching the compiled policy {policy}: {e}");
        }
    }
    Ok(component)
}

fn read_cached(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (sum, payload) = rest.split_at_checked(32)?;
    if blake3::hash(payload).as_bytes() != sum {
        tracing::debug!("compiled policy {} is damaged; recompiling", path.display());
        return None;
    }
    // SAFETY: `payload` is a component this engine configuration serialized (the file name
    // carries the engine's compatibility hash) and larder wrote, checked against the BLAKE3
    // stored with it; wasmtime additionally checks its own header and version.
    unsafe { Component::deserialize(engine, payload) }.ok()
}

fn write_cached(component: &Component, path: &Path) -> std::result::Result<(), String> {
    let payload = component.serialize().map_err(|e| format!("{e:#}"))?;
    let dir = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 32 + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
    bytes.extend_from_slice(&payload);
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}
