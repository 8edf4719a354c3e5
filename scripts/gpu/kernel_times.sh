#!/usr/bin/env bash
# Where a `turbine gpu-bench` run's GPU time goes, by kernel: Nsight Compute times `COUNT` launches
# after the first `SKIP` (defaults: one Llama-3.1-8B-shaped 16k prefill after the warm-up one) with
# the clocks left alone, and kernel_times.py adds them up per kernel name.
# Usage: [SKIP=330] [COUNT=300] scripts/gpu/kernel_times.sh path/to/turbine [gpu-bench flags]
set -euo pipefail
turbine="$(realpath "$1")"; shift
here="$(dirname "$(realpath "$0")")"
source "$here/libs.sh"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--model "$here/llama-3.1-8b.json" --prefill 16384 --batch 1 --context 16 --steps 1)
ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum \
  --launch-skip "${SKIP:-330}" --launch-count "${COUNT:-300}" --csv \
  "$turbine" gpu-bench "${args[@]}" 2>/dev/null | python3 "$here/kernel_times.py"
