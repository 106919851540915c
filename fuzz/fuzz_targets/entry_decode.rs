//! Entry decoding (`larder_core::Entry::decode`): any bytes from a store or the network decode
//! or fail cleanly, and what decodes encodes back to an entry that decodes the same.

#![no_main]

use larder_core::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = Entry::decode(data) {
        let again = entry.encode().expect("a decoded entry encodes");
        assert_eq!(Entry::decode(&again).expect("and decodes again"), entry);
    }
});
