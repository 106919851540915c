#!/usr/bin/env python3
"""`larder serve`'s Remote Execution API against its own HTTP cache and against BuildGrid.

usage: python3 benches/reapi.py [--larder target/release/larder]
                                [--client target/release/reapi-client]
                                [--bgd target/buildgrid/bin/bgd] [--quick] [--out DIR]
                                [--transfers-only] [--reps N]

One run, three servers on free loopback ports, each over a fresh temporary directory:
  - `larder serve` (the fs store), over gRPC (h2c) and over Bazel's HTTP protocol (`/bazel`);
  - BuildGrid 0.4.4 (`bgd server start`) with a disk CAS, ByteStream and an LRU action cache
    over it: the minimal CAS-only configuration, no scheduler, no database.

Measures (issue 14, "Measure"):
  1. ByteStream Write and Read of a 100 MiB blob (1 MiB write chunks), larder and BuildGrid,
     against larder's HTTP PUT and GET of the same size at `/bazel/cas/<sha256>`: medians of
     5 writes (each of a different blob) and 5 reads, the targets taking turns.
  2. FindMissingBlobs of 10,000 SHA-256 digests per call, all stored (present) or none
     (absent), larder and BuildGrid: medians of 7 calls each.
     Both through benches' `reapi-client` (one Rust client, tonic and reqwest, for every server
     and protocol; see its module doc).
  3. Bazel 4.2 (Debian's bazel-bootstrap) on a generated workspace of 500 genrules that each
     echo a line: a cold build fills each cache (larder over grpc://, larder over http://,
     BuildGrid over grpc://, one fresh server each), then warm builds with an empty output base
     (`--output_base` new each time, one shared install base) take turns: median of 3 wall times
     of the whole `bazel --batch build` command, each checked to be all remote cache hits.

Prints a table (what, larder, baseline, ratio, target, met) and writes reapi.json (every
sample, load averages, revision) and reapi.md to --out. `--quick`: 16 MiB, 2 repetitions,
2,000 digests, 50 genrules, one warm build each (a smoke run; its figures mean little).
`--transfers-only`: item 1 for larder alone (ByteStream against its own HTTP; no BuildGrid, no
Bazel), written to reapi-transfers.json/.md; `--reps N` sets its repetitions.
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_port  # noqa: E402
import benchlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Servers


class Server:
    """A server process in a session of its own, stopped with SIGTERM (its group killed if it
    does not stop), its temporary directory removed."""

    def __init__(self, name, argv, tmp, port, env=None):
        self.name, self.port = name, port
        self.log_path = os.path.join(tmp, "%s-%d.log" % (name, port))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        wait_port(port, timeout=60)
        if self.proc.poll() is not None:
            sys.exit("reapi: %s exited at start; see %s" % (name, self.log_path))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def start_larder(larder, tmp, name):
    port = free_port()
    cache = tempfile.mkdtemp(prefix=name + "-", dir=tmp)
    return Server(name, [larder, "serve", "--dir", cache, "--listen", "127.0.0.1:%d" % port],
                  tmp, port, env=dict(os.environ, LARDER_LOG="warn"))


# BuildGrid's smallest cache-only configuration: a disk CAS (as larder's fs store keeps its
# blobs on disk), ByteStream on the same storage, an in-memory LRU action cache whose results
# point into it. Instance name "" (Bazel's default).
BUILDGRID_CONFIG = """\
server:
  - !channel
    address: "127.0.0.1:%(port)d"
    insecure-mode: true
storages:
  - !disk-storage &cas
    path: %(cas)s
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: ""
    services:
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
      - !action-cache
        cache: *ac
