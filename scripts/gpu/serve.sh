#!/usr/bin/env bash
# End to end on a GPU machine: `turbine serve --engine cuda` with Llama-3.1-8B-shaped dummy
# weights and a real Llama 3 tokenizer, one completion through the frontend and router, then
# `turbine bench` against it. Usage: scripts/gpu/serve.sh path/to/turbine TOKENIZER_DIR
# (TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json of a Llama 3 model).
set -euo pipefail
turbine="$(realpath "$1")"
tokenizer="$(realpath "$2")"
here="$(dirname "$(realpath "$0")")"
export OUT="${OUT:-.}"
source "$here/libs.sh"
model="$(mktemp -d)/llama31-8b-dummy"
mkdir -p "$model"
cp "$here/llama-3.1-8b.json" "$model/config.json"
cp "$tokenizer"/tokenizer.json "$tokenizer"/tokenizer_config.json "$model/"
port=8123
"$turbine" serve --engine cuda --load-format dummy --model "$model" --port "$port" \
  --model-name llama31-8b-dummy --context-length 8192 > "$OUT/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/v1/models" > /dev/null && break
  kill -0 $server 2>/dev/null || { tail -20 "$OUT/serve.log"; exit 1; }
  sleep 1
done
curl -sS "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
  -d '{"model": "llama31-8b-dummy", "prompt": "The capital of France is", "max_tokens": 16}'
echo
"$turbine" bench --url "http://127.0.0.1:$port" --concurrency 32 --requests 128 \
  --input-len 512 --output-len 128 --tokenizer "$model"
