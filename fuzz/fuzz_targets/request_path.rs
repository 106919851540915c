//! Every protocol's request-path parsing (ccache, Bazel, WebDAV, waf, native keys): keys made
//! from any path stay in their protocol's namespace and are valid keys
//! (`larder_server::fuzz::check_request_path`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        larder_server::fuzz::check_request_path(path);
    }
});