"""


def start_buildgrid(bgd, tmp, name):
    port = free_port()
    d = tempfile.mkdtemp(prefix=name + "-", dir=tmp)
    conf = os.path.join(d, "buildgrid.yml")
    with open(conf, "w") as f:
        f.write(BUILDGRID_CONFIG % {"port": port, "cas": os.path.join(d, "cas")})
    return Server(name, [bgd, "server", "start", conf], tmp, port)


# ------------------------------------------------------------------------------------------
# Transfers and FindMissingBlobs (reapi-client)


def client_run(client, args):
    out = subprocess.run([client] + args, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("reapi: reapi-client %s failed:\n%s" % (" ".join(args), out.stderr))
    return json.loads(out.stdout)


def bench_transfer(client, larder, bg, size, reps):
    log("reapi: ByteStream and HTTP transfers, %d MiB, %d repetitions" % (size // MIB, reps))
    targets = ["larder-grpc=grpc://127.0.0.1:%d" % larder.port,
               "larder-http=http://127.0.0.1:%d/bazel" % larder.port]
    if bg is not None:
        targets.append("buildgrid-grpc=grpc://127.0.0.1:%d" % bg.port)
    data = client_run(client, [
        "transfer", "--size", str(size), "--reps", str(reps), "--read-reps", str(reps)] + targets)
    return {t["name"]: {"write": t["write"], "read": t["read"]} for t in data["targets"]}


def bench_find_missing(client, larder, bg, digests, calls):
    log("reapi: FindMissingBlobs, %d digests per call, %d calls" % (digests, calls))
    data = client_run(client, [
        "find-missing", "--digests", str(digests), "--calls", str(calls),
        "larder=grpc://127.0.0.1:%d" % larder.port, "buildgrid=grpc://127.0.0.1:%d" % bg.port])
    return {t["name"]: {"present": t["present"], "absent": t["absent"]}
            for t in data["targets"]}


# ------------------------------------------------------------------------------------------
# Bazel


def make_workspace(ws, actions):
    """A workspace of `actions` genrules, each writing one short line, and //:all over them."""
    os.makedirs(ws)
    with open(os.path.join(ws, "WORKSPACE"), "w"):
        pass
    with open(os.path.join(ws, "BUILD"), "w") as f:
        for i in range(actions):
            f.write('genrule(name = "g%d", outs = ["out/%d.txt"], cmd = "echo action %d > $@")\n'
                    % (i, i, i))
        f.write('filegroup(name = "all", srcs = [%s])\n'
                % ", ".join('":g%d"' % i for i in range(actions)))


class Bazel:
    """`bazel --batch build //:all` with one shared output user root (the install base is
    extracted once) and a new output base per build: nothing of an earlier build is local."""

    def __init__(self, ws, tmp):
        self.ws, self.tmp, self.n = ws, tmp, 0
        self.user_root = os.path.join(tmp, "bazel-root")
        # Extracts the install base before anything is timed (Debian's bootstrap Bazel has no
        # `version`).
        self.run(["install_base"], "info")

    def run(self, args, command="build"):
        self.n += 1
        base = os.path.join(self.tmp, "bazel-base-%d" % self.n)
        argv = ["bazel", "--output_user_root=" + self.user_root, "--output_base=" + base,
                "--batch", command]
        argv += ["//:all", "--spawn_strategy=local"] + args if command == "build" else args
        started = time.monotonic()
        out = subprocess.run(argv, cwd=self.ws, capture_output=True, text=True)
        seconds = time.monotonic() - started
        shutil.rmtree(base, ignore_errors=True)
        if out.returncode != 0:
            sys.exit("reapi: %s failed:\n%s" % (" ".join(argv), out.stderr[-4000:]))
        return seconds, out.stderr


def bazel_summary(report):
    """(remote cache hits, processes, Bazel's own elapsed seconds) from a build's report."""
    hits = re.search(r"(\d+) remote cache hit", report)
    procs = re.search(r"INFO: (\d+) process", report)
    elapsed = re.search(r"Elapsed time: ([\d.]+)s", report)
    return (int(hits.group(1)) if hits else 0, int(procs.group(1)) if procs else 0,
            float(elapsed.group(1)) if elapsed else None)


def bench_bazel(larder, bgd, tmp, actions, reps):
    ws = os.path.join(tmp, "ws")
    make_workspace(ws, actions)
    bazel = Bazel(ws, tmp)
    servers = {
        "larder-grpc": start_larder(larder, tmp, "larder-grpc"),
        "larder-http": start_larder(larder, tmp, "larder-http"),
        "buildgrid-grpc": start_buildgrid(bgd, tmp, "buildgrid-grpc"),
    }
    urls = {
        "larder-grpc": "grpc://127.0.0.1:%d" % servers["larder-grpc"].port,
        "larder-http": "http://127.0.0.1:%d/bazel" % servers["larder-http"].port,
        "buildgrid-grpc": "grpc://127.0.0.1:%d" % servers["buildgrid-grpc"].port,
    }
    names = list(urls)
    results = {n: {"cold": None, "warm": [], "warm_bazel_elapsed": [], "warm_hits": []}
               for n in names}
    try:
        for n in names:
            log("reapi: bazel cold build, %d actions, %s" % (actions, n))
            seconds, report = bazel.run(["--remote_cache=" + urls[n]])
            hits, _, _ = bazel_summary(report)
            if hits:
                sys.exit("reapi: the cold build against %s had %d remote hits" % (n, hits))
            results[n]["cold"] = seconds
        for rep in range(reps):
            for k in range(len(names)):
                n = names[(k + rep) % len(names)]
                log("reapi: bazel warm build %d, %s" % (rep + 1, n))
                seconds, report = bazel.run(["--remote_cache=" + urls[n]])
                hits, _, elapsed = bazel_summary(report)
                if hits != actions:
                    sys.exit("reapi: warm build against %s: %d remote cache hits of %d actions:\n%s"
                             % (n, hits, actions, report[-3000:]))
                results[n]["warm"].append(seconds)
                results[n]["warm_bazel_elapsed"].append(elapsed)
                results[n]["warm_hits"].append(hits)
    finally:
        for s in servers.values():
            s.stop()
    return results


