#!/usr/bin/env python3
"""Dequantizes a Llama-architecture GGUF into an HF-layout directory, for numpy_llama.py.

Writes DIR/config.json and DIR/model.safetensors (float32) from a GGUF with general.architecture
"llama": every tensor dequantized exactly with gguf-py's `gguf.quants.dequantize` (Q4_1: d * q + m
per 32-value block), tensor names mapped to HF's, and attn_q / attn_k un-permuted from llama.cpp's
interleaved RoPE row order back to HF's rotate_half order (the inverse of convert_hf_to_gguf.py's
`LlamaModel.permute`). numpy_llama.py on the result is then an exact float64 forward pass of the very
weights llama.cpp runs, without llama.cpp's own approximations (Q8 activations, f16 KV cache).

Usage: "$TURBINE_CACHE/venv/bin/python" scripts/reference/gguf_to_hf.py MODEL.gguf DIR
       "$TURBINE_CACHE/venv/bin/python" scripts/reference/numpy_llama.py DIR --tokens 504,1463 --all-logits
Needs numpy and gguf (both in the venv).
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

HERE = Path(__file__).resolve().parent


def field(reader, key):
    f = reader.fields[key]
    value = f.parts[f.data[0]]
    if f.types and f.types[0].name == "STRING":
        return bytes(value).decode()
    return value.tolist()[0] if hasattr(value, "tolist") else value


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf.py's LlamaModel.permute for a [n_head * head_dim, in] matrix."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert(gguf_path, out_dir):
    r = GGUFReader(gguf_path)
    arch = field(r, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"gguf_to_hf.py: architecture {arch!r} is not supported (llama only)")
    n_head = field(r, "llama.attention.head_count")
    n_kv = field(r, "llama.attention.head_count_kv")
    hidden = field(r, "llama.embedding_length")
    head_dim = hidden // n_head
    if "llama.rope.dimension_count" in r.fields and field(r, "llama.rope.dimension_count") != head_dim:
        raise SystemExit("gguf_to_hf.py: partial rotary embeddings are not supported")
    if "llama.rope.scaling.type" in r.fields:
        raise SystemExit("gguf_to_hf.py: RoPE scaling metadata is not supported")
    names = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    per_layer = {
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    tensors = {}
    vocab = None
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])  # GGUF lists dims fastest-first
        if t.name in names:
            name = names[t.name]
        else:
            _, layer, kind, suffix = t.name.split(".")
            name = f"model.layers.{layer}.{per_layer[kind]}.{suffix}"
            if kind == "attn_q" and suffix == "weight":
                w = unpermute(w, n_head)
            elif kind == "attn_k" and suffix == "weight":
                w = unpermute(w, n_kv)
        if t.name == "token_embd.weight":
            vocab = w.shape[0]
        tensors[name] = w
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": field(r, "llama.feed_forward_length"),
        "num_hidden_layers": field(r, "llama.block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "max_position_embeddings": field(r, "llama.context_length"),
        "rms_norm_eps": float(field(r, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(r, "llama.rope.freq_base")) if "llama.rope.freq_base" in r.fields else 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "torch_dtype": "float32",
    }
    spec = importlib.util.spec_from_file_location("numpy_llama", HERE / "numpy_llama.py")
    numpy_llama = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(numpy_llama)
    os.makedirs(out_dir, exist_ok=True)
    numpy_llama.write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
