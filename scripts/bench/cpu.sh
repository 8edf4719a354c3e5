#!/usr/bin/env bash
# CPU executor against llama.cpp on the default model, side by side in one run
# (docs/benchmarks.md, "CPU executor"): single-stream decode tok/s, prefill tok/s of a 1k-token
# prompt, our aggregate decode tok/s at 8 and 32 streams, and peak RSS of `turbine serve`.
# llama.cpp runs through llama-cpp-python (scripts/reference/llama_cpp_bench.py), 2 threads.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
cargo build --release -p turbine >&2
bin="$CARGO_TARGET_DIR/release/turbine"
model="SmolLM2-135M-Instruct"

echo "## llama.cpp"
"$TURBINE_CACHE/venv/bin/python" scripts/reference/llama_cpp_bench.py

echo "## turbine"
out="$(mktemp)"
"$bin" serve --port 0 >"$out" 2>/dev/null &
pid=$!
for _ in $(seq 600); do grep -q serving "$out" && break; sleep 0.1; done
url="$(sed -n 's/.* at \(http:[^ ]*\)\/v1$/\1/p' "$out")"
python3 - "$url" "$model" <<'PY'
import json, statistics, sys, time, urllib.request
url, model = sys.argv[1], sys.argv[2]
def complete(prompt, max_tokens):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"content-type": "application/json"})
    start = time.perf_counter()
    usage = json.load(urllib.request.urlopen(req))["usage"]
    return time.perf_counter() - start, usage
# Decode: 129 tokens minus 1 token, so the prompt and first token cancel out.
decode = []
for i in range(3):
    long, _ = complete(f"Story {i}: once upon a time", 129)
    short, _ = complete(f"Story {i}: once upon a time", 1)
    decode.append(128 / (long - short))
prefill = []
for i in range(3):
    words = " ".join(f"w{(i * 7919 + j) % 5000}" for j in range(220))
    t, usage = complete(words, 1)
    prefill.append(usage["prompt_tokens"] / t)
print(json.dumps({"decode_tok_s": statistics.median(decode), "decode_runs": decode,
                  "prefill_tok_s": statistics.median(prefill), "prefill_runs": prefill,
                  "prefill_prompt_tokens": usage["prompt_tokens"]}))
PY
for c in 8 32; do
  echo "### aggregate decode, $c streams"
  "$bin" bench --url "$url" --concurrency "$c" --requests $((c * 2)) --input-len 16 --output-len 128 \
    2>/dev/null | grep '^throughput'
done
echo "peak RSS of turbine serve: $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status") MiB"
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -f "$out"
