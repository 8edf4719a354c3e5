#!/usr/bin/env bash
# Parity of the CUDA executor with transformers, on a GPU machine with PyTorch and transformers
# installed and no Rust: pass the turbine binary built beforehand. Logs and JSON go to $OUT (or .).
# Usage: scripts/gpu/parity.sh path/to/turbine [parity.py flags]
set -euo pipefail
turbine="$(realpath "$1")"; shift
here="$(dirname "$(realpath "$0")")"
export PYTHONUNBUFFERED=1 OUT="${OUT:-.}"
source "$here/libs.sh"
python3 "$here/parity.py" --turbine "$turbine" "$@"
