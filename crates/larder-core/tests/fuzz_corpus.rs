//! The `entry_decode` fuzz target's corpus (`fuzz/corpus/entry_decode`), replayed on the stable
//! toolchain: every input decodes or fails cleanly, and what decodes encodes back to an entry
//! that decodes the same (the target's own check).

use std::path::Path;

use larder_core::Entry;

#[test]
fn entry_decode_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/entry_decode");
    let mut n = 0;
    for item in std::fs::read_dir(&dir).expect("the committed corpus") {
        let path = item.expect("a corpus file").path();
        let data = std::fs::read(&path).expect("reading a corpus file");
        if let Ok(entry) = Entry::decode(&data) {
            let again = entry.encode().expect("a decoded entry encodes");
            assert_eq!(
                Entry::decode(&again).expect("and decodes again"),
                entry,
                "{}",
                path.display()
            );
        }
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
