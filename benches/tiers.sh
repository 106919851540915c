#!/usr/bin/env bash
# Tiers, timed as a user meets them (issue 13): a hit served by the local tier in front of a
# `larder serve` (http://) next to a plain filesystem hit, and a remote hit that backfills the
# local tier next to a plain remote hit (--no-local), all in one run with hyperfine.
#
#   bash benches/tiers.sh [LARDER_BINARY] [RUNS] [OUT_DIR]
#
# With OUT_DIR, also writes OUT_DIR/tiers.result.json (the schema `cargo xtask bench` renders,
# see benches/benchlib.py).
# The task: 16 inputs of 1 MiB and one 64 KiB output (stat cache warm). Before each backfill run
# the local tier is emptied by a trim (not timed). Needs hyperfine.
set -euo pipefail
larder=$(realpath "${1:-target/release/larder}")
runs=${2:-40}
out=${3:-}
[ -n "$out" ] && out=$(realpath "$out")
export BENCH_T0=$(date +%s) BENCH_LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
benchlib=$(realpath "$(dirname "$0")/benchlib.py")
work=$(mktemp -d /tmp/larder-tiers.XXXXXX)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
mkdir in
for i in $(seq 0 15); do head -c 1048576 /dev/urandom > "in/f$i"; done
head -c 65536 /dev/urandom > payload
sleep 3   # the stat cache does not trust files changed within 2 s
export HOME=$work/home XDG_CACHE_HOME=$work/home/.cache
"$larder" serve --dir "$work/server" --listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" &
server_pid=$!
for _ in $(seq 50); do grep -q "serving" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.* on \(http:[^ ]*\)$/\1/p' "$work/serve.out")
task="exec --in 'in/*' --out out -- cp payload out"
# Fill every cache once: plain fs, local in front of the server, the server alone.
eval "$larder --store $work/plain $task"
eval "$larder --store $url $task"
hyperfine -N --runs "$runs" --warmup 3 --export-markdown "$work/local.md" --export-json "$work/local.json" \
    -n "fs hit" "$larder --store $work/plain exec --in 'in/*' --out out -- cp payload out" \
    -n "local tier hit in front of http" "$larder --store $url exec --in 'in/*' --out out -- cp payload out" \
    > /dev/null
hyperfine --runs "$runs" --warmup 3 --export-markdown "$work/remote.md" --export-json "$work/remote.json" \
    -n "remote hit (--no-local)" "$larder --no-local --store $url $task" \
    -n "remote hit + backfill of an empty local tier" \
    --prepare "$larder --store $XDG_CACHE_HOME/larder trim --max-entries 0" "$larder --store $url $task" \
    > /dev/null
cat "$work/local.md" "$work/remote.md"
[ -z "$out" ] && exit 0
python3 - "$work/local.json" "$work/remote.json" "$runs" <<'EOF' | python3 "$benchlib" result "$out" tiers "hyperfine, means of $runs runs; 16 inputs of 1 MiB, a 64 KiB output"
import json, sys
r = {}
for f in sys.argv[1:3]:
    r.update({x["command"]: x for x in json.load(open(f))["results"]})
ms = lambda x: "%.1f ms" % (x["mean"] * 1e3)  # noqa: E731
fs, local = r["fs hit"], r["local tier hit in front of http"]
plain, back = r["remote hit (--no-local)"], r["remote hit + backfill of an empty local tier"]
speed = fs["mean"] / local["mean"]
time = back["mean"] / plain["mean"]
# The ratio's spread from the two means' relative standard deviations.
err = time * ((back["stddev"] / back["mean"]) ** 2 + (plain["stddev"] / plain["mean"]) ** 2) ** 0.5
rows = [
    {"what": "hit from the local tier in front of `http://`", "larder": ms(local),
     "baseline": "plain fs hit, " + ms(fs), "ratio": speed, "ratio_text": "%.2f× the speed" % speed,
     "target": "≥ 0.95×", "met": speed >= 0.95, "headline": True},
    {"what": "remote hit that backfills an emptied local tier", "larder": ms(back),
     "baseline": "plain remote hit (`--no-local`), " + ms(plain), "ratio": time,
     "ratio_text": "%.2f× the time (± %.2f)" % (time, err),
     "target": "≤ 1.2× the time", "met": time <= 1.2},
]
print(json.dumps({"rows": rows, "command": "bash benches/tiers.sh target/release/larder " + sys.argv[3]}))
EOF
