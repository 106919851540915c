"""builds.py's figures as rows of the BENCHMARKS.md schema (benchlib.write_result): every client
through larder against the same client's local cache, cold and warm, and against nginx where
the client has an nginx run. Also runnable on a builds.json: `python3 benches/builds_result.py
OUT/builds.json OUT [AREA]`."""
import json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

# A client through larder, by suffix; its local counterpart is the same prefix with one of
# LOCAL, and its nginx counterpart the prefix with "-nginx".
THROUGH_LARDER = ("-larder-http", "-larder-grpc", "-larder", "-helper", "-crsh")
LOCAL = ("-local", "-disk")


def _secs(x):
    return "%.2f s" % x


def rows(results):
    """Rows for every project and client in builds.py's `results` ({project: {client: {"cold":
    s, "warm": s or None, ...}}})."""
    out = []
    for project, clients in results.items():
        for client, r in clients.items():
            suffix = next((s for s in THROUGH_LARDER if client.endswith(s)), None)
            if suffix is None:
                continue
            prefix = client[: -len(suffix)]
            local = next((prefix + s for s in LOCAL if prefix + s in clients), None)
            for phase in ("cold", "warm"):
                if local is None or r.get(phase) is None or not clients[local].get(phase):
                    continue
                t = r[phase] / clients[local][phase]
                out.append(benchlib.ratio_row(
                    "%s: %s %s build (%s)" % (project, client, phase,
                                              "server filled, local cache empty" if phase == "warm"
                                              else "empty caches"),
                    _secs(r[phase]), "%s, %s" % (local, _secs(clients[local][phase])), t,
                    "≤ 1.1× the time", t <= 1.1, ratio_text="%.2f× the time" % t,
                    headline=(phase == "cold" and client == "ccache-larder")))
            nginx = prefix + "-nginx"
            if nginx in clients and r.get("cold") and clients[nginx].get("cold"):
                t = r["cold"] / clients[nginx]["cold"]
                # The target is ccache's: its PUTs stall on nginx's delayed ACK. Other clients'
                # rows are a record.
                stalls = client.startswith("ccache")
                out.append(benchlib.ratio_row(
                    "%s: %s cold build against nginx" % (project, client), _secs(r["cold"]),
                    "%s, %s" % (nginx, _secs(clients[nginx]["cold"])), t,
                    "< 1.0× the time" if stalls else "(record)", t < 1.0 if stalls else None,
                    ratio_text="%.2f× the time" % t))
            if nginx in clients and r.get("warm") and clients[nginx].get("warm"):
                t = r["warm"] / clients[nginx]["warm"]
                out.append(benchlib.ratio_row(
                    "%s: %s warm build against nginx" % (project, client), _secs(r["warm"]),
                    "%s, %s" % (nginx, _secs(clients[nginx]["warm"])), t, "(record)",
                    ratio_text="%.2f× the time" % t))
        # What a warm build through a plain HTTP server costs: the client's warm build from nginx
        # against its local cache.
        for client, r in clients.items():
            if not client.endswith("-nginx") or not r.get("warm"):
                continue
            prefix = client[: -len("-nginx")]
            local = next((prefix + s for s in LOCAL if prefix + s in clients), None)
            if local is None or not clients[local].get("warm"):
                continue
            t = r["warm"] / clients[local]["warm"]
            out.append(benchlib.ratio_row(
                "%s: %s warm build (nginx filled, local cache empty)" % (project, client),
                _secs(r["warm"]), "%s, %s" % (local, _secs(clients[local]["warm"])), t,
                "(record: a plain HTTP server)", ratio_text="%.2f× the time" % t))
    return out


def write(out, results, meta, area="builds"):
    """Write `<out>/<area>.result.json` (the chart, `<area>.svg`, beside it when drawn)."""
    projects = ", ".join(results)
    # builds.py draws <area>.svg (build times relative to plain and to the local cache).
    svg = area + ".svg"
    charts = [(svg, "cold and warm build times per client")] if os.path.exists(
        os.path.join(out, svg)) else []
    return benchlib.write_result(out, area, rows(results),
                                 "projects %s, medians of %s builds" % (projects, meta.get("reps")),
                                 charts=charts, command=meta.get("command"))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: builds_result.py OUT/builds.json OUT [AREA]")
    with open(sys.argv[1]) as f:
        data = json.load(f)
    print(write(sys.argv[2], data["results"], data["meta"],
                area=sys.argv[3] if len(sys.argv) == 4 else "builds"))
