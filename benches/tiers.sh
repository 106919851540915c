#!/usr/bin/env bash
# Tiers, timed as a user meets them (issue 13): a hit served by the local tier in front of a
# `larder serve` (http://) next to a plain filesystem hit, and a remote hit that backfills the
# local tier next to a plain remote hit (--no-local), all in one run with hyperfine.
#
#   bash benches/tiers.sh [LARDER_BINARY] [RUNS]
#
# The task: 16 inputs of 1 MiB and one 64 KiB output (stat cache warm). Before each backfill run
# the local tier is emptied by a trim (not timed). Needs hyperfine.
set -euo pipefail
larder=$(realpath "${1:-target/release/larder}")
runs=${2:-40}
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
hyperfine -N --runs "$runs" --warmup 3 --export-markdown "$work/local.md" \
    -n "fs hit" "$larder --store $work/plain exec --in 'in/*' --out out -- cp payload out" \
    -n "local tier hit in front of http" "$larder --store $url exec --in 'in/*' --out out -- cp payload out" \
    > /dev/null
hyperfine --runs "$runs" --warmup 3 --export-markdown "$work/remote.md" \
    -n "remote hit (--no-local)" "$larder --no-local --store $url $task" \
    -n "remote hit + backfill of an empty local tier" \
    --prepare "$larder --store $XDG_CACHE_HOME/larder trim --max-entries 0" "$larder --store $url $task" \
    > /dev/null
cat "$work/local.md" "$work/remote.md"
