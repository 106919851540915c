#!/usr/bin/env python3
"""No regression: this revision's hot paths against an older revision's, binaries alternating.

    python3 benches/ab.py [--old-rev 25f42fa] [--rounds 3] [--quick] [--out DIR]

Issue 13 (layers, bucket store, client library) reshaped the code every hit and put goes
through; its rule is that no hot path gets slower. This runs, in one session, the same two
benchmarks built from both revisions, alternating old, new, old, new, ... so that a change in
the machine's load falls on both alike:

1. the foundation bench (`cargo bench -p larder-benches --bench foundation`: signatures, puts
   and gets of small and large outputs through the fs store, trim), every row of its tables;
2. the wafcache worker (`larder worker --protocol wafcache`, the waf plugin's hot loop): puts
   and gets of 1 KiB files through one synchronous client, requests/s and CPU per request,
   measured by benches/worker_vs_wafcache.py's own loop.

The old revision is checked out into target/ab-old (a git worktree) and built there with its
own target directory (target/ab-target), once: later runs reuse it. The new side is this tree's
release build (target/release/larder and the foundation bench binary it builds).

Both sides work on a loop-mounted journaled ext4 (benchlib.JournaledScratch, as root): on the
journal-less root file system of these VMs, files created in the minutes after the bench's
clean-up deleted 100,000 others cost ~500 µs each, and which side ran in that window decided
the put and get rows (2-3× swings between identical binaries).

Each row: per round, the paired ratio of the two sides' figures (speed: > 1 is the new side
faster), which the machine's drift over the run affects least, since the two ran back to back;
the row's ratio is the median of those over the rounds, target ≥ 0.95× ("within 5% or
better"), and the range of the per-round ratios is printed beside it as the row's spread, so
a ratio just under the target can be told from a round that went wrong. Prints a table; with
--out, writes ab.result.json (BENCHMARKS.md), each row with its per-round figures.
"""
import argparse, glob, os, re, statistics, subprocess, sys, tempfile, hashlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import worker_vs_wafcache as wvw  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
TARGET_RATIO = 0.95
UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("+ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def newest(pattern):
    """The newest executable matching `pattern` (cargo keeps one per hash of the build)."""
    found = [p for p in glob.glob(pattern) if os.access(p, os.X_OK) and not p.endswith(".d")]
    if not found:
        sys.exit("ab: nothing built at %s" % pattern)
    return max(found, key=os.path.getmtime)


def build_old(rev):
    """Check out `rev` into target/ab-old and build its larder and foundation bench there."""
    tree = os.path.join(TARGET, "ab-old")
    target = os.path.join(TARGET, "ab-target")
    want = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    have = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True,
                          text=True).stdout.strip() if os.path.isdir(tree) else ""
    if have != want:
        if os.path.isdir(tree):
            run(["git", "worktree", "remove", "--force", tree], cwd=ROOT)
        run(["git", "worktree", "add", "--detach", "--force", tree, want], cwd=ROOT)
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    run(["cargo", "build", "--release", "-p", "larder-cli", "--features", "larder-cli/s3", "--bin",
         "larder"], cwd=tree, env=env)
    run(["cargo", "bench", "-p", "larder-benches", "--bench", "foundation", "--no-run"],
        cwd=tree, env=env)
    return (os.path.join(target, "release", "larder"),
            newest(os.path.join(target, "release", "deps", "foundation-*")))


def build_new():
    # The same features as `cargo xtask bench`'s release build, so this does not rebuild it.
    run(["cargo", "build", "--release", "-p", "larder-cli", "--features", "larder-cli/s3", "--bin",
         "larder"], cwd=ROOT)
    run(["cargo", "bench", "-p", "larder-benches", "--bench", "foundation", "--no-run"], cwd=ROOT)
    return (os.path.join(TARGET, "release", "larder"),
            newest(os.path.join(TARGET, "release", "deps", "foundation-*")))


