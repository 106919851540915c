#!/usr/bin/env python3
"""Side by side: waf's own wafcache.py worker and `larder worker --protocol wafcache`.

    python3 benches/worker_vs_wafcache.py [--larder PATH] [--seed PATH] [--requests N]
                                          [--reps R] [--size BYTES] [--client fast|waf]
                                          [--dir DIR] [--json FILE] [--larder-env NAME=VALUE]...

The same request stream goes to one worker of each kind, started the way waf starts them (the
seed as `python3 -c <source of wafcache.py>` with WAFCACHE set to a file cache; larder as
`larder worker --protocol wafcache` with the same WAFCACHE variable, so each uses its own
default file store in a fresh directory):

1. put phase: N requests `[sig_i, [src_i], []]`, each a 1 KiB file (distinct contents);
2. get phase: N requests `[sig_i, [], [dst_i]]` to fresh destinations in existing directories.

For each phase and worker it reports requests/s (wall clock, client included) and the worker's
CPU time per request: the sum over all the worker's threads of the first field of
`/proc/PID/task/*/schedstat` (ns on CPU), sampled before and after the phase. Threads that exit
during a phase would lose their time, so the script also reports the process's utime and stime from
`/proc/PID/stat` (clock ticks, dead threads included: user and kernel time) as a cross-check, and says so when a
thread vanished. Every answer is checked to be "ok" and every restored file to hold the right
bytes, after the timed loop.

The workers alternate (seed, larder, seed, larder, ...) for R repetitions, each with fresh
caches, and the report gives medians with min-max: the machine is shared and noisy.

The client: `--client fast` (default) sends pre-encoded lines with os.write and reads each answer
with one os.read, so the client costs as little as Python allows and the workers are what is
measured. `--client waf` uses wafcache.py's own `cache_command` (pickle and base64 per request,
and a raw pipe read byte by byte, as waf does).
"""

import argparse
import base64
import hashlib
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OK = "ok"
FANOUT = 64


def cpu_ns(pid):
    """(sum of schedstat run time over live threads in ns, {tid: ns}, (utime, stime) in ns)."""
    per = {}
    task_dir = "/proc/%d/task" % pid
    for tid in os.listdir(task_dir):
        try:
            with open("%s/%s/schedstat" % (task_dir, tid)) as f:
                per[tid] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return sum(per.values()), per, (int(fields[11]) * tick, int(fields[12]) * tick)


def encode(sig, files_from, files_to):
    return base64.b64encode(pickle.dumps([sig, files_from, files_to])) + b"\n"


def cache_command(proc, sig, files_from, files_to):
    """wafcache.py's client side (`cache_command`), verbatim in behaviour."""
    obj = base64.b64encode(pickle.dumps([sig, files_from, files_to]))
    proc.stdin.write(obj)
    proc.stdin.write("\n".encode())
    proc.stdin.flush()
    obj = proc.stdout.readline()
    if not obj:
        raise OSError("Preforked sub-process %r died" % proc.pid)
    return pickle.loads(base64.b64decode(obj))


class Worker:
    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0
        )
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()

    def fast(self, line):
        """Send one pre-encoded line and return the raw answer line."""
        os.write(self.wfd, line)
        ans = os.read(self.rfd, 65536)
        while not ans.endswith(b"\n"):
            more = os.read(self.rfd, 65536)
            if not more:
                raise OSError("worker %d died" % self.proc.pid)
            ans += more
        return ans

    def close(self):
        self.proc.stdin.close()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.wait(timeout=120), err


def phase(worker, reqs, lines, client):
    """Run one phase; returns (seconds, schedstat ns, stat ns, vanished threads, answers)."""
    pid = worker.proc.pid
    before, per_before, stat_before = cpu_ns(pid)
    answers = []
    t0 = time.perf_counter()
    if client == "fast":
        fast = worker.fast
        for line in lines:
            answers.append(fast(line))
    else:
        for sig, files_from, files_to in reqs:
            answers.append(cache_command(worker.proc, sig, files_from, files_to))
    wall = time.perf_counter() - t0
    after, per_after, stat_after = cpu_ns(pid)
    vanished = [t for t in per_before if t not in per_after]
    stat = tuple(a - b for a, b in zip(stat_after, stat_before))
    if client == "fast":
        answers = [pickle.loads(base64.b64decode(a)) for a in answers]
    return wall, after - before, stat, vanished, answers


