#!/usr/bin/env bash
# Frontend overhead with the echo engine (docs/benchmarks.md, "Frontend"):
#   1. zero-delay echo, closed loop at concurrency 1, 64, 512: streamed tokens/s and TTFT;
#   2. echo with 1 ms between tokens at concurrency 64 (streams stay in flight, as with a real
#      engine): TTFT is then the frontend's added time to first token;
#   3. the chat path's template + tokenize time for a ~4k-token prompt, read from /metrics.
# Usage: scripts/bench/frontend.sh [requests-per-concurrency-unit, default 40]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. scripts/bench/serve.sh
scale="${1:-40}"
cargo build --release -p turbine >&2
bin="$CARGO_TARGET_DIR/release/turbine"

echo "## zero-delay echo, prompt 128 tokens, 128 tokens per request"
start --engine echo
for c in 1 64 512; do
  n=$((c * scale)); [ "$n" -lt 2000 ] && n=2000
  echo "### concurrency $c, $n requests"
  "$bin" bench --url "$url" --concurrency "$c" --requests "$n" --warmup "$c" --input-len 128 --output-len 128 2>/dev/null
done
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "## echo with 1 ms between tokens, concurrency 64 (added TTFT under streaming load)"
start --engine echo --echo-delay-ms 1
"$bin" bench --url "$url" --concurrency 64 --requests $((64 * scale / 4)) --warmup 64 --input-len 128 --output-len 128 2>/dev/null
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "## chat path, ~4k-token prompt: template + tokenize"
start --engine echo
body="$(python3 -c '
import json
words = ("the quick brown fox jumps over the lazy dog while seven wizards quietly "
         "study ancient maps of distant islands ").split()
text = " ".join(words[i % len(words)] for i in range(3600))
print(json.dumps({"model": "SmolLM2-135M-Instruct", "max_tokens": 1,
                  "messages": [{"role": "system", "content": "You are helpful."},
                               {"role": "user", "content": text}]}))')"
for _ in $(seq 200); do
  curl -s -o /dev/null "$url/v1/chat/completions" -H 'content-type: application/json' -d "$body"
done
metrics="$(curl -s "$url/metrics")"
kill "$pid"; wait "$pid" 2>/dev/null || true
python3 - "$metrics" <<'PY'
import re, sys
m = sys.argv[1]
def val(name):
    return float(re.search(r"^" + re.escape(name) + r" (\S+)$", m, re.M).group(1))
count = val('turbine_frontend_preprocess_seconds_count{stage="tokenize"}')
tok = val('turbine_frontend_preprocess_seconds_sum{stage="tokenize"}') / count
tpl = val('turbine_frontend_preprocess_seconds_sum{stage="template"}') / count
tokens = val('turbine_frontend_input_tokens_sum{model="SmolLM2-135M-Instruct"}') / count
print(f"requests {count:.0f}, prompt {tokens:.0f} tokens: template {tpl*1e6:.0f} us, tokenize {tok*1e6:.0f} us, "
      f"chat path {tokens/(tpl+tok)/1e6:.2f} M tokens/s")
PY
