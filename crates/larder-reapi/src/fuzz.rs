//! Entry points for the fuzz target `reapi` (`fuzz/`) and for the test that replays its corpus:
//! what a hostile gRPC client controls completely, ByteStream resource names and action results,
//! with the invariants what is made from them must keep. Not part of the crate's API.

use prost::Message;

use crate::bytestream::{Resource, parse_read, parse_write};
use crate::digest::{DigestFn, valid_hash};
use crate::layout::{ac_key, cas_key};
use crate::proto::build::bazel::remote::execution::v2::ActionResult;

/// Parse `name` as a ByteStream read and as a write resource name, and panic if a name that
/// parses gives a digest that is not well formed or keys that are not valid.
pub fn check_resource_name(name: &str) {
    for resource in [parse_read(name), parse_write(name)].into_iter().flatten() {
        check_resource(name, &resource);
    }
}

fn check_resource(name: &str, r: &Resource) {
    assert!(valid_hash(&r.id.hash), "{name:?}: hash {:?}", r.id.hash);
    let cas = cas_key(r.id.func, &r.id.hash);
    assert!(cas.is_ok(), "{name:?}: CAS key {cas:?}");
    let ac = ac_key(r.id.func, &r.instance, &r.id.hash);
    assert!(ac.is_ok(), "{name:?}: instance {:?}: {ac:?}", r.instance);
    let key = ac.map(|k| k.as_str().to_owned()).unwrap_or_default();
    assert!(
        !key.split('/').any(|s| s == ".." || s == "."),
        "{name:?} made {key:?}"
    );
}

/// Decode `data` as an ActionResult (as UpdateActionResult receives one) and run the checks
/// UpdateActionResult makes, for both digest functions: no panic, whatever the message holds.
pub fn check_action_result(data: &[u8]) {
    if let Ok(result) = ActionResult::decode(data) {
        for func in [DigestFn::Sha256, DigestFn::Blake3] {
            let _ = crate::ac::validate(&result, func);
        }
    }
}
