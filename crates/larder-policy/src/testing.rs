//! For tests and benches (here and in larder-cli): where `cargo xtask policies` leaves the built
//! components, and the one rule for when one is missing. Not part of the policy host's API.

use std::path::PathBuf;

/// `target/policies/`, where `cargo xtask policies` copies the components (honours
/// `CARGO_TARGET_DIR`, taken relative to the workspace root).
pub fn policies_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |t| root.join(t))
        .join("policies")
}

/// The built component `name` (`lru`, `hostile-loop`, ...), or `None`, after saying why, when it
/// was not built: the caller skips. Under CI (`CI` set) a missing component is a failure.
///
/// # Panics
/// When the component is missing and `CI` is set.
pub fn built_policy(name: &str) -> Option<PathBuf> {
    let p = policies_dir().join(format!("{name}.wasm"));
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI must run `cargo xtask policies` before the tests",
        p.display()
    );
    eprintln!(
        "skipping: {} not built (run `cargo xtask policies`)",
        p.display()
    );
    None
}
