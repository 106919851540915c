//! Eight `larder exec` processes racing on one key in one cache directory: every one succeeds
//! with correct outputs, and the cache ends up with exactly one entry that later runs hit.

mod common;

use std::process::Stdio;

use common::{Sandbox, assert_exit, count_lines, text};

#[test]
fn eight_racing_processes_leave_one_entry() {
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    // Output large enough to be a blob, plus a small inlined one.
    let script = format!(
        "echo run >> '{}'; mkdir -p gen; seq 1 40000 > gen/numbers.txt; echo same > gen/small.txt; sleep 0.2",
        counter.display()
    );
    let args = ["exec", "--out", "gen", "--", "sh", "-c", script.as_str()];
    let dirs: Vec<_> = (0..8)
        .map(|i| sb.root.join(format!("checkout{i}")))
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d).expect("creating checkout");
            sb.larder_in(d)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawning larder")
        })
        .collect();
    let expected: String = (1..=40000).map(|i| format!("{i}\n")).collect();
    for (child, dir) in children.into_iter().zip(&dirs) {
        let out = child.wait_with_output().expect("waiting for larder");
        assert_exit(&out, 0);
        assert!(
            !text(&out.stderr).contains("warning"),
            "a racing run warned: {}",
            text(&out.stderr)
        );
        let numbers = std::fs::read_to_string(dir.join("gen/numbers.txt")).expect("numbers");
        assert!(numbers == expected, "wrong output in {}", dir.display());
        assert_eq!(
            std::fs::read(dir.join("gen/small.txt")).expect("small"),
            b"same\n"
        );
    }
    let ran = count_lines(&counter);
    assert!((1..=8).contains(&ran), "ran {ran} times");

    // A further run is a hit.
    let late = sb.root.join("late");
    std::fs::create_dir_all(&late).expect("creating checkout");
    let out = sb.run_in(&late, ["-v"].into_iter().chain(args));
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("larder: hit "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(count_lines(&counter), ran);
    assert_eq!(
        std::fs::read_to_string(late.join("gen/numbers.txt")).expect("numbers"),
        expected
    );

    let stats = sb.stats();
    assert_eq!(stats["entries"], 1, "{stats}");
}
