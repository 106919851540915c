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
        /// Every store on one workload (small, large and mixed entries; put, cold and warm
        /// get, find-missing; concurrency 1 and 32), each figure beside a baseline measured in
        /// the same run (cp, nginx, the bare command, plain aws-sdk-s3). Prints a table and
        /// writes JSON, Markdown and an SVG chart.
        cmd bench {
            /// Smaller workloads in the test build (under 3 minutes): a smoke test that fails
            /// only when a store errors, never on speed.
            optional --quick
            /// Stores to measure, comma-separated: fs,http,cmd,s3 (default: all).
            optional --stores stores: String
            /// Where the JSON, Markdown and SVG go (default: target/bench; for --all, --areas and
            /// --render benches/results, or target/bench-quick with --quick).
            optional --out out: String
            /// Also run the foundation benchmarks (signatures, fs put/get vs cp, trim).
            optional --foundation
            /// Instead: real builds (Lua, zstd, redis from Debian source packages) by every
            /// client larder serves, plain, cold and warm through larder and through each
            /// client's alternative (benches/builds.py; with --quick: Lua only, one run each).
            optional --builds
            /// Instead: `larder serve`'s Remote Execution API (ByteStream 100 MiB, FindMissingBlobs
            /// of 10,000 digests, Bazel 4.2 warm from an empty output base) against its own HTTP
            /// cache and BuildGrid 0.4.4 (benches/reapi.py; --quick: a smoke-sized run).
            optional --reapi
            /// Instead: every benchmark area in sequence (release builds once), each writing
            /// `<out>/<area>.result.json`, then BENCHMARKS.md and its charts (docs/bench/) from
            /// those results. About 40 minutes; with --quick a smoke run into target/bench-quick.
            /// Leaves out `builds-large` (zstd and redis, as long again): run it with --areas.
            optional --all
            /// Instead: only these areas (comma-separated; `--areas list` names them), then the
            /// page, with the other areas' last results kept.
            optional --areas areas: String
            /// Instead: only write the page from the results in --out (no benchmark runs).
            optional --render
            /// Where --all/--areas/--render write the page (default: BENCHMARKS.md; with --quick
            /// target/bench-quick/BENCHMARKS.md); its charts go to docs/bench/ beside it.
            optional --md md: String
        }
        /// Build the WebAssembly guest policies in `policies/` (wasm32-unknown-unknown
        /// components, into `target/policies/<name>.wasm`).
        cmd policies {}
        /// Run every cargo-fuzz target in fuzz/ (nightly and cargo-fuzz; installed under CI),
        /// new inputs kept out of the committed corpora.
        cmd fuzz {
            /// 10 s per target; without a nightly toolchain, say so and succeed.
            optional --short
            /// Seconds per target (default 120; 10 with --short).
            optional --seconds seconds: u64
        }
    }
}
