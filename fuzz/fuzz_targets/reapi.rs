//! What a gRPC client controls completely in larder-reapi: ByteStream resource names and the
//! action results UpdateActionResult takes (`larder_reapi::fuzz`). The first byte picks: `N` a
//! resource name (the rest as UTF-8), `R` an ActionResult message, anything else both.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (kind, rest) = match data.split_first() {
        Some((k, rest)) => (*k, rest),
        None => return,
    };
    if kind != b'R'
        && let Ok(name) = std::str::from_utf8(rest)
    {
        larder_reapi::fuzz::check_resource_name(name);
    }
    if kind != b'N' {
        larder_reapi::fuzz::check_action_result(rest);
    }
});
