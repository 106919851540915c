#!/usr/bin/env python3
"""Drive a real `larder worker` the way build-system clients do, and check its answers.

    worker_driver.py json LARDER          JSON protocol: hits, misses, errors, stats
    worker_driver.py wafcache LARDER      wafcache protocol, spoken exactly as wafcache.py's
                                          client (`cache_command`) speaks it
    worker_driver.py async LARDER         background uploads (--upload-workers, --no-wait)
    worker_driver.py compare LARDER SEED  the same request stream to the seed's own wafcache.py
                                          worker and to `larder worker --protocol wafcache`;
                                          answers and restored files must agree

Run by tests/e2e_worker.rs. Every check failure raises; the exit status is 0 only when all pass.
Each run works in its own temporary directory (cache, sources, restore targets).
"""

import base64
import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile

OK = "ok"


def cache_command(proc, sig, files_from, files_to):
    """wafcache.py's client side, verbatim in behaviour: one pickled line out, one line back."""
    obj = base64.b64encode(pickle.dumps([sig, files_from, files_to]))
    proc.stdin.write(obj)
    proc.stdin.write("\n".encode())
    proc.stdin.flush()
    obj = proc.stdout.readline()
    if not obj:
        raise OSError("Preforked sub-process %r died" % proc.pid)
    return pickle.loads(base64.b64decode(obj))


def raw_command(proc, line):
    """Send an arbitrary line (garbage included) and return the raw answer line."""
    proc.stdin.write(line + b"\n")
    proc.stdin.flush()
    obj = proc.stdout.readline()
    if not obj:
        raise OSError("worker %r died after %r" % (proc.pid, line[:60]))
    return obj


def check(cond, what, detail=""):
    if not cond:
        raise AssertionError("%s%s" % (what, (": %s" % (detail,)) if detail else ""))
    print("  ok: %s" % what)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def start(cmd, env):
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0
    )


def finish(proc):
    """Close stdin (end of input) and return (exit status, stderr text)."""
    proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    return proc.wait(timeout=60), err


def larder_env(tmp, **extra):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("LARDER_") or k.startswith("WAFCACHE"):
            del env[k]
    env["LARDER_STORE"] = os.path.join(tmp, "cache")
    env.update(extra)
    return env


def sig_of(name):
    """A signature shaped like waf's: hex of uid + sig (32 bytes)."""
    return hashlib.sha256(name.encode()).hexdigest()


# --- JSON protocol -------------------------------------------------------------------------


