#!/usr/bin/env bash
# Tunes the few-token GEMVs' layout (TURBINE_CUDA_GEMV, see GemvLayout in gemv.rs): decode steps
# of 1, 2 and 4 tokens at context 1k on the Llama-3.1-8B shape, one gpu-bench process per layout,
# the defaults first in each of ROUNDS rounds so drift shows. One line per run: the layout as
# compiled (shared memory may leave fewer tokens than asked), then the median step per batch.
# The defaults' set varies the ring depths around the defaults, one or two blocks a
# multiprocessor (silu=2,tokens=1 and the add kernels up to 6 stages run two), and the tile width.
# Usage: [ROUNDS=2] scripts/gpu/gemv_sweep.sh path/to/turbine [LAYOUT ...]
set -euo pipefail
turbine="$(realpath "$1")"; shift
here="$(dirname "$(realpath "$0")")"
source "$here/libs.sh"
layouts=("$@")
[ ${#layouts[@]} -gt 0 ] || layouts=(
  "silu=4" "silu=2,tokens=1" "silu=6,tokens=1" "add=5" "add=7" "store=8"
  "kt=1024,store=6,silu=2,add=3" "kt=256,store=20,silu=10,add=12"
)
for round in $(seq "${ROUNDS:-2}"); do
  for layout in "" "${layouts[@]}"; do
    TURBINE_CUDA_GEMV="$layout" "$turbine" gpu-bench --model "$here/llama-3.1-8b.json" \
      --prefill 0 --batch 1,2,4 --context 1024 --steps 40 2>&1 |
      python3 -c "
import json, sys
lines = sys.stdin.read().splitlines()
rows = [json.loads(l) for l in lines if l.startswith('{')]
setup = next((r for r in rows if r['kind'] == 'setup'), None)
if setup is None:
    sys.exit('round $round  %-42s failed: %s' % ('$layout', lines[-1] if lines else 'no output'))
steps = '  '.join('b%d %.3f' % (r['batch'], r['step_ms']) for r in rows
                  if r['kind'] == 'decode' and 'step_ms' in r)
print('round $round  %-42s %s ms' % (setup['gemv'] or 'cuBLASLt', steps))" || true
  done
done
