//! Tidy checks that run with the test suite: every Rust file starts with a `//!` module doc, and
//! library code has no `dbg!` or `todo!` left in it.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if p.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    rust_files(&p, out);
                }
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }

    fn all_files() -> Vec<PathBuf> {
        let root = crate::project_root();
        let mut files = Vec::new();
        for d in ["crates", "benches", "xtask", "tests", "policies"] {
            rust_files(&root.join(d), &mut files);
        }
        files
    }

    #[test]
    fn every_file_has_a_module_doc() {
        let missing: Vec<String> = all_files()
            .into_iter()
            .filter(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                !first.starts_with("//!")
            })
            .map(|p| p.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "files without a `//!` module doc:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn no_debugging_leftovers() {
        let bad: Vec<String> = all_files()
            .into_iter()
            .filter(|p| !p.ends_with("tidy.rs"))
            .filter(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                text.contains("dbg!(")
                    || text.contains("todo!(")
                    || text.contains("unimplemented!(")
            })
            .map(|p| p.display().to_string())
            .collect();
        assert!(
            bad.is_empty(),
            "dbg!/todo!/unimplemented! left in:\n{}",
            bad.join("\n")
        );
    }
}
