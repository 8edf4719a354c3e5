#!/usr/bin/env bash
# The kernels of a `turbine gpu-bench` run's last decode step per row, overlapped as they run
# (each warp records its start and end; profilers serialize kernels instead), summarized by
# timeline.py; the raw lines go to $OUT/timeline.jsonl (or ./timeline.jsonl).
# Usage: scripts/gpu/timeline.sh path/to/turbine [gpu-bench flags]
set -euo pipefail
turbine="$(realpath "$1")"; shift
here="$(dirname "$(realpath "$0")")"
source "$here/libs.sh"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--model "$here/llama-3.1-8b.json" --prefill 0 --batch 1,64 --context 1024 --steps 4)
out="${OUT:-.}/timeline.jsonl"
TURBINE_CUDA_TIMELINE=2000000 "$turbine" gpu-bench "${args[@]}" > "$out"
python3 "$here/timeline.py" < "$out"