def seconds(text):
    m = re.match(r"\s*([0-9.]+)\s*(ns|µs|us|ms|s)\b", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def foundation_rows(stdout):
    """{what: seconds} from the bench's tables (column 2 is larder's median time)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("what", "") or cells[0].startswith("---"):
            continue
        t = seconds(cells[1])
        if t is not None:
            rows[cells[0]] = t
    return rows


def foundation(binary, quick, scratch):
    # `--bench`, as `cargo bench` passes it: without it the binary runs its smoke-test sizes.
    args = [binary, "--bench"] + (["--quick"] if quick else [])
    # The bench works in $CARGO_TARGET_DIR/bench-work: on the scratch file system.
    env = dict(os.environ, CARGO_TARGET_DIR=scratch)
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        sys.exit("ab: %s failed:\n%s" % (binary, r.stderr[-3000:]))
    return foundation_rows(r.stdout)


def worker(larder, requests, tmp, tag):
    """One run of the wafcache worker loop: {put/get: figures}."""
    src_dir = os.path.join(tmp, "src")
    if not os.path.isdir(src_dir):
        os.makedirs(src_dir)
        for i in range(requests):
            with open(os.path.join(src_dir, "in%d.o" % i), "wb") as f:
                f.write((hashlib.sha256(b"%d" % i).digest() * 33)[:1024])
    srcs = [os.path.join(src_dir, "in%d.o" % i) for i in range(requests)]
    sigs = [hashlib.sha256(b"task %d" % i).hexdigest() for i in range(requests)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LARDER_", "WAFCACHE"))}
    env["WAFCACHE"] = os.path.join(tmp, "cache-" + tag)
    return wvw.run_one("larder", [larder, "worker", "--protocol", "wafcache"], env, srcs, sigs,
                       os.path.join(tmp, "out-" + tag), "fast")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-rev", default="25f42fa",
                    help="the revision to compare with (default: the one before issue 13)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--requests", type=int, default=10000, help="worker requests per phase")
    ap.add_argument("--quick", action="store_true", help="the foundation bench's --quick sizes")
    ap.add_argument("--out", default=None, help="write ab.result.json here")
    ap.add_argument("--old-larder", help="the old larder binary, already built (skips the build)")
    ap.add_argument("--old-bench", help="the old foundation bench binary, already built")
    args = ap.parse_args()

    if args.old_larder and args.old_bench:
        old_larder, old_bench = args.old_larder, args.old_bench
    else:
        old_larder, old_bench = build_old(args.old_rev)
    new_larder, new_bench = build_new()
    fnd = {"old": [], "new": []}
    wrk = {"old": [], "new": []}
    with benchlib.JournaledScratch(TARGET, name="ab-scratch") as scratch:
        tmp = tempfile.mkdtemp(prefix="larder-ab-", dir=scratch)
        for r in range(args.rounds):
            # Rotate who goes first, so neither always runs on the warmer machine.
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for side in order:
                bench, larder = (old_bench, old_larder) if side == "old" else (new_bench, new_larder)
                log("ab: round %d, %s: foundation" % (r + 1, side))
                fnd[side].append(foundation(bench, args.quick, scratch))
                log("ab: round %d, %s: worker" % (r + 1, side))
                wrk[side].append(worker(larder, args.requests, tmp, "%s-%d" % (side, r)))

    rows, lines = [], []

    def add(what, news, olds, unit_fmt, higher_is_better):
        """A row from the sides' per-round figures (round r of each side ran back to back)."""
        paired = [(n / o) if higher_is_better else (o / n) for n, o in zip(news, olds)]
        ratio = statistics.median(paired)
        met = ratio >= TARGET_RATIO
        new, old = statistics.median(news), statistics.median(olds)
        text = "%.2f× (rounds %.2f–%.2f)" % (ratio, min(paired), max(paired))
        row = benchlib.ratio_row(what, unit_fmt(new), "%s, %s" % (args.old_rev, unit_fmt(old)),
                                 ratio, "≥ %.2f×" % TARGET_RATIO, met, ratio_text=text)
        row["rounds"] = {"new": news, "old": olds, "paired_ratios": paired}
        rows.append(row)
        lines.append("| %s | %s | %s | %s | %s |" % (what, unit_fmt(new), unit_fmt(old), text,
                                                    "yes" if met else "no"))

    def fmt_time(t):
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
            if t >= scale:
                return "%.3g %s" % (t / scale, unit)
        return "%.3g ns" % (t * 1e9)

    names = [n for n in fnd["new"][0] if all(n in run_ for side in fnd for run_ in fnd[side])]
    for name in names:
        add("foundation: " + name, [run_[name] for run_ in fnd["new"]],
            [run_[name] for run_ in fnd["old"]], fmt_time, False)
    for ph in ("put", "get"):
        for key, label, hib, fmt in (
                ("requests_per_s", "requests/s", True, lambda v: "{:,.0f}".format(v)),
                ("cpu_us_per_request", "CPU µs/request", False, lambda v: "%.1f" % v)):
            add("worker %s, %s" % (ph, label), [w[ph][key] for w in wrk["new"]],
                [w[ph][key] for w in wrk["old"]], fmt, hib)

    print("| what | this revision | %s | speed vs old | ≥ %.2f× |" % (args.old_rev, TARGET_RATIO))
    print("|---|---|---|---|---|")
    print("\n".join(lines))
    if args.out:
        settings = "%d rounds, old and new alternating; ratio: median of the per-round " \
                   "paired ratios, with their range; foundation bench%s; worker %d " \
                   "requests per phase" % (args.rounds, " --quick" if args.quick else "",
                                            args.requests)
        print("wrote " + benchlib.write_result(args.out, "ab", rows, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
