//! Confined restores end to end (DESIGN §8b): someone with push rights on a `larder serve`
//! rewrites the entry of a task (through the native protocol, with `larder put` under the
//! task's key) so that it holds more than the task declared. The next `larder exec` of that
//! task must not restore it: a miss, the command runs, nothing outside its output is touched.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::served::Served;
use common::{Sandbox, assert_exit, text};

/// The keys of the entries a server directory holds (`entries/xx/<64 hex>`).
fn entry_keys(server_dir: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    let Ok(shards) = std::fs::read_dir(server_dir.join("entries")) else {
        return keys;
    };
    for shard in shards.flatten() {
        for e in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                keys.push(name);
            }
        }
    }
    keys
}

/// Everything below `dir`, as sorted relative paths (symlinks not followed).
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `larder exec --in in.txt --out out1 -- sh -c '...'` in `dir` against `store`; the command
/// logs each real run to `runs`.
fn exec(sb: &Sandbox, dir: &Path, store: &str, runs: &Path) -> std::process::Output {
    let script = format!("echo run >> {}; tr a-z A-Z < in.txt > out1", runs.display());
    sb.larder_in(dir)
        .args([
            "--store", store, "-v", "exec", "--in", "in.txt", "--out", "out1",
        ])
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("running larder exec")
}

/// Rewrite the entry under `key` on the server with what `larder put` collects from `attacker`.
fn push_as_attacker(sb: &Sandbox, attacker: &Path, store: &str, key: &str, files: &[&str]) {
    let out = sb
        .larder_in(attacker)
        .args(["--store", store, "put", key])
        .args(files)
        .output()
        .expect("running larder put");
    assert_exit(&out, 0);
}

