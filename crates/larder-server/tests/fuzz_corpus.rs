//! The `request_path` fuzz target's corpus (`fuzz/corpus/request_path`), replayed on the
//! stable toolchain through the same check the target runs.

use std::path::Path;

#[test]
fn request_path_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/request_path");
    let mut n = 0;
    for item in std::fs::read_dir(&dir).expect("the committed corpus") {
        let data = std::fs::read(item.expect("a corpus file").path()).expect("a corpus file");
        if let Ok(path) = std::str::from_utf8(&data) {
            larder_server::fuzz::check_request_path(path);
        }
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
