#!/usr/bin/env python3
"""`larder serve` against nginx, same machine, same run, same files.

usage: python3 benches/server_vs_nginx.py [--larder target/release/larder] [--quick]

Measures, for both servers on free loopback ports:
  - GET of 1 KiB values with keep-alive at 64 connections (wrk, each thread cycling through
    1,000 keys: ccache values `/ccache/<key>` on larder, static files on nginx);
  - GET and PUT of 100 MiB (curl, page cache warm; larder PUT goes to its WebDAV tree,
    nginx PUT to `dav_methods PUT`: both write the whole body to disk);
and for larder alone the peak RSS (VmHWM) while a 4 GiB upload streams in.

The same resources on both sides: nginx runs 2 worker processes (`worker_processes 2`), larder
serve its connections on one runtime thread per CPU (2 on the 2-core machine); the same wrk command (`-t2 -c64`, not
pinned to a CPU, as neither server is) loads each in turn, so the servers and wrk share the
machine's cores the same way.

Prints a table with larder/nginx ratios; only same-run ratios mean anything on a shared
2-core machine. Needs nginx (Debian: nginx-light), wrk and curl.
"""
import argparse, http.client, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_port  # noqa: E402
import benchlib  # noqa: E402

KEYS = 1000


def start_nginx(root, tmp):
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    # As root, nginx's workers would switch to an unprivileged user that cannot read our
    # temporary directory: keep them as root (a loopback benchmark only).
    user = "user root;" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write("""
%(user)s
worker_processes 2;
daemon off;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path %(tmp)s/body;
  client_max_body_size 0;
  proxy_temp_path %(tmp)s/proxy; fastcgi_temp_path %(tmp)s/fcgi;
  uwsgi_temp_path %(tmp)s/uwsgi; scgi_temp_path %(tmp)s/scgi;
  server {
    listen 127.0.0.1:%(port)d;
    root %(root)s;
    location / { dav_methods PUT; create_full_put_path on; }
  }
}
""" % {"tmp": tmp, "port": port, "root": root, "user": user})
    # A process group of its own: if nginx ignores its stop signal, the group (master and
    # workers) is killed, never the master alone (its workers would run on under init).
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_port(port)
    return proc, "http://127.0.0.1:%d" % port


