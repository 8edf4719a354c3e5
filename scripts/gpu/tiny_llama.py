"""A small random Llama as an HF safetensors directory (numpy only), shaped for the Hopper prefill
kernel (head_dim 128, 4 query heads per KV head), with prompts long enough for many key tiles
(`prompts.json`: 1,500, 333, 37 and 129 token ids). Usage: tiny_llama.py OUT_DIR"""
import json, os, struct, sys

import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
H, NH, KV, D, I, L, V = 256, 8, 2, 128, 512, 2, 256
json.dump(dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=H,
               intermediate_size=I, num_hidden_layers=L, num_attention_heads=NH,
               num_key_value_heads=KV, head_dim=D, vocab_size=V, rms_norm_eps=1e-5,
               rope_theta=10000.0, max_position_embeddings=8192, tie_word_embeddings=False),
          open(f"{out}/config.json", "w"))


def bf16(a):
    """Round to nearest even bf16, as raw 16-bit words."""
    b = np.asarray(a, np.float32).view(np.uint32)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


s = 1 / np.sqrt(H)
t = {"model.embed_tokens.weight": rng.normal(0, 1, (V, H)),
     "lm_head.weight": rng.normal(0, 0.06, (V, H)), "model.norm.weight": np.ones(H)}
for l in range(L):
    p = f"model.layers.{l}."
    # Large q/k weights: peaked attention, so the key order matters to the result.
    t[p + "self_attn.q_proj.weight"] = rng.normal(0, 3 * s, (NH * D, H))
    t[p + "self_attn.k_proj.weight"] = rng.normal(0, 3 * s, (KV * D, H))
    t[p + "self_attn.v_proj.weight"] = rng.normal(0, s, (KV * D, H))
    t[p + "self_attn.o_proj.weight"] = rng.normal(0, 1 / np.sqrt(NH * D), (H, NH * D))
    t[p + "mlp.gate_proj.weight"] = rng.normal(0, s, (I, H))
    t[p + "mlp.up_proj.weight"] = rng.normal(0, s, (I, H))
    t[p + "mlp.down_proj.weight"] = rng.normal(0, 1 / np.sqrt(I), (H, I))
    t[p + "input_layernorm.weight"] = np.ones(H)
    t[p + "post_attention_layernorm.weight"] = np.ones(H)
header, blobs, at = {}, [], 0
for name, a in t.items():
    b = bf16(a).tobytes()
    header[name] = {"dtype": "BF16", "shape": list(np.shape(a)), "data_offsets": [at, at + len(b)]}
    blobs.append(b)
    at += len(b)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(f"{out}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for b in blobs:
        f.write(b)
prompts = [list(map(int, rng.integers(0, V, n))) for n in (1500, 333, 37, 129)]
json.dump(prompts, open(f"{out}/prompts.json", "w"))
