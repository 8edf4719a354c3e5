#!/usr/bin/env bash
# A kernel change that should not change any result, checked on a GPU machine with no Rust: greedy
# tokens and every step's logits of `turbine generate` on a small random Llama (parity.py's
# make_model; head_dim 128 and 4 query heads per KV head, the Hopper prefill kernel's shape;
# prompts of up to 1,500 tokens, many key tiles),
# with the binary's kernels (CUDA graphs on and off) against a reference: another kernel source
# for the same binary, e.g. an earlier commit's (for f in kernels prefill prefill_wgmma gemv
# decode_mma sample; do git show REV:crates/engine/src/executor/cuda/$f.cu; done > old.cu) where
# the host launches those kernels the same way (grids, arguments), or another turbine binary
# where the change is not in the kernels alone. Runs share the timed GEMM choices through the
# cache directory (libs.sh's TURBINE_CUDA_CACHE), so they run the same GEMMs; a binary from
# before that cache (03bd977) times its own and may sum in another order.
# Usage: scripts/gpu/same_logits.sh path/to/turbine OTHER_SOURCE.cu|OTHER_TURBINE
set -euo pipefail
turbine="$(realpath "$1")"
other="$(realpath "$2")"
here="$(dirname "$(realpath "$0")")"
source "$here/libs.sh"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
python3 - "$here" "$dir/model" <<'PY'
import json, random, sys
sys.path.insert(0, sys.argv[1])
from parity import make_model
out = sys.argv[2]
shape = dict(
    architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=256,
    intermediate_size=512, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
    head_dim=128, vocab_size=256, rms_norm_eps=1e-5, rope_theta=10000.0,
    max_position_embeddings=8192, tie_word_embeddings=False,
)
make_model("same_logits", shape, out, init_range=0.1)
rng = random.Random(7)
prompts = [[rng.randrange(256) for _ in range(n)] for n in (1500, 333, 37, 129)]
json.dump(prompts, open(f"{out}/prompts.json", "w"))
PY
run() {
  local bin="$1" name="$2"; shift 2
  "$bin" generate --model "$dir/model" --prompts "$dir/model/prompts.json" --max-tokens 8 \
    --out "$dir/$name.json" "$@" > "$dir/$name.log" 2>&1 || { cat "$dir/$name.log"; exit 1; }
}
if [[ "$other" == *.cu ]]; then
  TURBINE_CUDA_SOURCE="$other" run "$turbine" other
else
  run "$other" other
fi
run "$turbine" graphs
run "$turbine" eager --cuda-graphs off
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
want = json.load(open(f"{d}/other.json"))
ok = True
for name in ("graphs", "eager"):
    got = json.load(open(f"{d}/{name}.json"))
    same = got["alone"] == want["alone"] and got["batched"] == want["batched"]
    diff = max(abs(x - y) for a, b in zip(got["logits"], want["logits"])
               for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    print(f"{name}: tokens {'equal' if same else 'DIFFER'}, largest logit difference {diff:.3g}")
    ok = ok and same and diff == 0
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
