#!/usr/bin/env bash
# Load generator overhead (docs/benchmarks.md, "Load generator"): the highest request rate
# `turbine bench` itself sustains against the zero-delay echo engine. Open loop, Poisson arrivals at
# rising rates, 16-token prompts and 16 output tokens; a rate counts as sustained when the achieved
# rate is within 5% of it and the p99 send lag (how late requests leave against their schedule)
# stays under 10 ms. Side by side in the same run: the closed loop at concurrency 64, the most
# requests/s generator and server complete together on these cores.
# Usage: scripts/bench/overhead.sh [seconds per rate, default 5] [rates, default "500 1000 2000 4000 8000"]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. scripts/bench/serve.sh
secs="${1:-5}"
rates="${2:-500 1000 2000 4000 8000}"
cargo build --release -p turbine >&2
bin="$CARGO_TARGET_DIR/release/turbine"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

start --engine echo
flags=(--url "$url" --input-len 16 --output-len 16 --no-progress)
"$bin" bench "${flags[@]}" --concurrency 64 --warmup 64 --requests $((2000 * secs)) \
  --json "$dir/closed.json" >/dev/null 2>&1
for rate in $rates; do
  "$bin" bench "${flags[@]}" --rate "$rate" --requests $((rate * secs)) \
    --json "$dir/rate-$rate.json" >/dev/null 2>&1
done
kill "$pid"; wait "$pid" 2>/dev/null || true

python3 - "$dir" $rates <<'PY'
import json, sys
d, rates = sys.argv[1], [int(r) for r in sys.argv[2:]]
closed = json.load(open(f"{d}/closed.json"))
print(f"closed loop, concurrency 64: {closed['requests_per_second']:.0f} req/s, "
      f"TTFT p50 {closed['ttft_ms']['p50']:.2f} ms, errors {closed['errors']}")
print("| target req/s | achieved req/s | achieved/target | send lag p50 | send lag p99 | TTFT p50 | TTFT p99 | errors | sustained |")
print("|---|---|---|---|---|---|---|---|---|")
best = None
for rate in rates:
    r = json.load(open(f"{d}/rate-{rate}.json"))
    ok = r["requests_per_second"] >= 0.95 * rate and r["send_lag_ms"]["p99"] < 10 and r["errors"] == 0
    best = rate if ok else best
    print(f"| {rate} | {r['requests_per_second']:.0f} | {r['requests_per_second'] / rate:.3f} "
          f"| {r['send_lag_ms']['p50']:.3f} ms | {r['send_lag_ms']['p99']:.3f} ms "
          f"| {r['ttft_ms']['p50']:.2f} ms | {r['ttft_ms']['p99']:.2f} ms | {r['errors']} | {'yes' if ok else 'no'} |")
print(f"highest sustained rate: {best} req/s" if best else "no rate sustained")
PY
