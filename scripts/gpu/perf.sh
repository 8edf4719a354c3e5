#!/usr/bin/env bash
# Performance of the CUDA executor next to plain PyTorch on the same GPU (Llama-3.1-8B shape,
# dummy weights), on a GPU machine with no Rust: pass the turbine binary built beforehand.
# Usage: scripts/gpu/perf.sh path/to/turbine [--config other.json] [perf.py flags] [-- gpu-bench flags]
set -euo pipefail
turbine="$(realpath "$1")"; shift
here="$(dirname "$(realpath "$0")")"
export PYTHONUNBUFFERED=1 OUT="${OUT:-.}"
source "$here/libs.sh"
python3 "$here/perf.py" --turbine "$turbine" --config "$here/llama-3.1-8b.json" "$@"
