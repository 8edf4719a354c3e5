#!/usr/bin/env python3
"""Independent float64 reference forward pass for Llama-family models in HF layout (numpy only).

Reads a model directory with `config.json` and `model.safetensors` (or a sharded
`model.safetensors.index.json`), computes everything in float64, and prints logits as JSON. It is
written from the HF modeling code's definitions, not from Turbine's Rust code:

  embed_tokens -> N x [ x + o_proj(attn(rmsnorm(x)))  ;  x + down(silu(gate(h)) * up(h)), h = rmsnorm(x) ]
  -> final rmsnorm -> lm_head (or embed_tokens when `tie_word_embeddings`)

  * RMSNorm: x / sqrt(mean(x^2) + rms_norm_eps) * weight
  * attention: causal, GQA (query head h reads kv head h // (n_heads / n_kv_heads)), scale head_dim^-0.5
  * RoPE: HF's rotate_half ("neox") convention, inv_freq = rope_theta^(-2i/head_dim), optional
    `rope_scaling` / `rope_parameters` of type "llama3" computed exactly as transformers'
    `_compute_llama3_parameters`, or "linear" (positions / factor)
  * Qwen3: per-head q_norm / k_norm (RMSNorm over head_dim) on q and k before RoPE
  * biases (Qwen2's q/k/v, Llama's `attention_bias` / `mlp_bias`): applied whenever the tensor exists

Usage:
  numpy_llama.py MODEL_DIR --tokens 1,2,3 [--all-logits]
      prints {"logits": [[vocab floats] per position]} (the last position only unless --all-logits)
  numpy_llama.py --make-model DIR --arch llama|qwen3|qwen2 [--seed N]
      writes a tiny random model (hidden 64, 2 layers, 4 heads, 2 kv heads, head_dim 16,
      intermediate 128, vocab 256, rope_theta 10000, float32 safetensors, HF config.json):
        llama: LlamaForCausalLM, llama3 rope_scaling (factor 8, low 1, high 4, original 256, so all three
               frequency bands occur), untied lm_head
        qwen3: Qwen3ForCausalLM, q_norm/k_norm, tie_word_embeddings true (no lm_head tensor)
        qwen2: Qwen2ForCausalLM, q/k/v biases, untied lm_head
      Same arch + seed -> byte-identical files.

Needs only numpy (the venv $TURBINE_CACHE/venv has it); safetensors is parsed by hand (f32/f16/bf16).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------------------------
# safetensors


_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": None}


def read_safetensors(path):
    """Returns {name: float64 array}. Format: u64 LE header length, JSON header, raw data."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        dtype = info["dtype"]
        if dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    """Writes {name: float32 array} as safetensors, names sorted, header padded to 8 bytes."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        raw = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        weights = {}
        for shard in shards:
            weights.update(read_safetensors(os.path.join(model_dir, shard)))
        return weights
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


# ---------------------------------------------------------------------------------------------
# forward pass


def rope_inv_freq(cfg, head_dim):
    """Inverse frequencies (float64) and a position scale, per transformers' modeling_rope_utils."""
    scaling = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    theta = float(scaling.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    partial = float(scaling.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)))
    if partial != 1.0:
        raise ValueError("partial_rotary_factor != 1 is not supported")
    dim = head_dim
    inv_freq = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return inv_freq
    if rope_type == "linear":
        return inv_freq / float(scaling["factor"])
    if rope_type == "llama3":
        factor = float(scaling["factor"])
        low_freq_factor = float(scaling["low_freq_factor"])
        high_freq_factor = float(scaling["high_freq_factor"])
        old_context_len = float(
            scaling.get("original_max_position_embeddings", cfg.get("max_position_embeddings"))
        )
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
        return np.where(is_medium, smoothed, inv_freq_llama)
    raise ValueError(f"rope type {rope_type!r} is not supported")


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def silu(x):
    return x / (1.0 + np.exp(-x))


