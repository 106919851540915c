//! Command-line flags of `cargo xtask`.

xflags::xflags! {
    /// Project chores. Run `cargo xtask <task> --help` for details.
    cmd xtask {
        /// Larder's main job on the embedded filesystem store: build a small C program twice
        /// through `larder exec` and show the miss, then the hit and the time saved.
        cmd demo {
            /// Keep the demo's cache from an earlier run (the first build is then a hit too).
            optional --keep-cache
        }
        /// The whole test suite, as CI runs it: install what the tests need (on a fresh Debian
        /// machine), check formatting and clippy, then `cargo test --workspace`.
        cmd test {
            /// Skip `cargo fmt --check` and clippy.
            optional --no-lint
        }
        /// The foundation benchmarks (signatures, fs put/get vs cp, trim); prints ratios
        /// against baselines measured in the same run.
        cmd bench {
            /// Smaller workloads, for a smoke test.
            optional --quick
        }
        /// Build the WebAssembly guest policies in `policies/` (wasm32-unknown-unknown
        /// components, into `target/policies/<name>.wasm`).
        cmd policies {}
    }
}
