//! The corpus of the `reapi` fuzz target (`fuzz/corpus/reapi`), replayed on the stable
//! toolchain through the same checks the target runs.

use std::path::Path;

#[test]
fn reapi_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/reapi");
    let mut n = 0;
    for item in std::fs::read_dir(&dir).expect("the committed corpus") {
        let data = std::fs::read(item.expect("a corpus file").path()).expect("a corpus file");
        let Some((kind, rest)) = data.split_first() else {
            continue;
        };
        if *kind != b'R'
            && let Ok(name) = std::str::from_utf8(rest)
        {
            larder_reapi::fuzz::check_resource_name(name);
        }
        if *kind != b'N' {
            larder_reapi::fuzz::check_action_result(rest);
        }
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
