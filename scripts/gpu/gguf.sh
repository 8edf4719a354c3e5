#!/usr/bin/env bash
# GGUF weights on the GPU: the CUDA executor against the CPU executor on a small random Llama
# GGUF holding every quantized type the loader reads (gguf.py says what is checked). On a GPU
# machine with no Rust: pass the turbine binary built beforehand. JSON goes to $OUT (or .).
# Usage: scripts/gpu/gguf.sh path/to/turbine [gguf.py flags]
set -euo pipefail
turbine="$(realpath "$1")"; shift
here="$(dirname "$(realpath "$0")")"
export PYTHONUNBUFFERED=1 OUT="${OUT:-.}"
source "$here/libs.sh"
python3 "$here/gguf.py" --turbine "$turbine" "$@"
