//! The wafcache worker's request reader: base64, then the pickle subset
//! (`crates/larder-cli/src/cmd/worker/pickle.rs`, compiled in here: the worker lives in the
//! `larder` binary). Fed both as a raw pickle and as a request line.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/larder-cli/src/cmd/worker/pickle.rs"]
mod pickle;

fuzz_target!(|data: &[u8]| {
    let _ = pickle::decode(data);
    if let Ok(bytes) = pickle::b64decode(data) {
        let _ = pickle::decode(&bytes);
        // Not always `data` again: like Python's, the decoder ignores the unused low bits of
        // the last character. What it decoded encodes and decodes to itself.
        let text = pickle::b64encode(&bytes);
        assert_eq!(pickle::b64decode(text.as_bytes()).ok(), Some(bytes));
    }
});
