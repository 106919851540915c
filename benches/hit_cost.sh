#!/usr/bin/env bash
# The CPU cost of one cache hit, as a user pays it: `larder exec` of a task with 64 input files
# (1 GiB, stat cache warm) and one small output, next to ccache's own direct-mode hit of a small
# C file, in the same run. Needs a release build of larder (cargo build --release -p larder-cli),
# ccache, perf (linux-perf) and strace.
#
#   bash benches/hit_cost.sh [LARDER_BINARY] [RUNS] [OUT_DIR]
#
# Prints perf's task-clock and elapsed time per command (mean of RUNS), and the fsync and
# thread-start counts of one larder hit; with OUT_DIR, also writes OUT_DIR/hit-cost.result.json
# (the schema `cargo xtask bench` renders, see benches/benchlib.py).
set -euo pipefail
larder=${1:-target/release/larder}
runs=${2:-40}
out=${3:-}
[ -n "$out" ] && out=$(realpath "$out")
export BENCH_T0=$(date +%s) BENCH_LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
benchlib=$(realpath "$(dirname "$0")/benchlib.py")
larder=$(realpath "$larder")
work=$(mktemp -d /tmp/larder-hit-cost.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir in
for i in $(seq 0 63); do head -c 16777216 /dev/urandom > "in/f$i"; done
echo 'int main(void) { return 0; }' > x.c
# The stat cache does not trust a file hashed within 2 s of its last change (as git's index).
sleep 3
export XDG_CACHE_HOME=$work/cache CCACHE_DIR=$work/ccache
task=(exec --in 'in/*' --out out -- sh -c 'head -c 100 in/f0 > out')
for _ in 1 2 3; do "$larder" "${task[@]}"; done      # miss, then hits: stat cache and page cache warm
for _ in 1 2; do ccache cc -c x.c -o x.o; done         # miss, then a direct-mode hit
# measure NAME COMMAND...: prints "CPU ms, elapsed ms" and appends "NAME CPU ELAPSED" to figures.
measure() {
    local name=$1; shift
    perf stat -r "$runs" -e task-clock "$@" 2>&1 >/dev/null |
        awk -v name="$name" -v figs="$work/figures" '/task-clock/ {cpu=$1} /elapsed/ {wall=$1*1000}
            END {printf "%.2f ms CPU, %.2f ms elapsed\n", cpu, wall; printf "%s %.3f %.3f\n", name, cpu, wall >> figs}'
}
for round in 1 2; do
    echo "round $round"
    echo "  larder exec hit (64 inputs, 1 GiB): $(measure larder "$larder" "${task[@]}")"
    echo "  ccache direct-mode hit:             $(measure ccache ccache cc -c x.c -o x.o)"
done
strace -f -c -e trace=fsync,fdatasync,clone,clone3 -o "$work/strace" "$larder" "${task[@]}"
echo "larder hit syscalls (strace -c):"
for call in fsync fdatasync clone clone3; do
    n=$(awk -v c="$call" '$NF == c {print $(NF-1) - 0}' "$work/strace")
    echo "  $call: ${n:-0}"
    echo "$call ${n:-0}" >> "$work/syscalls"
done
[ -z "$out" ] && exit 0
python3 - "$work/figures" "$work/syscalls" "$runs" <<'EOF' | python3 "$benchlib" result "$out" hit-cost "perf stat -r $runs, two rounds; 64 inputs of 16 MiB, stat cache warm"
import json, sys
figs = {}
for line in open(sys.argv[1]):
    name, cpu, wall = line.split()
    figs.setdefault(name, []).append((float(cpu), float(wall)))
calls = dict(line.split() for line in open(sys.argv[2]))
l, c = figs["larder"], figs["ccache"]
mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
ms = lambda xs: " / ".join("%.2f" % x for x in xs) + " ms"  # noqa: E731
lcpu, ccpu = [x[0] for x in l], [x[0] for x in c]
ratio = mean(ccpu) / mean(lcpu)
fsyncs = int(calls.get("fsync", 0)) + int(calls.get("fdatasync", 0))
rows = [
    {"what": "CPU per hit (task-clock, two rounds)", "larder": ms(lcpu),
     "baseline": "ccache direct-mode hit, " + ms(ccpu), "ratio": ratio,
     "ratio_text": "%.2f× ccache's speed" % ratio, "target": "≤ 3 ms",
     "met": max(lcpu) <= 3.0, "headline": True},
    {"what": "elapsed per hit", "larder": ms([x[1] for x in l]),
     "baseline": "ccache, " + ms([x[1] for x in c]), "ratio": None, "target": "", "met": None},
    {"what": "fsyncs per hit", "larder": str(fsyncs), "baseline": "", "ratio": None,
     "target": "0", "met": fsyncs == 0},
    {"what": "threads started per hit (clone, clone3)",
     "larder": str(int(calls.get("clone", 0)) + int(calls.get("clone3", 0))), "baseline": "",
     "ratio": None, "target": "", "met": None},
]
print(json.dumps({"rows": rows, "command": "bash benches/hit_cost.sh target/release/larder " + sys.argv[3]}))
EOF
