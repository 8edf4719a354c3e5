#!/usr/bin/env bash
# KV-aware routing on the Mooncake conversation trace (docs/benchmarks.md, "Router"):
# 8 mock workers (Llama-3.1-8B bf16 on H100 timing, real time), the trace scaled to 16-token
# blocks (lengths / 32) and replayed at `speed` times its pace, once per routing policy, live
# (turbine serve + turbine bench over HTTP) and in the simulator (turbine sim) on the same
# workload. Prints TTFT, ITL, throughput, prefix hit rate (from the workers' own counters) and
# load spread (the busiest worker against the mean) for each.
# Usage: scripts/bench/router.sh [speed, default 200] [policies, default "kv round-robin random"]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. scripts/bench/serve.sh
speed="${1:-200}"
policies="${2:-kv round-robin random}"
cargo build --release -p turbine >&2
bin="$CARGO_TARGET_DIR/release/turbine"
trace="${TURBINE_TRACE:-../shared/traces/mooncake_conversation.jsonl}"
workload=(--workload trace --trace "$trace" --trace-block-size 16 --speed "$speed")
engine=(--workers 8 --num-blocks 16384)
out="$(mktemp -d)"

for policy in $policies; do
  echo "## $policy, live: turbine serve --engine mock ${engine[*]} --router $policy"
  start --engine mock "${engine[@]}" --router "$policy"
  "$bin" bench --url "$url" "${workload[@]}" --no-progress --json "$out/live-$policy.json" 2>/dev/null \
    | grep -E '^(load|requests|throughput|ttft|itl) '
  curl -s "$url/metrics" >"$out/metrics-$policy.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$out/metrics-$policy.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def per_worker(name):
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^' + name + r'\{worker="(\d+)"\} (\S+)$', text, re.M)}
hits = per_worker("turbine_worker_prefix_cache_hit_tokens_total")
queried = per_worker("turbine_worker_prefix_cache_queried_tokens_total")
computed = {w: queried[w] - hits.get(w, 0) for w in queried}
rate = sum(hits.values()) / max(sum(queried.values()), 1)
def spread(values):
    values = list(values)
    return max(values) / (sum(values) / len(values))
print(f"prefix hit rate {100 * rate:.1f}% of prompt tokens; busiest worker: "
      f"{spread(queried.values()):.2f}x the mean prompt tokens, "
      f"{spread(computed.values()):.2f}x the mean prefill computed")
PY
  echo "## $policy, simulated: turbine sim ${engine[*]} --router $policy"
  "$bin" sim "${engine[@]}" --router "$policy" "${workload[@]}" 2>/dev/null \
    | grep -E '^(load|requests|throughput|ttft|itl|prefix|simulated) |^load:'
done
rm -rf "$out"
