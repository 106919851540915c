//! Size-cap admission: refuse outputs larger than `max-bytes` (default 64 MiB) and tasks
//! cheaper to redo than to fetch, `cost-ms` under `min-cost-ms` (default 0: admit all).

wit_bindgen::generate!({ path: "../wit", world: "admission-policy" });

use std::sync::atomic::{AtomicU64, Ordering};

use exports::larder::policy::admission::{EntryMeta, Guest};
use guest_util::{number, settings};

static MAX_BYTES: AtomicU64 = AtomicU64::new(64 << 20);
static MIN_COST_MS: AtomicU64 = AtomicU64::new(0);

struct SizeCap;

impl Guest for SizeCap {
    fn init(config: String) -> Result<String, String> {
        for (k, v) in settings(&config) {
            match k {
                "max-bytes" => MAX_BYTES.store(number(k, v)?, Ordering::Relaxed),
                "min-cost-ms" => MIN_COST_MS.store(number(k, v)?, Ordering::Relaxed),
                _ => {
                    return Err(format!(
                        "size-cap: unknown setting {k:?} (known: max-bytes, min-cost-ms)"
                    ));
                }
            }
        }
        Ok("size-cap".into())
    }

    fn admit(candidate: EntryMeta, _now_ms: u64) -> bool {
        candidate.size <= MAX_BYTES.load(Ordering::Relaxed)
            && candidate.cost_ms >= MIN_COST_MS.load(Ordering::Relaxed)
    }
}

export!(SizeCap);
