#!/usr/bin/env bash
# Distributed mode (docs/benchmarks.md, "Split deployment"):
#   1. request-plane overhead: streamed tokens/s through one frontend and 2 echo workers in
#      separate processes (HTTP/2 request plane, etcd, NATS) against the same in one process;
#   2. failover: 3 mock workers and a frontend under a closed loop of 64 long streams, one worker
#      killed with SIGKILL: time from losing the worker to the next token of each moved request
#      (turbine_frontend_migration_seconds), and whether every request completed.
# Usage: scripts/bench/cluster.sh [requests for part 1, default 4000]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. scripts/bench/serve.sh
requests="${1:-4000}"
cargo build --release -p turbine >&2
scripts/infra.sh install >&2
bin="$CARGO_TARGET_DIR/release/turbine"
dir="$(mktemp -d)"
export TURBINE_ETCD_PORT=23790 TURBINE_NATS_PORT=42220
scripts/infra.sh start "$dir" >/dev/null
cluster=(--discovery "etcd://127.0.0.1:$TURBINE_ETCD_PORT" --events "nats://127.0.0.1:$TURBINE_NATS_PORT")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/infra.sh stop "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

# `launch NAME ARGS...`: starts `turbine ARGS...` in the background, waits for its first line.
launch() {
  local name="$1"; shift
  "$bin" "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
  pids+=($!)
  disown
  for _ in $(seq 300); do [ -s "$dir/$name.out" ] && break; sleep 0.1; done
  head -1 "$dir/$name.out"
}

load=(--workload synthetic --input-len 128 --output-len 128 --concurrency 64 --warmup 64 --no-progress)
echo "## request-plane overhead: echo engine, 2 workers, $requests requests, concurrency 64"
echo "### one process: turbine serve --engine echo --workers 2"
start --engine echo --workers 2
"$bin" bench --url "$url" "${load[@]}" --requests "$requests" 2>/dev/null | grep -E '^(throughput|ttft|itl) '
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "### separate processes: 2 x turbine worker --engine echo, turbine frontend"
launch w1 worker --engine echo "${cluster[@]}" >/dev/null
launch w2 worker --engine echo "${cluster[@]}" >/dev/null
front="$(launch f1 frontend --port 0 "${cluster[@]}")"
furl="${front#turbine: frontend at }"; furl="${furl%/v1}"
for _ in $(seq 100); do curl -s "$furl/v1/models" | grep -q '"id"' && break; sleep 0.1; done
"$bin" bench --url "$furl" "${load[@]}" --requests "$requests" 2>/dev/null | grep -E '^(throughput|ttft|itl) '
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
pids=()
sleep 4 # the killed workers' leases expire

echo "## failover: 3 mock workers, closed loop of 64 streams of 512 tokens, SIGKILL of one after 3 s"
for i in 1 2 3; do launch "m$i" worker --engine mock --context-length 4096 "${cluster[@]}" >/dev/null; done
victim="${pids[0]}"
front="$(launch f2 frontend --port 0 "${cluster[@]}")"
furl="${front#turbine: frontend at }"; furl="${furl%/v1}"
for _ in $(seq 100); do curl -s "$furl/v1/models" | grep -q '"id"' && break; sleep 0.1; done
( sleep 3; kill -9 "$victim" ) &
"$bin" bench --url "$furl" --workload synthetic --input-len 256 --output-len 512 --concurrency 64 \
  --requests 256 --no-progress 2>/dev/null | grep -E '^(requests|throughput|ttft|itl) '
curl -s "$furl/metrics" >"$dir/metrics.txt"
python3 - "$dir/metrics.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
buckets = [(float(m.group(1)), float(m.group(2))) for m in re.finditer(
    r'^turbine_frontend_migration_seconds_bucket\{[^}]*le="([^"+]+)"[^}]*\} (\S+)$', text, re.M)]
count = sum(float(v) for v in re.findall(r'^turbine_frontend_migration_seconds_count\{[^}]*\} (\S+)$', text, re.M))
total = sum(float(v) for v in re.findall(r'^turbine_frontend_migration_seconds_sum\{[^}]*\} (\S+)$', text, re.M))
def quantile(q):
    # The upper bound of the first bucket holding the q-th request.
    for bound, cumulative in sorted(buckets):
        if cumulative >= q * count:
            return bound
    return float("inf")
if count:
    print(f"moved requests {count:.0f}; loss to next token: mean {1000 * total / count:.1f} ms, "
          f"p50 <= {1000 * quantile(0.5):.1f} ms, p99 <= {1000 * quantile(0.99):.1f} ms (bucket bounds)")
else:
    print("no request was moved")
PY
