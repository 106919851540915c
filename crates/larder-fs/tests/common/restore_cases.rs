//! Restore scenarios for many small outputs, run by `restore.rs` (unnamed files where the
//! system allows) and `restore_named.rs` (unnamed files off: named temporary files only).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use larder_core::artifacts::{Restore, RestoreOptions, restore_outputs};
use larder_core::{Content, Digest, Entry, Output, OutputKind};
use larder_fs::FsConfig;

/// More outputs than a restore keeps as unnamed files (64), so both ways are taken.
const OUTPUTS: usize = 70;

fn small(path: &str, bytes: &[u8], executable: bool) -> Output {
    Output {
        path: path.into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable,
        },
    }
}

fn entry_of(outputs: Vec<Output>) -> Entry {
    let mut e = Entry::new(key("restore").as_str(), "test");
    e.outputs = outputs;
    e
}

/// Every file name under `dir`, recursively.
fn names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        out.push(p.strip_prefix(dir).unwrap().display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(
                names(&p)
                    .into_iter()
                    .map(|n| format!("{}/{n}", e.file_name().display())),
            );
        }
    }
    out.sort();
    out
}

/// Many small outputs over an old file, a read-only file and a directory, some executable,
/// some in missing directories: all land whole, none leaves a temporary file.
pub async fn small_outputs_land_whole_over_what_was_there() {
    let (dir, store) = temp_store(FsConfig::default());
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("d")).unwrap();
    // What the restore must replace: an old file, a read-only old file, and a directory where
    // a file output goes now.
    std::fs::write(work.join("d/f0"), b"old").unwrap();
    std::fs::write(work.join("d/f1"), b"old read-only").unwrap();
    std::fs::set_permissions(work.join("d/f1"), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::create_dir_all(work.join("d/f2/inner")).unwrap();

    let outputs: Vec<Output> = (0..OUTPUTS)
        .map(|i| {
            // Every tenth in a directory that does not exist yet, every seventh executable.
            let path = if i % 10 == 9 {
                format!("new/sub{i}/f{i}")
            } else {
                format!("d/f{i}")
            };
            small(&path, format!("bytes of {i}").as_bytes(), i % 7 == 0)
        })
        .collect();
    let e = entry_of(outputs.clone());
    let got = restore_outputs(&store, &e, &work, &RestoreOptions::whole_entry())
        .await
        .unwrap();
    assert_eq!(got, Restore::Restored);
    for (i, o) in outputs.iter().enumerate() {
        let p = work.join(&o.path);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            format!("bytes of {i}").as_bytes(),
            "{}",
            o.path
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o100 != 0,
            i % 7 == 0,
            "executable bit of {}: {mode:o}",
            o.path
        );
    }
    let left: Vec<String> = names(&work)
        .into_iter()
        .filter(|n| n.contains(".larder-"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");

    // Restoring the same entry again replaces every file (unnamed and named ways both meet an
    // existing destination).
    std::fs::write(work.join("d/f3"), b"changed by hand").unwrap();
    restore_outputs(&store, &e, &work, &RestoreOptions::whole_entry())
        .await
        .unwrap();
    assert_eq!(std::fs::read(work.join("d/f3")).unwrap(), b"bytes of 3");
}

/// An entry whose last blob is missing restores nothing.
pub async fn a_miss_writes_no_small_output() {
    let (dir, store) = temp_store(FsConfig::default());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut outputs: Vec<Output> = (0..OUTPUTS)
        .map(|i| small(&format!("f{i}"), b"small", false))
        .collect();
    // The last output's blob is not in the store.
    outputs.push(Output {
        path: "big".into(),
        kind: OutputKind::File {
            content: Content::blob(Digest::of(b"never stored"), 12),
            executable: false,
        },
    });
    let got = restore_outputs(
        &store,
        &entry_of(outputs),
        &work,
        &RestoreOptions::whole_entry(),
    )
    .await
    .unwrap();
    assert_eq!(got, Restore::Missing);
    assert_eq!(
        names(&work),
        Vec::<String>::new(),
        "a miss changed the work tree"
    );
}