def run_one(kind, cmd, env, srcs, sigs, outdir, client):
    """Start one worker, run the put and get phases, check, and return the figures."""
    os.makedirs(outdir)
    for d in range(FANOUT):
        os.mkdir(os.path.join(outdir, "%02d" % d))
    dsts = [os.path.join(outdir, "%02d" % (i % FANOUT), "out%d.o" % i) for i in range(len(srcs))]
    puts = [(sig, [src], []) for sig, src in zip(sigs, srcs)]
    gets = [(sig, [], [dst]) for sig, dst in zip(sigs, dsts)]
    put_lines = [encode(*r) for r in puts]
    get_lines = [encode(*r) for r in gets]
    worker = Worker(cmd, env)
    # Warm up (interpreter start, store open): a miss for a signature no phase uses.
    warm = cache_command(worker.proc, hashlib.sha256(b"warm-up").hexdigest(), [], [os.path.join(outdir, "warm")])
    if warm.startswith(OK) and kind != "echo":
        raise AssertionError("%s: the warm-up get hit a fresh cache" % kind)
    result = {}
    for name, reqs, lines in (("put", puts, put_lines), ("get", gets, get_lines)):
        wall, sched, stat, vanished, answers = phase(worker, reqs, lines, client)
        bad = [a for a in answers if a != OK]
        if bad:
            raise AssertionError("%s %s: %d answers not ok, first: %r" % (kind, name, len(bad), bad[0][-400:]))
        result[name] = {
            "requests": len(reqs),
            "seconds": wall,
            "requests_per_s": len(reqs) / wall,
            "cpu_us_per_request": sched / len(reqs) / 1000,
            "stat_cpu_us_per_request": sum(stat) / len(reqs) / 1000,
            "user_us_per_request": stat[0] / len(reqs) / 1000,
            "sys_us_per_request": stat[1] / len(reqs) / 1000,
            "vanished_threads": len(vanished),
        }
    code, err = worker.close()
    # The seed exits 1 at end of input ("parent process probably ended"); larder exits 0.
    if code not in (0, 1) or (kind != "seed" and code != 0):
        raise AssertionError("%s exited %d: %s" % (kind, code, err[-2000:]))
    for i, (src, dst) in enumerate(zip(srcs, dsts)):
        if kind == "echo":
            break  # it answers without restoring anything
        if i % 97 == 0 or i == len(srcs) - 1:
            with open(src, "rb") as a, open(dst, "rb") as b:
                if a.read() != b.read():
                    raise AssertionError("%s: %s restored wrong bytes" % (kind, dst))
    return result


def fmt_range(values, fmt):
    return "%s (%s-%s)" % (fmt % statistics.median(values), fmt % min(values), fmt % max(values))