fn runs(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[test]
fn a_rewritten_entry_with_extra_outputs_is_a_miss_and_touches_nothing() {
    let sb = Sandbox::new();
    let server_dir = sb.root.join("server-cache");
    let served = Served::start(&sb, &server_dir, &[]);
    let log = sb.root.join("runs.log");
    let outside: PathBuf = sb.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    // The victim's checkout: a source tree, git hooks, the task's input.
    let work = &sb.work;
    sb.write(work, "in.txt", "the input\n");
    sb.write(work, "src/main.c", "int main(void) { return 0; }\n");
    std::fs::create_dir_all(work.join(".git/hooks")).unwrap();

    // The honest run stores the entry; its key is the task's signature.
    assert_exit(&exec(&sb, work, &served.url, &log), 0);
    assert_eq!(runs(&log), 1);
    let keys = entry_keys(&server_dir);
    assert_eq!(keys.len(), 1, "one entry on the server: {keys:?}");
    let key = &keys[0];
    let hit = exec(&sb, work, &served.url, &log);
    assert_exit(&hit, 0);
    assert_eq!(runs(&log), 1, "the honest entry is a hit");

    // The attacker rewrites it: the declared output plus a symlink out of the tree, a file
    // where the directory `src/` is, and an executable git hook.
    let attacker = sb.root.join("attacker");
    sb.write(&attacker, "out1", "THE INPUT\n");
    symlink(&outside, attacker.join("lnk")).unwrap();
    sb.write(&attacker, "src", "not a directory any more\n");
    let hook = sb.write(
        &attacker,
        ".git/hooks/pre-commit",
        "#!/bin/sh\necho pwned\n",
    );
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    push_as_attacker(
        &sb,
        &attacker,
        &served.url,
        key,
        &["out1", "lnk", "src", ".git"],
    );

    let before: Vec<String> = listing(work).into_iter().filter(|p| p != "out1").collect();
    let out = exec(&sb, work, &served.url, &log);
    assert_exit(&out, 0);
    let err = text(&out.stderr);
    assert_eq!(
        runs(&log),
        2,
        "the poisoned entry is a miss and the command runs:\n{err}"
    );
    assert!(err.contains("miss"), "reported as a miss:\n{err}");
    assert!(
        err.contains("poisoned") && err.contains(key.as_str()),
        "one warning naming the key and the output:\n{err}"
    );
    assert!(
        fs_is_symlink_free(work),
        "no symlink planted: {:?}",
        listing(work)
    );
    assert!(work.join("src").is_dir() && work.join("src/main.c").is_file());
    assert!(!work.join(".git/hooks/pre-commit").exists());
    assert!(listing(&outside).is_empty());
    let after: Vec<String> = listing(work).into_iter().filter(|p| p != "out1").collect();
    assert_eq!(after, before, "nothing but out1 changed");
    assert_eq!(
        std::fs::read_to_string(work.join("out1")).unwrap(),
        "THE INPUT\n"
    );

    // The run re-stored the honest entry: the next run is a hit again.
    let hit = exec(&sb, work, &served.url, &log);
    assert_exit(&hit, 0);
    assert_eq!(runs(&log), 2, "{}", text(&hit.stderr));

    // Second stage of the attack: a symlink to outside is already in the checkout (planted
    // before this fix), and the entry holds `lnk/pwned` to write through it.
    symlink(&outside, work.join("lnk")).unwrap();
    let attacker2 = sb.root.join("attacker2");
    sb.write(&attacker2, "out1", "THE INPUT\n");
    sb.write(&attacker2, "lnk/pwned", "pwned\n");
    push_as_attacker(&sb, &attacker2, &served.url, key, &["out1", "lnk/pwned"]);
    let out = exec(&sb, work, &served.url, &log);
    assert_exit(&out, 0);
    assert_eq!(runs(&log), 3, "a miss again:\n{}", text(&out.stderr));
    assert!(
        listing(&outside).is_empty(),
        "wrote through the planted symlink"
    );
}

/// Whether no symlink lies anywhere below `dir`.
fn fs_is_symlink_free(dir: &Path) -> bool {
    listing(dir)
        .iter()
        .all(|p| !std::fs::symlink_metadata(dir.join(p)).is_ok_and(|m| m.file_type().is_symlink()))
}

/// `larder get KEY` without files restores what the entry holds, but still never through a
/// symlink and never a symlink leaving the tree.
#[test]
fn get_of_a_whole_entry_stays_beneath_the_working_directory() {
    let sb = Sandbox::new();
    let outside: PathBuf = sb.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let src = sb.root.join("src-tree");
    symlink(&outside, {
        std::fs::create_dir_all(&src).unwrap();
        src.join("lnk")
    })
    .unwrap();
    sb.write(&src, "ok.txt", "ok\n");
    let put = sb
        .larder_in(&src)
        .args(["put", "links/1", "ok.txt", "lnk"])
        .output()
        .unwrap();
    assert_exit(&put, 0);
    let get = sb.larder().args(["get", "links/1"]).output().unwrap();
    assert_exit(&get, 1);
    assert!(
        text(&get.stderr).contains("poisoned"),
        "{}",
        text(&get.stderr)
    );
    assert!(std::fs::symlink_metadata(sb.work.join("lnk")).is_err());
    assert!(!sb.work.join("ok.txt").exists(), "all or nothing");
    // Allowed by configuration, the same entry is restored (it was removed: put it again).
    assert_exit(
        &sb.larder_in(&src)
            .args(["put", "links/1", "ok.txt", "lnk"])
            .output()
            .unwrap(),
        0,
    );
    let get = sb
        .larder()
        .env("LARDER_ALLOW_EXTERNAL_SYMLINKS", "1")
        .args(["get", "links/1"])
        .output()
        .unwrap();
    assert_exit(&get, 0);
    assert_eq!(std::fs::read_link(sb.work.join("lnk")).unwrap(), outside);

    // A symlink standing in the working directory is not followed by a whole-entry get.
    let sb2 = Sandbox::new();
    let outside2 = sb2.root.join("outside");
    std::fs::create_dir_all(&outside2).unwrap();
    let src2 = sb2.root.join("src-tree");
    sb2.write(&src2, "dir/pwned", "pwned\n");
    assert_exit(
        &sb2.larder_in(&src2)
            .args(["put", "through", "dir/pwned"])
            .output()
            .unwrap(),
        0,
    );
    symlink(&outside2, sb2.work.join("dir")).unwrap();
    let get = sb2
        .larder()
        .args(["get", "through"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(common::code(&get), 0, "{}", text(&get.stderr));
    assert!(listing(&outside2).is_empty());
}

/// `larder exec` does not store a run whose symlink output leaves the working directory (a
/// hit would refuse it), unless `allow_external_symlinks` is set, and then restores it.
#[test]
fn exec_stores_an_external_symlink_only_when_allowed() {
    let sb = Sandbox::new();
    let log = sb.root.join("runs.log");
    let script = format!("echo run >> {}; ln -sfn /usr lnk", log.display());
    let run = |allow: bool| {
        let mut cmd = sb.larder();
        if allow {
            cmd.env("LARDER_ALLOW_EXTERNAL_SYMLINKS", "1");
        }
        let out = cmd
            .args(["-v", "exec", "--out", "lnk", "--", "sh", "-c", &script])
            .output()
            .expect("running larder exec");
        assert_exit(&out, 0);
        let _ = std::fs::remove_file(sb.work.join("lnk"));
        text(&out.stderr)
    };
    let first = run(false);
    assert!(first.contains("not stored"), "{first}");
    run(false);
    assert_eq!(runs(&log), 2, "never stored, so never a hit");
    run(true);
    assert_eq!(runs(&log), 3);
    let hit = run(true);
    assert_eq!(runs(&log), 3, "stored when allowed, then a hit:\n{hit}");
}