def start_larder(larder, tmp):
    port = free_port()
    proc = subprocess.Popen([larder, "serve", "--dir", os.path.join(tmp, "larder-cache"),
                             "--listen", "127.0.0.1:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, LARDER_LOG="warn"))
    wait_port(port)
    return proc, "http://127.0.0.1:%d" % port


def wrk(url_base, paths, seconds, tmp):
    script = os.path.join(tmp, "paths.lua")
    with open(script, "w") as f:
        f.write("paths = {%s}\n" % ",".join('"%s"' % p for p in paths))
        f.write("counter = 0\nrequest = function()\n  counter = counter + 1\n"
                "  return wrk.format('GET', paths[(counter %% %d) + 1])\nend\n" % len(paths))
    out = subprocess.run(["wrk", "-t2", "-c64", "-d%ds" % seconds, "-s", script, url_base],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit("wrk saw errors against %s:\n%s" % (url_base, out))
    return float(m.group(1))


def curl_get(url, reps):
    best = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)
        best.append(time.perf_counter() - t)
    return sorted(best)[len(best) // 2]


def curl_put(url, path, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-T", path, url], check=True)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def stream_upload(base, path, size):
    """PUT `size` bytes generated on the fly (never whole in memory or on disk here)."""
    host, port = base[len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    conn.putrequest("PUT", path)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    chunk = os.urandom(1 << 20)
    sent = 0
    while sent < size:
        n = min(len(chunk), size - sent)
        conn.send(chunk[:n])
        sent += n
    status = conn.getresponse().status
    conn.close()
    return status


def write_results(args, rows, big, peak_kib, seconds, reps):
    """server-vs-nginx.result.json: each row against its target, and the upload's peak RSS."""
    units = {"req/s": "{:,.0f} req/s", "MB/s": "{:,.0f} MB/s"}
    table = []
    for name, l, n, target in rows:
        unit = name[name.rindex("(") + 1:-1]
        what = name[:name.rindex("(")].strip()
        fmt = units.get(unit, "{:.1f} " + unit)
        table.append(benchlib.ratio_row(
            what, fmt.format(l), "nginx, " + fmt.format(n), l / n, "≥ %.1f×" % target,
            l / n >= target, headline=what.startswith("GET 100")))
    table.append(benchlib.ratio_row(
        "peak RSS during a %d MiB upload" % (big >> 20), "%.1f MiB" % (peak_kib / 1024), "", None,
        "< 64 MiB", peak_kib / 1024 < 64))
    benchlib.write_result(args.out, "server-vs-nginx", table,
                          "wrk -t2 -c64 for %d s; 100 MiB by curl, median of %d" % (seconds, reps))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--larder", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "larder"))
    ap.add_argument("--quick", action="store_true", help="short runs, 256 MiB instead of 4 GiB")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--out", help="write server-vs-nginx.result.json (the BENCHMARKS.md schema) here")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "curl"):
        if not shutil.which(tool):
            sys.exit("%s is not installed (apt-get install nginx-light wrk curl)" % tool)
    seconds, reps, big = (3, 3, 256 << 20) if args.quick else (10, 7, 4 << 30)
    tmp = tempfile.mkdtemp(prefix="larder-vs-nginx-")
    root = os.path.join(tmp, "www")
    os.makedirs(os.path.join(root, "v"))
    procs = []
    try:
        nginx, nginx_url = start_nginx(root, tmp)
        # SIGQUIT: nginx's graceful stop (`nginx -s quit`), the master waits for its workers.
        procs.append((nginx, signal.SIGQUIT, True))
        larder, larder_url = start_larder(args.larder, tmp)
        procs.append((larder, signal.SIGTERM, False))
        # The same 1,000 values of 1 KiB on both.
        keys = ["%040x" % (i * 7919 + 1) for i in range(KEYS)]
        for k in keys:
            data = os.urandom(1024)
            with open(os.path.join(root, "v", k), "wb") as f:
                f.write(data)
        body_dir = os.path.join(tmp, "bodies")
        os.makedirs(body_dir)
        for k in keys:
            subprocess.run(["curl", "-sf", "-o", "/dev/null", "-T", os.path.join(root, "v", k),
                            "%s/ccache/%s" % (larder_url, k)], check=True)
        big_file = os.path.join(tmp, "big.bin")
        with open(big_file, "wb") as f:
            for _ in range(100):
                f.write(os.urandom(1 << 20))
        shutil.copy(big_file, os.path.join(root, "big.bin"))
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-T", big_file,
                        larder_url + "/dav/big.bin"], check=True)
        rows = []
        # Warm both, then alternate.
        wrk(nginx_url, ["/v/" + k for k in keys], 1, tmp)
        wrk(larder_url, ["/ccache/" + k for k in keys], 1, tmp)
        n_rps = wrk(nginx_url, ["/v/" + k for k in keys], seconds, tmp)
        l_rps = wrk(larder_url, ["/ccache/" + k for k in keys], seconds, tmp)
        rows.append(("GET 1 KiB, 64 conns (req/s)", l_rps, n_rps, 0.9))
        mb = 100 * (1 << 20) / 1e6
        n_get = mb / curl_get(nginx_url + "/big.bin", reps)
        l_get = mb / curl_get(larder_url + "/dav/big.bin", reps)
        rows.append(("GET 100 MiB (MB/s)", l_get, n_get, 0.9))
        n_put = mb / curl_put(nginx_url + "/put.bin", big_file, reps)
        l_put = mb / curl_put(larder_url + "/dav/put.bin", big_file, reps)
        rows.append(("PUT 100 MiB (MB/s)", l_put, n_put, 0.9))
        before = hwm_kib(larder.pid)
        t = time.perf_counter()
        status = stream_upload(larder_url, "/dav/huge.bin", big)
        secs = time.perf_counter() - t
        peak = hwm_kib(larder.pid)
        print("%-32s %12s %12s %8s %8s" % ("", "larder", "nginx", "ratio", "target"))
        for name, l, n, target in rows:
            print("%-32s %12.0f %12.0f %7.2fx %7.1fx" % (name, l, n, l / n, target))
        print("larder peak RSS (VmHWM) while a %d MiB upload streams in: %.1f MiB "
              "(before: %.1f MiB; status %d, %.0f MB/s) - target < 64 MiB"
              % (big >> 20, peak / 1024, before / 1024, status, big / 1e6 / secs))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": [{"name": r[0], "larder": r[1], "nginx": r[2]} for r in rows],
                           "upload_bytes": big, "peak_rss_kib": peak, "upload_status": status}, f,
                          indent=1)
        if args.out:
            write_results(args, rows, big, peak, seconds, reps)
    finally:
        for p, stop, own_group in procs:
            p.send_signal(stop)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                if own_group:
                    os.killpg(p.pid, signal.SIGKILL)
                else:
                    p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