def json_checks(larder):
    with tempfile.TemporaryDirectory(prefix="larder-driver-") as tmp:
        work = os.path.join(tmp, "work")
        write(os.path.join(work, "a.txt"), b"alpha\n")
        write(os.path.join(work, "dir", "b.bin"), os.urandom(200 * 1024))
        proc = start([larder, "worker", "--stats"], larder_env(tmp))
        proc_cwd_requests = 0

        def req(obj):
            nonlocal proc_cwd_requests
            proc_cwd_requests += 1
            line = raw_command(proc, json.dumps(obj).encode())
            return json.loads(line)

        a = req({"op": "get", "key": "k1", "root": work})
        check(a == {"ok": True, "hit": False, "reason": a.get("reason")}, "get before put is a miss", a)
        a = req({"op": "exists", "key": "k1"})
        check(a == {"ok": True, "hit": False}, "exists before put is false", a)
        a = req({"op": "put", "key": "k1", "files": ["a.txt", "dir"], "root": work, "id": 7})
        check(a.get("ok") is True and a.get("stored") is True and a.get("id") == 7, "put stores", a)
        check(a.get("bytes") == 6 + 200 * 1024, "put counts the bytes", a)
        a = req({"op": "exists", "key": "k1"})
        check(a == {"ok": True, "hit": True}, "exists after put is true", a)

        other = os.path.join(tmp, "other")
        os.makedirs(other)
        a = req({"op": "get", "key": "k1", "root": other})
        check(a.get("ok") and a.get("hit"), "get after put is a hit", a)
        check(read(os.path.join(other, "a.txt")) == b"alpha\n", "restored text file")
        check(
            read(os.path.join(other, "dir", "b.bin")) == read(os.path.join(work, "dir", "b.bin")),
            "restored blob file",
        )
        only = os.path.join(tmp, "only")
        a = req({"op": "get", "key": "k1", "root": only, "files": ["a.txt"]})
        check(a.get("hit") is True and a.get("files") == 1, "get restores a chosen file", a)
        check(not os.path.exists(os.path.join(only, "dir")), "and only that file")
        a = req({"op": "get", "key": "k1", "root": only, "files": ["nope"]})
        check(a.get("ok") is True and a.get("hit") is False, "get of an output not in the entry is a miss", a)

        for bad, what in [
            (b"not json", "bad JSON"),
            (b'{"op":"frob","key":"k"}', "unknown op"),
            (b'{"op":"get"}', "missing key"),
            (json.dumps({"op": "put", "key": "../k", "files": ["a.txt"], "root": work}).encode(), "bad key"),
            (json.dumps({"op": "put", "key": "k2", "files": ["../x"], "root": work}).encode(), "unsafe path"),
            (json.dumps({"op": "put", "key": "k2", "files": ["/etc/passwd"], "root": work}).encode(), "absolute path outside root"),
            (json.dumps({"op": "put", "key": "k2", "files": ["missing"], "root": work}).encode(), "missing file"),
            (json.dumps({"op": "put", "key": "k2", "files": [], "root": work}).encode(), "put without files"),
            (b"\xff\xfe", "invalid UTF-8"),
            (b"", "empty line"),
        ]:
            line = raw_command(proc, bad)
            proc_cwd_requests += 1
            a = json.loads(line)
            check(a.get("ok") is False and isinstance(a.get("error"), str), "error answer for %s" % what, a)
        a = req({"op": "get", "key": "k2", "root": work})
        check(a.get("hit") is False, "failed puts stored nothing", a)

        a = req({"op": "stats"})
        stats = a.get("stats", {})
        check(a.get("ok") and stats.get("writes") == 1 and stats.get("hits") == 3, "stats request", a)

        code, err = finish(proc)
        check(code == 0, "exit 0 at end of input", (code, err))
        check("larder: worker stats: %d requests" % proc_cwd_requests in err, "stats printed at exit", err)

        # no_push: puts are refused (an error answer), gets still work.
        proc = start([larder, "worker"], larder_env(tmp, LARDER_NO_PUSH="1"))
        a = json.loads(raw_command(proc, json.dumps({"op": "put", "key": "k3", "files": ["a.txt"], "root": work}).encode()))
        check(a.get("ok") is False and "no_push" in a.get("error", ""), "no_push refuses puts", a)
        a = json.loads(raw_command(proc, json.dumps({"op": "get", "key": "k1", "root": other}).encode()))
        check(a.get("hit") is True, "no_push still serves gets", a)
        code, err = finish(proc)
        check(code == 0, "exit 0", (code, err))


# --- wafcache protocol ---------------------------------------------------------------------


