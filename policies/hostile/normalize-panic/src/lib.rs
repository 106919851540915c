//! Hostile test guest: a path normalizer whose `normalize-paths` panics and whose
//! `normalize-values` answers one result too many. larder-policy's tests check that
//! normalization then fails closed (an error, never a guessed value).

wit_bindgen::generate!({ path: "../../wit", world: "path-normalizer" });

use exports::larder::policy::normalize::{Context, Guest};

struct Hostile;

impl Guest for Hostile {
    fn init(_config: String, _ctx: Context) -> Result<String, String> {
        Ok("hostile-normalize-panic".into())
    }

    fn normalize_paths(paths: Vec<String>) -> Vec<Option<String>> {
        panic!(
            "hostile normalizer panics on purpose ({} paths)",
            paths.len()
        )
    }

    fn normalize_values(items: Vec<(String, String)>) -> Vec<Option<String>> {
        let mut out: Vec<Option<String>> = items.into_iter().map(|(_, v)| Some(v)).collect();
        out.push(Some("extra".into()));
        out
    }
}

export!(Hostile);
