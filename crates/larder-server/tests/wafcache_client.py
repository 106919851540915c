"""Drive the seed's own wafcache.py worker (netcache mode) against a larder server.

usage: wafcache_client.py SEED_WAFCACHE_PY BASE_URL

The worker is started exactly as waf starts it (a Python process reading base64 pickles on
stdin) with WAFCACHE=BASE_URL; this script sends a miss, a put of two files (one large enough
to be spooled to disk by the server) and a get into other paths, and checks the bytes.
Prints PASS, or FAIL lines and exits 1.
"""
import base64, hashlib, os, pickle, subprocess, sys, tempfile

seed, base = sys.argv[1], sys.argv[2]
proc = subprocess.Popen([sys.executable, seed], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        env=dict(os.environ, WAFCACHE=base), text=True)
failures = []


def command(sig, files_from, files_to):
    proc.stdin.write(base64.b64encode(pickle.dumps([sig, files_from, files_to])).decode() + "\n")
    proc.stdin.flush()
    return pickle.loads(base64.b64decode(proc.stdout.readline()))


def check(cond, what):
    if not cond:
        failures.append(what)


tmp = tempfile.mkdtemp()
small, large = os.path.join(tmp, "a.o"), os.path.join(tmp, "b.bin")
with open(small, "wb") as f:
    f.write(b"object code\n")
with open(large, "wb") as f:
    f.write(os.urandom(3 << 20))
sig = hashlib.sha256(b"task").hexdigest()
got_small, got_large = os.path.join(tmp, "c.o"), os.path.join(tmp, "d.bin")

check(command(sig, [], [got_small, got_large]) != "ok", "a fresh signature should miss")
check(command(sig, [small, large], [small, large]) == "ok", "put should answer ok")
check(command(sig, [], [got_small, got_large]) == "ok", "get after put should answer ok")
for want, got in ((small, got_small), (large, got_large)):
    check(os.path.exists(got) and open(want, "rb").read() == open(got, "rb").read(),
          "restored %s differs" % os.path.basename(got))
proc.stdin.close()
proc.wait(timeout=30)
if failures:
    for f in failures:
        print("FAIL", f)
    sys.exit(1)
print("PASS")