def wafcache_checks(larder):
    with tempfile.TemporaryDirectory(prefix="larder-driver-") as tmp:
        src = os.path.join(tmp, "build")
        a = write(os.path.join(src, "a.o"), b"object a\n")
        b = write(os.path.join(src, "sub", "b.o"), os.urandom(300 * 1024))
        proc = start([larder, "worker", "--protocol", "wafcache"], larder_env(tmp, WAFCACHE_STATS="1"))
        sig = sig_of("task-1")

        dest = os.path.join(tmp, "checkout2", "build")
        da, db = os.path.join(dest, "a.o"), os.path.join(dest, "sub", "b.o")
        err = cache_command(proc, sig, [], [da, db])
        check(isinstance(err, str) and not err.startswith(OK), "get before put is not ok", err)
        check(not os.path.exists(dest), "a miss writes nothing")

        check(cache_command(proc, sig, [a, b], []) == OK, "put answers ok")
        check(cache_command(proc, sig, [], [da, db]) == OK, "get after put answers ok")
        check(read(da) == read(a) and read(db) == read(b), "restored files match")
        check(cache_command(proc, sig, [], [os.path.join(tmp, "one")]) == OK, "get of fewer files than stored")
        check(read(os.path.join(tmp, "one")) == read(a), "the first file is file 0")
        err = cache_command(proc, sig, [], [da, db, os.path.join(tmp, "c.o")])
        check(not err.startswith(OK), "get of more files than stored fails", err)

        check(cache_command(proc, sig, [], []) == "Invalid command", "empty command: the seed's text")
        err = cache_command(proc, sig_of("t2"), [os.path.join(src, "missing.o")], [])
        check(isinstance(err, str) and not err.startswith(OK), "put of a missing file fails", err)
        err = cache_command(proc, "../../etc", [a], [])
        check(not err.startswith(OK), "an unsafe signature is refused", err)
        err = cache_command(proc, sig_of("t3"), [src], [])
        check(not err.startswith(OK), "a directory is refused", err)
        err = cache_command(proc, sig, [], [os.path.join(tmp, "x", "..", "y")])
        check(not err.startswith(OK), "a `..` target is refused", err)

        # Garbage lines: an answer each (base64 of a pickled text), and the worker lives on.
        for bad in [b"!!!notbase64", base64.b64encode(b"not a pickle"), base64.b64encode(pickle.dumps({"a": 1})),
                    base64.b64encode(pickle.dumps(["s", [], [], []]))]:
            ans = pickle.loads(base64.b64decode(raw_command(proc, bad)))
            check(isinstance(ans, str) and not ans.startswith(OK), "error answer for %r" % bad[:20], ans)

        # Other pickle protocols (2 as Python 2 clients write, 3, 5) and bytes paths.
        for proto, path in [(2, da), (3, da.encode()), (5, da)]:
            obj = base64.b64encode(pickle.dumps([sig, [], [path]], protocol=proto))
            ans = pickle.loads(base64.b64decode(raw_command(proc, obj)))
            check(ans == OK, "pickle protocol %d, %s path" % (proto, type(path).__name__), ans)

        code, err = finish(proc)
        check(code == 0, "exit 0 at end of input", (code, err))
        check("larder: worker stats:" in err and "1 writes" in err, "WAFCACHE_STATS prints stats", err)


# --- background uploads ----------------------------------------------------------------------


def stats_of(err):
    """(writes, failed uploads, abandoned uploads) from the worker's stats line."""
    m = re.search(r"worker stats: .* (\d+) writes", err)
    check(m is not None, "stats line printed", err)
    writes = int(m.group(1))
    m = re.search(r"(\d+) failed and (\d+) abandoned uploads", err)
    failed, abandoned = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return writes, failed, abandoned


def all_or_nothing(larder, tmp, tasks, tag):
    """Fetch every task with a plain worker: each is a hit with the right bytes, or a clean miss.
    Returns the number of hits."""
    proc = start([larder, "worker", "--protocol", "wafcache"], larder_env(tmp))
    hits = 0
    for sig, files in tasks:
        dests = [os.path.join(tmp, tag, sig, str(i)) for i in range(len(files))]
        ans = cache_command(proc, sig, [], dests)
        if ans == OK:
            hits += 1
            for (_, data), d in zip(files, dests):
                if read(d) != data:
                    raise AssertionError("%s: restored bytes differ for %s" % (tag, sig))
        elif any(os.path.exists(d) for d in dests):
            raise AssertionError("%s: a miss wrote files for %s" % (tag, sig))
    code, err = finish(proc)
    check(code == 0, "%s: fetching worker exits 0" % tag, err)
    return hits


