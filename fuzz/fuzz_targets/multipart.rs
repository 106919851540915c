//! The multipart guard in front of the waf handler's form parser (`multipart::boundary` and
//! `multipart::guard`): no panic, and the same verdict however the body is cut
//! (`larder_server::fuzz::check_multipart`). The input is a content type line, a newline, then
//! the body; its first byte also picks where the body is cut in two.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(content_type) = std::str::from_utf8(&data[..nl]) else {
        return;
    };
    let cut = data.first().map_or(0, |&b| usize::from(b));
    larder_server::fuzz::check_multipart(content_type, &data[nl + 1..], cut);
});