def load_model(model_dir):
    """(config dict, {tensor name: float64 array}) of an HF-layout directory."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    act = cfg.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ValueError(f"hidden_act {act!r} is not supported")
    return cfg, load_weights(model_dir)


def forward(model, tokens):
    """Logits [len(tokens), vocab] in float64 for one sequence starting at position 0.

    `model` is a directory or what load_model returned (load once to run many sequences)."""
    cfg, w = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    hidden = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    head_dim = cfg.get("head_dim") or hidden // n_heads
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    n_layers = cfg["num_hidden_layers"]
    group = n_heads // n_kv
    get = w.get

    tokens = np.asarray(tokens, dtype=np.int64)
    t = len(tokens)
    x = w["model.embed_tokens.weight"][tokens]  # [t, hidden]

    inv_freq = rope_inv_freq(cfg, head_dim)
    freqs = np.outer(np.arange(t, dtype=np.float64), inv_freq)  # [t, head_dim/2]
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]  # [t, 1, head_dim]
    mask = np.triu(np.full((t, t), -np.inf), k=1)

    for i in range(n_layers):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        a = p + "self_attn."
        q = linear(h, w[a + "q_proj.weight"], get(a + "q_proj.bias")).reshape(t, n_heads, head_dim)
        k = linear(h, w[a + "k_proj.weight"], get(a + "k_proj.bias")).reshape(t, n_kv, head_dim)
        v = linear(h, w[a + "v_proj.weight"], get(a + "v_proj.bias")).reshape(t, n_kv, head_dim)
        if a + "q_norm.weight" in w:  # Qwen3
            q = rms_norm(q, w[a + "q_norm.weight"], eps)
            k = rms_norm(k, w[a + "k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        out = np.empty((t, n_heads, head_dim))
        for hq in range(n_heads):
            hk = hq // group
            scores = (q[:, hq, :] @ k[:, hk, :].T) * head_dim**-0.5 + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            out[:, hq, :] = probs @ v[:, hk, :]
        x = x + linear(out.reshape(t, n_heads * head_dim), w[a + "o_proj.weight"], get(a + "o_proj.bias"))

        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        m = p + "mlp."
        gate = linear(h, w[m + "gate_proj.weight"], get(m + "gate_proj.bias"))
        up = linear(h, w[m + "up_proj.weight"], get(m + "up_proj.bias"))
        x = x + linear(silu(gate) * up, w[m + "down_proj.weight"], get(m + "down_proj.bias"))

    x = rms_norm(x, w["model.norm.weight"], eps)
    if cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in w:
        head = w["model.embed_tokens.weight"]
    else:
        head = w["lm_head.weight"]
    return x @ head.T


# ---------------------------------------------------------------------------------------------
# tiny random models

TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=256)


def make_model(out_dir, arch, seed):
    c = TINY
    rng = np.random.default_rng(seed)

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm_weight(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    hidden, hd, inter = c["hidden"], c["head_dim"], c["intermediate"]
    q_dim, kv_dim = c["heads"] * hd, c["kv_heads"] * hd
    tied = arch == "qwen3"
    t = {"model.embed_tokens.weight": normal((c["vocab"], hidden), 1.0)}
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm_weight(hidden)
        t[p + "self_attn.q_proj.weight"] = normal((q_dim, hidden), hidden**-0.5)
        t[p + "self_attn.k_proj.weight"] = normal((kv_dim, hidden), hidden**-0.5)
        t[p + "self_attn.v_proj.weight"] = normal((kv_dim, hidden), hidden**-0.5)
        t[p + "self_attn.o_proj.weight"] = normal((hidden, q_dim), q_dim**-0.5)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = normal((q_dim,), 0.1)
            t[p + "self_attn.k_proj.bias"] = normal((kv_dim,), 0.1)
            t[p + "self_attn.v_proj.bias"] = normal((kv_dim,), 0.1)
        if arch == "qwen3":
            t[p + "self_attn.q_norm.weight"] = norm_weight(hd)
            t[p + "self_attn.k_norm.weight"] = norm_weight(hd)
        t[p + "post_attention_layernorm.weight"] = norm_weight(hidden)
        t[p + "mlp.gate_proj.weight"] = normal((inter, hidden), hidden**-0.5)
        t[p + "mlp.up_proj.weight"] = normal((inter, hidden), hidden**-0.5)
        t[p + "mlp.down_proj.weight"] = normal((hidden, inter), inter**-0.5)
    t["model.norm.weight"] = norm_weight(hidden)
    if not tied:
        t["lm_head.weight"] = normal((c["vocab"], hidden), hidden**-0.5)

    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM"}[arch]],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"],
        "head_dim": hd,
        "vocab_size": c["vocab"],
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5 if arch == "llama" else 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": tied,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    if arch == "llama":
        cfg["mlp_bias"] = False
        cfg["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256,
        }
    else:
        cfg["rope_scaling"] = None
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = None
        cfg["max_window_layers"] = c["layers"]
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), t)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?", help="HF-layout model directory")
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--all-logits", action="store_true", help="logits for every position, not just the last")
    ap.add_argument("--make-model", metavar="DIR", help="write a tiny random model to DIR and exit")
    ap.add_argument("--arch", choices=["llama", "qwen3", "qwen2"], default="llama")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.make_model:
        make_model(args.make_model, args.arch, args.seed)
        return
    if not args.model_dir or not args.tokens:
        ap.error("MODEL_DIR and --tokens are required (or --make-model DIR)")
    tokens = [int(s) for s in args.tokens.split(",") if s.strip()]
    if not tokens:
        ap.error("--tokens is empty")
    logits = forward(args.model_dir, tokens)
    if not args.all_logits:
        logits = logits[-1:]
    json.dump({"logits": [[float(v) for v in row] for row in logits]}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