def async_checks(larder):
    with tempfile.TemporaryDirectory(prefix="larder-driver-") as tmp:
        def make_tasks(prefix, n, big):
            tasks = []
            for t in range(n):
                files = []
                for i, size in enumerate([64, big]):
                    p = write(os.path.join(tmp, "src", prefix, "%d.%d" % (t, i)), os.urandom(size))
                    files.append((p, read(p)))
                tasks.append((sig_of("%s-%d" % (prefix, t)), files))
            return tasks

        # Waiting (the default): every put is answered ok at once and stored by exit.
        tasks = make_tasks("wait", 40, 150 * 1024)
        proc = start([larder, "worker", "--protocol", "wafcache", "--upload-workers", "3", "--stats"], larder_env(tmp))
        for sig, files in tasks:
            check(cache_command(proc, sig, [p for p, _ in files], []) == OK, "queued put answers ok")
        code, err = finish(proc)
        check(code == 0, "exit 0 after waiting for uploads", err)
        check(stats_of(err) == (40, 0, 0), "all 40 uploads finished before exit", err)
        check(all_or_nothing(larder, tmp, tasks, "wait") == 40, "every upload is a hit afterwards")

        # JSON says the put was queued.
        proc = start([larder, "worker", "--upload-workers", "1"], larder_env(tmp))
        a = json.loads(raw_command(proc, json.dumps({"op": "put", "key": "q", "files": ["src"], "root": tmp}).encode()))
        check(a.get("ok") is True and a.get("queued") is True, "JSON put answers queued", a)
        code, err = finish(proc)
        check(code == 0, "exit 0", err)

        # --no-wait: exit at once; what was not uploaded is abandoned and said so, and no entry
        # is half there.
        tasks = make_tasks("nowait", 40, 400 * 1024)
        proc = start([larder, "worker", "--protocol", "wafcache", "--upload-workers", "1", "--no-wait", "--stats"],
                     larder_env(tmp))
        for sig, files in tasks:
            check(cache_command(proc, sig, [p for p, _ in files], []) == OK, "queued put answers ok")
        code, err = finish(proc)
        check(code == 0, "--no-wait exits 0", err)
        writes, failed, abandoned = stats_of(err)
        check(writes + failed + abandoned == 40 and failed == 0, "every upload finished or was abandoned (%d written, %d abandoned)" % (writes, abandoned), err)
        check(abandoned == 0 or "abandoned %d background uploads" % abandoned in err, "abandoned uploads are counted", err)
        hits = all_or_nothing(larder, tmp, tasks, "nowait")
        check(hits >= writes, "finished uploads are hits", (hits, writes))

        # A failed upload (its file deleted before the upload read it) is a warning, never an
        # error answer or exit status.
        tasks = make_tasks("fail", 30, 400 * 1024)
        proc = start([larder, "worker", "--protocol", "wafcache", "--upload-workers", "1", "--stats"], larder_env(tmp))
        for sig, files in tasks:
            check(cache_command(proc, sig, [p for p, _ in files], []) == OK, "queued put answers ok")
            os.remove(files[1][0])
        code, err = finish(proc)
        check(code == 0, "exit 0 although uploads failed", err)
        writes, failed, abandoned = stats_of(err)
        check(writes + failed == 30 and abandoned == 0, "every upload finished or failed (%d written, %d failed)" % (writes, failed), err)
        check(failed == 0 or "background upload failed" in err, "failures are warned about", err)
        check(all_or_nothing(larder, tmp, tasks, "fail") == writes, "only finished uploads are hits")


# --- the seed's worker and larder's, side by side ------------------------------------------


