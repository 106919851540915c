//! Hostile test guest: an admission policy whose `admit` never returns. larder-policy's tests
//! check that the call is stopped and the entry admitted.

wit_bindgen::generate!({ path: "../../wit", world: "admission-policy" });

use exports::larder::policy::admission::{EntryMeta, Guest};

struct Hostile;

impl Guest for Hostile {
    fn init(_config: String) -> Result<String, String> {
        Ok("hostile-admit-loop".into())
    }

    fn admit(candidate: EntryMeta, _now_ms: u64) -> bool {
        let mut x = candidate.size | 1;
        loop {
            // Opaque to the optimizer, so the loop is not removed.
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export!(Hostile);