def write_result(args, results, summary):
    """worker.result.json: larder against the seed per phase (requests/s, CPU per request), and
    the `min` floor's CPU per request where it ran."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import benchlib

    def med(kind, ph, key):
        return statistics.median(r[ph][key] for r in results[kind])

    def rng(xs):
        return "%.1f×" % statistics.median(xs) if len(xs) == 1 else "%.1f× (%.1f–%.1f)" % (
            statistics.median(xs), min(xs), max(xs))

    rows = []
    for ph in ("put", "get"):
        speed, cpu = summary[ph]["speed_ratio"], summary[ph]["cpu_ratio"]
        rows.append(benchlib.ratio_row(
            "%s, requests/s" % ph, "{:,.0f}".format(med("larder", ph, "requests_per_s")),
            "seed, {:,.0f}".format(med("seed", ph, "requests_per_s")), statistics.median(speed),
            "≥ 3×", statistics.median(speed) >= 3, ratio_text=rng(speed), headline=True))
        rows.append(benchlib.ratio_row(
            "%s, CPU µs/request" % ph, "%.1f" % med("larder", ph, "cpu_us_per_request"),
            "seed, %.1f" % med("seed", ph, "cpu_us_per_request"), statistics.median(cpu),
            "≥ 8× less", statistics.median(cpu) >= 8, ratio_text=rng(cpu) + " less"))
    if "min" in results:
        for ph in ("put", "get"):
            floor = summary[ph]["seed_cpu_over_min"]
            rows.append(benchlib.ratio_row(
                "the floor for any worker (`min`: one hard link), %s, CPU µs/request" % ph,
                "%.1f" % med("min", ph, "cpu_us_per_request"),
                "seed, %.1f" % med("seed", ph, "cpu_us_per_request"), statistics.median(floor),
                "", None, ratio_text=rng(floor) + " less"))
    benchlib.write_result(args.out, "worker", rows, "%d requests per phase of %d-byte files, %d "
                          "repetitions, client %s; medians" % (args.requests, args.size, args.reps,
                                                              args.client))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--larder", default=os.path.join(ROOT, "target", "release", "larder"))
    ap.add_argument("--seed", default="/work/shared/seeds/wafcache.py")
    ap.add_argument("--floor", default=os.path.join(ROOT, "target", "release", "wafcache-floor"),
                    help="the floor worker (cargo build --release -p larder-benches --bin wafcache-floor);"
                    " skipped with a note when absent")
    ap.add_argument("--requests", type=int, default=10000, help="requests per phase (default 10000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, workers alternating (default 3)")
    ap.add_argument("--size", type=int, default=1024, help="bytes per output file (default 1024)")
    ap.add_argument("--client", choices=("fast", "waf"), default="fast")
    ap.add_argument("--dir", default=None, help="work directory parent (default: $TMPDIR)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--out", default=None,
                    help="also write worker.result.json (the BENCHMARKS.md schema) into this directory")
    ap.add_argument("--larder-arg", action="append", default=[], help="extra argument for larder worker")
    ap.add_argument("--larder-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra variable for larder worker, e.g. LARDER_LINK=hardlink")
    args = ap.parse_args()

    if not os.access(args.larder, os.X_OK):
        sys.exit("no larder binary at %s: cargo build --release -p larder-cli" % args.larder)
    kinds = ["seed", "larder"]
    if os.access(args.floor, os.X_OK):
        kinds += ["floor", "min", "echo"]
    else:
        print("no floor worker at %s (cargo build --release -p larder-benches --bin wafcache-floor):"
              " measuring the seed and larder only" % args.floor, flush=True)
    with open(args.seed) as f:
        seed_source = f.read()

    tmp = tempfile.mkdtemp(prefix="larder-vs-wafcache-", dir=args.dir)
    try:
        src_dir = os.path.join(tmp, "src")
        os.makedirs(src_dir)
        srcs, sigs = [], []
        for i in range(args.requests):
            path = os.path.join(src_dir, "in%d.o" % i)
            data = hashlib.sha256(b"%d" % i).digest() * (args.size // 32 + 1)
            with open(path, "wb") as f:
                f.write(data[: args.size])
            srcs.append(path)
            # Shaped like waf's: hex of uid() + signature(), 32 bytes.
            sigs.append(hashlib.sha256(b"task %d" % i).hexdigest())

        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("LARDER_", "WAFCACHE"))}
        results = {k: [] for k in kinds}
        for rep in range(args.reps):
            for kind in kinds:
                env = dict(base_env)
                env["WAFCACHE"] = os.path.join(tmp, "cache-%s-%d" % (kind, rep))
                if kind == "seed":
                    # As wafcache.py's get_process() starts its workers.
                    cmd = [sys.executable, "-c", seed_source]
                elif kind == "floor":
                    cmd = [args.floor]
                elif kind == "min":
                    cmd = [args.floor, "--min"]
                elif kind == "echo":
                    cmd = [args.floor, "--echo"]
                else:
                    cmd = [args.larder, "worker", "--protocol", "wafcache"] + args.larder_arg
                    env.update(v.split("=", 1) for v in args.larder_env)
                r = run_one(kind, cmd, env, srcs, sigs, os.path.join(tmp, "out-%s-%d" % (kind, rep)), args.client)
                results[kind].append(r)
                print(
                    "rep %d %-6s put %7.0f req/s %7.1f us CPU/req | get %7.0f req/s %7.1f us CPU/req"
                    % (
                        rep,
                        kind,
                        r["put"]["requests_per_s"],
                        r["put"]["cpu_us_per_request"],
                        r["get"]["requests_per_s"],
                        r["get"]["cpu_us_per_request"],
                    ),
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("%d requests per phase, %d-byte outputs, client %s, %d repetitions; median (min-max)"
          % (args.requests, args.size, args.client, args.reps))
    print()
    print("| phase | worker | requests/s | CPU µs/request (schedstat) | user + sys µs/request (/proc/PID/stat) |")
    print("|---|---|---|---|---|")
    summary = {}
    for ph in ("put", "get"):
        for kind in kinds:
            rs = [r[ph] for r in results[kind]]
            print("| %s | %s | %s | %s | %s |" % (
                ph, kind,
                fmt_range([r["requests_per_s"] for r in rs], "%.0f"),
                fmt_range([r["cpu_us_per_request"] for r in rs], "%.1f"),
                "%.0f + %.0f" % (
                    statistics.median([r["user_us_per_request"] for r in rs]),
                    statistics.median([r["sys_us_per_request"] for r in rs]),
                ),
            ))
            if any(r["vanished_threads"] for r in rs):
                print("  (note: %s threads exited during %s: schedstat misses their time)" % (kind, ph))
        # Ratios per repetition (the two workers of one repetition ran back to back), then medians.
        speed = [l[ph]["requests_per_s"] / s[ph]["requests_per_s"] for s, l in zip(results["seed"], results["larder"])]
        cpu = [s[ph]["cpu_us_per_request"] / l[ph]["cpu_us_per_request"] for s, l in zip(results["seed"], results["larder"])]
        summary[ph] = {"speed_ratio": speed, "cpu_ratio": cpu}
    print()
    print("| phase | larder requests/s ÷ seed (target ≥ 3×) | seed CPU/request ÷ larder (target ≥ 8×) |")
    print("|---|---|---|")
    for ph in ("put", "get"):
        print("| %s | %s× | %s× |" % (ph, fmt_range(summary[ph]["speed_ratio"], "%.1f"), fmt_range(summary[ph]["cpu_ratio"], "%.1f")))
    if "floor" in results:
        print()
        print("What any worker could reach on this machine today: `floor` does only the seed's file")
        print("operations (hard link + rename, mkdir on put, utime on get) with no interpreter, index or")
        print("verification; `min` does one hard link per file and nothing else (the least that still")
        print("puts each file where it belongs); `echo` answers without touching files (client and pipe).")
        print()
        print("| phase | seed ÷ floor, CPU/request | seed ÷ min, CPU/request (upper bound for any worker) "
              "| min ÷ seed, requests/s | echo ÷ seed, requests/s (client ceiling) |")
        print("|---|---|---|---|---|")
        for ph in ("put", "get"):
            def cpu_over(k):
                return [s[ph]["cpu_us_per_request"] / f[ph]["cpu_us_per_request"] for s, f in zip(results["seed"], results[k])]
            def speed_over(k):
                return [e[ph]["requests_per_s"] / s[ph]["requests_per_s"] for s, e in zip(results["seed"], results[k])]
            row = {"seed_cpu_over_floor": cpu_over("floor"), "seed_cpu_over_min": cpu_over("min"),
                   "min_speed_over_seed": speed_over("min"), "echo_speed_over_seed": speed_over("echo")}
            summary[ph].update(row)
            print("| %s | %s× | %s× | %s× | %s× |" % (ph, *(fmt_range(v, "%.1f") for v in row.values())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "ratios": summary}, f, indent=1)
    if args.out:
        write_result(args, results, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
