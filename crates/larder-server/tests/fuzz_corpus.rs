//! The corpora of the `request_path` and `multipart` fuzz targets (`fuzz/corpus/TARGET`),
//! replayed on the stable toolchain through the same checks the targets run.

use std::path::{Path, PathBuf};

/// Every file of `target`'s committed corpus.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the committed corpus")
        .map(|item| std::fs::read(item.expect("a corpus file").path()).expect("a corpus file"))
        .collect();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs
}

#[test]
fn request_path_corpus() {
    for data in corpus("request_path") {
        if let Ok(path) = std::str::from_utf8(&data) {
            larder_server::fuzz::check_request_path(path);
        }
    }
}

#[test]
fn multipart_corpus() {
    // As the target splits its input: a content type line, then the body.
    for data in corpus("multipart") {
        let Some(nl) = data.iter().position(|&b| b == b'\n') else {
            continue;
        };
        let Ok(content_type) = std::str::from_utf8(&data[..nl]) else {
            continue;
        };
        let cut = data.first().map_or(0, |&b| usize::from(b));
        larder_server::fuzz::check_multipart(content_type, &data[nl + 1..], cut);
    }
}
