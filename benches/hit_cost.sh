#!/usr/bin/env bash
# The CPU cost of one cache hit, as a user pays it: `larder exec` of a task with 64 input files
# (1 GiB, stat cache warm) and one small output, next to ccache's own direct-mode hit of a small
# C file, in the same run. Needs a release build of larder (cargo build --release -p larder-cli),
# ccache, perf (linux-perf) and strace.
#
#   bash benches/hit_cost.sh [LARDER_BINARY] [RUNS]
#
# Prints perf's task-clock and elapsed time per command (mean of RUNS), and the fsync and
# thread-start counts of one larder hit.
set -euo pipefail
larder=${1:-target/release/larder}
runs=${2:-40}
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
measure() {
    perf stat -r "$runs" -e task-clock "$@" 2>&1 >/dev/null |
        awk '/task-clock/ {cpu=$1} /elapsed/ {wall=$1*1000} END {printf "%.2f ms CPU, %.2f ms elapsed\n", cpu, wall}'
}
for round in 1 2; do
    echo "round $round"
    echo "  larder exec hit (64 inputs, 1 GiB): $(measure "$larder" "${task[@]}")"
    echo "  ccache direct-mode hit:             $(measure ccache cc -c x.c -o x.o)"
done
strace -f -c -e trace=fsync,fdatasync,clone,clone3 -o "$work/strace" "$larder" "${task[@]}"
echo "larder hit syscalls (strace -c):"
for call in fsync fdatasync clone clone3; do
    n=$(awk -v c="$call" '$NF == c {print $(NF-1) - 0}' "$work/strace")
    echo "  $call: ${n:-0}"
done