def stream(tmp):
    """The request stream: (sig, files_from, files_to) with absolute paths below tmp, and the
    files each put reads, created before the run (never modified: the seed hard-links them)."""
    srcs = {}

    def src(name, data):
        srcs[os.path.join(tmp, "src", name)] = data
        return os.path.join(tmp, "src", name)

    big = bytes(range(256)) * 1200
    s1, s2, s3, s4, s5 = (sig_of(n) for n in ("one", "two", "three", "four", "five"))
    out = lambda *p: os.path.join(tmp, "OUT", *p)  # noqa: E731 (replaced per worker)
    reqs = [
        (s1, [], [out("1", "a.o")]),
        (s1, [src("a.o", b"aaa\n"), src("b.o", b"bbb\n")], []),
        (s1, [], [out("2", "a.o"), out("2", "deep", "er", "b.o")]),
        (s1, [], [out("3", "a.o")]),
        (s1, [], [out("4", "a"), out("4", "b"), out("4", "c")]),
        (s2, [src("missing.o", None)], []),
        (s2, [], [out("5", "x")]),
        (s1, [], []),
        (s3, [src("big.bin", big)], []),
        (s3, [], [out("6", "big.bin")]),
        (s1, [src("a2.o", b"second version\n")], []),
        (s1, [], [out("7", "a.o")]),
        (s4, [src("e.o", b"")], []),
        (s4, [], [out("8", "e.o")]),
        # The seed hard-links the symlink itself: a get restores the link.
        (s5, [src("link.so", ("link", "big.bin"))], []),
        (s5, [], [out("9", "link.so")]),
    ]
    return srcs, reqs


def run_stream(cmd, env, tmp, tag):
    srcs, reqs = stream(tmp)
    for path, data in srcs.items():
        if isinstance(data, tuple):
            if not os.path.lexists(path):
                os.symlink(data[1], path)
        elif data is not None and not os.path.exists(path):
            write(path, data)
    proc = start(cmd, env)
    results = []
    for sig, files_from, files_to in reqs:
        files_to = [p.replace(os.sep + "OUT" + os.sep, os.sep + tag + os.sep) for p in files_to]
        ans = cache_command(proc, sig, files_from, files_to)
        got = []
        for p in files_to:
            if os.path.islink(p):
                got.append("symlink to %s" % os.readlink(p))
            else:
                got.append(hashlib.sha256(read(p)).hexdigest() if os.path.exists(p) else None)
        results.append((ans, got))
    code, err = finish(proc)
    return results, code, err


def compare(larder, seed):
    with tempfile.TemporaryDirectory(prefix="larder-compare-") as tmp:
        with open(seed) as f:
            source = f.read()
        env = larder_env(tmp)
        env["WAFCACHE"] = os.path.join(tmp, "seedcache")
        # As wafcache.py's get_process() starts its workers.
        seed_results, seed_code, seed_err = run_stream([sys.executable, "-c", source], env, tmp, "seed")
        larder_results, code, err = run_stream([larder, "worker", "--protocol", "wafcache"], larder_env(tmp), tmp, "larder")
        check(code == 0, "larder exits 0", err)
        # The seed exits 1 when its input ends ("parent process probably ended").
        check(seed_code == 1, "the seed worker ran to the end of its input", (seed_code, seed_err))
        check(len(seed_results) == len(larder_results), "same number of answers")
        for i, ((s_ans, s_files), (l_ans, l_files)) in enumerate(zip(seed_results, larder_results)):
            check(isinstance(l_ans, str), "request %d: larder answers a str" % i, repr(l_ans))
            check(s_ans.startswith(OK) == l_ans.startswith(OK),
                  "request %d: both %s" % (i, "ok" if s_ans.startswith(OK) else "fail"),
                  "seed %r, larder %r" % (s_ans[-300:], l_ans))
            if s_ans in (OK, "Invalid command"):
                check(s_ans == l_ans, "request %d: same text %r" % (i, s_ans), l_ans)
            if s_ans.startswith(OK):
                check(s_files == l_files, "request %d: same files restored" % i, (s_files, l_files))
            else:
                # The seed may leave the first files of a failed get behind; larder restores all
                # or nothing.
                check(all(f is None for f in l_files), "request %d: larder wrote nothing" % i, l_files)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("json", "wafcache", "async", "compare"):
        sys.stderr.write(__doc__)
        return 2
    mode, larder = argv[1], argv[2]
    print("worker_driver: %s" % mode)
    if mode == "json":
        json_checks(larder)
    elif mode == "wafcache":
        wafcache_checks(larder)
    elif mode == "async":
        async_checks(larder)
    else:
        if len(argv) != 4:
            sys.stderr.write(__doc__)
            return 2
        compare(larder, argv[3])
    print("worker_driver: %s: all checks passed" % mode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