# ------------------------------------------------------------------------------------------
# Report


def med(xs):
    return statistics.median(xs)


def rows_of(r, size, digests, actions):
    """The table: (what, larder, baseline, ratio, target, met) as text, and the raw ratios."""
    t, fm, bz = r["transfer"], r.get("find_missing"), r.get("bazel")
    mibs = lambda xs: size / MIB / med(xs)  # noqa: E731
    rate = lambda xs: digests / med(xs)  # noqa: E731
    rows = []

    def add(what, larder, baseline, ratio, target, met):
        rows.append({"what": what, "larder": larder, "baseline": baseline, "ratio": ratio,
                     "target": target, "met": met})

    sz = "%d MiB" % (size // MIB)
    for op, verb, http in (("write", "Write", "PUT"), ("read", "Read", "GET")):
        g, h = mibs(t["larder-grpc"][op]), mibs(t["larder-http"][op])
        add("ByteStream %s %s" % (verb, sz), "%.0f MiB/s" % g,
            "larder HTTP %s /bazel/cas, %.0f MiB/s" % (http, h), g / h, "≥ 0.9×",
            "yes" if g / h >= 0.9 else "**no**")
        if "buildgrid-grpc" not in t:
            continue
        b = mibs(t["buildgrid-grpc"][op])
        add("ByteStream %s %s, peer" % (verb, sz), "%.0f MiB/s" % g,
            "BuildGrid 0.4.4 ByteStream %s, %.0f MiB/s" % (verb, b), g / b, "(record)", "")
    if fm is None:
        return rows
    for case in ("present", "absent"):
        lf, bf = rate(fm["larder"][case]), rate(fm["buildgrid"][case])
        add("FindMissingBlobs, %s digests %s" % ("{:,}".format(digests), case),
            "{:,.0f} digests/s".format(lf),
            "BuildGrid 0.4.4, {:,.0f} digests/s".format(bf), lf / bf, "≥ 200,000/s",
            "yes" if lf >= 200000 else "**no**")
    g, h, b = (med(bz[n]["warm"]) for n in ("larder-grpc", "larder-http", "buildgrid-grpc"))
    add("Bazel warm, empty output base, %d actions: grpc:// (time)" % actions, "%.2f s" % g,
        "the same over larder's http://, %.2f s" % h, g / h, "≤ 1.0× the time",
        "yes" if g <= h else "**no**")
    add("Bazel warm, %d actions: grpc:// (time), peer" % actions, "%.2f s" % g,
        "BuildGrid 0.4.4 grpc://, %.2f s" % b, g / b, "(record)", "")
    return rows


def report(rows, r, meta):
    bz = r.get("bazel") or {}
    lines = ["`%s` — %s, revision `%s`%s; load average %s before, %s after." % (
        meta["command"], meta["date"], meta["revision"],
        " (with others' uncommitted edits in %s)" % ", ".join(meta["dirty"]) if meta["dirty"] else "",
        "/".join("%.1f" % x for x in meta["load_before"]),
        "/".join("%.1f" % x for x in meta["load_after"])), "",
        "| what | larder | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| %s | %s | %s | %.2f× | %s | %s |" % (
            row["what"], row["larder"], row["baseline"], row["ratio"], row["target"], row["met"]))
    if not bz:
        return "\n".join(lines)
    lines += ["", "| Bazel, %d actions | cold | warm (each) | warm, Bazel's own elapsed |"
              % meta["actions"], "|---|---|---|---|"]
    for n, b in bz.items():
        lines.append("| %s | %.2f s | %s | %s |" % (
            n, b["cold"], ", ".join("%.2f s" % s for s in b["warm"]),
            ", ".join("%.2f s" % s for s in b["warm_bazel_elapsed"] if s is not None)))
    return "\n".join(lines)


def git(*args):
    return subprocess.run(["git"] + list(args), cwd=ROOT, capture_output=True,
                          text=True).stdout


def transfers_only(args):
    """Item 1 for larder alone: ByteStream Write/Read against its own HTTP PUT/GET."""
    for what, path in (("larder", args.larder), ("reapi-client", args.client)):
        if not os.path.exists(path):
            sys.exit("reapi: no %s at %s" % (what, path))
    larder, client = os.path.abspath(args.larder), os.path.abspath(args.client)
    size = 16 * MIB if args.quick else 100 * MIB
    reps = args.reps or (2 if args.quick else 5)
    dirty = sorted({line[3:] for line in git("status", "--porcelain", "--untracked-files=no")
                    .splitlines()})
    meta = {"command": "python3 benches/reapi.py --transfers-only --reps %d%s"
                       % (reps, " --quick" if args.quick else ""),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "revision": git("rev-parse", "--short", "HEAD").strip(), "dirty": dirty,
            "nproc": os.cpu_count(), "load_before": list(os.getloadavg()),
            "bytes": size, "reps": reps}
    tmp = tempfile.mkdtemp(prefix="larder-reapi-bench-")
    try:
        srv = start_larder(larder, tmp, "larder")
        try:
            results = {"transfer": bench_transfer(client, srv, None, size, reps)}
        finally:
            srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["load_after"] = list(os.getloadavg())
    rows = rows_of(results, size, 0, 0)
    md = report(rows, results, meta)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "reapi-transfers.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "samples": results}, f, indent=1)
    with open(os.path.join(args.out, "reapi-transfers.md"), "w") as f:
        f.write(md + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--larder", default=os.path.join(ROOT, "target/release/larder"))
    ap.add_argument("--client", default=os.path.join(ROOT, "target/release/reapi-client"))
    ap.add_argument("--bgd", default=os.path.join(ROOT, "target/buildgrid/bin/bgd"))
    ap.add_argument("--quick", action="store_true", help="a smoke-sized run")
    ap.add_argument("--out", default=os.path.join(ROOT, "benches/results"))
    ap.add_argument("--transfers-only", action="store_true",
                    help="larder's ByteStream Write/Read against its HTTP PUT/GET, nothing else")
    ap.add_argument("--reps", type=int, help="repetitions of the transfers")
    args = ap.parse_args()
    if args.transfers_only:
        return transfers_only(args)
    for what, path, hint in (
            ("larder", args.larder, "cargo build --release -p larder-cli"),
            ("reapi-client", args.client, "cargo build --release -p larder-benches --bin reapi-client"),
            ("bgd", args.bgd, "cargo xtask bench --reapi installs BuildGrid 0.4.4 there")):
        if not os.path.exists(path):
            sys.exit("reapi: no %s at %s (%s)" % (what, path, hint))
    if not shutil.which("bazel"):
        sys.exit("reapi: bazel is not installed (Debian: apt-get install bazel-bootstrap)")
    larder, client, bgd = (os.path.abspath(p) for p in (args.larder, args.client, args.bgd))
    size, reps, digests, calls, actions, bazel_reps = (
        (16 * MIB, 2, 2000, 2, 50, 1) if args.quick else (100 * MIB, 5, 10000, 7, 500, 3))
    dirty = sorted({line[3:] for line in git("status", "--porcelain", "--untracked-files=no")
                    .splitlines()})
    meta = {"command": "python3 benches/reapi.py" + (" --quick" if args.quick else ""),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "revision": git("rev-parse", "--short", "HEAD").strip(), "dirty": dirty,
            "nproc": os.cpu_count(), "load_before": list(os.getloadavg()),
            "bytes": size, "reps": reps, "digests": digests, "calls": calls,
            "actions": actions, "bazel_reps": bazel_reps}
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="larder-reapi-bench-")
    results = {}
    try:
        larder_srv = start_larder(larder, tmp, "larder")
        bg_srv = start_buildgrid(bgd, tmp, "buildgrid")
        try:
            results["transfer"] = bench_transfer(client, larder_srv, bg_srv, size, reps)
            results["find_missing"] = bench_find_missing(client, larder_srv, bg_srv, digests, calls)
        finally:
            larder_srv.stop()
            bg_srv.stop()
        results["bazel"] = bench_bazel(larder, bgd, tmp, actions, bazel_reps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["load_after"] = list(os.getloadavg())
    rows = rows_of(results, size, digests, actions)
    md = report(rows, results, meta)
    print(md)
    name = "reapi-quick" if args.quick else "reapi"
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "samples": results}, f, indent=1)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(md + "\n")
    # reapi.result.json, for BENCHMARKS.md: the same rows.
    benchlib.write_result(args.out, "reapi", [dict(r, headline=r["what"].startswith(
        "FindMissingBlobs") and "present" in r["what"]) for r in rows],
        "%d MiB blobs, %d repetitions; %s digests, %d calls; Bazel %d actions, %d warm builds" % (
            size // MIB, reps, "{:,}".format(digests), calls, actions, bazel_reps))


if __name__ == "__main__":
    main()
