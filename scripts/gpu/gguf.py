"""GGUF weights on the GPU: a small random Llama GGUF whose matrices use every type the loader
reads (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, F16, BF16, F32), run by the CUDA executor, against the same
weights dequantized here (numpy, from the format's definition) and saved as an HF safetensors
model, whose path parity.py checks against transformers. The GGUF path differs in what this
checks: dequantization on upload, and GGUF's interleaved RoPE over its permuted Q and K rows (HF
models rotate halves).

Checks: logits relative error <= 1e-2 between the two over each prompt's steps up to where their
greedy outputs first part (both round the same values to bf16; only the order of some sums
differs: 2.9-3.6e-3 on an H100, the level at which the GGUF run's batched logits differ from its
alone ones, 2.9-5.0e-3; Q/K rows in the wrong order gave 0.4-0.7); outputs equal, or parting at a near-tie (logits of the two tokens closer than twice
the largest difference of that step); the GGUF run's batched outputs equal its alone ones the
same way. For scale, the CPU executor's error on the GGUF is printed too (it quantizes the
activations to 8 bits as llama.cpp does, so it is no exact reference). Needs numpy only.

Usage: python3 gguf.py --turbine path/to/turbine [--out DIR]
"""
import argparse, json, os, struct, subprocess, sys, tempfile

import numpy as np

F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, BF16 = 0, 1, 2, 3, 8, 12, 14, 30
NAMES = {F32: "F32", F16: "F16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q8_0: "Q8_0", Q4_K: "Q4_K",
         Q6_K: "Q6_K", BF16: "BF16"}
# head_dim 128 with 4 query heads per KV head: the Hopper prefill and tensor-core decode kernels.
SHAPE = dict(hidden=512, intermediate=1024, layers=2, heads=8, kv_heads=2, head_dim=128, vocab=512)


def f16(x):
    return np.asarray(x, dtype=np.float16).view(np.uint8).reshape(*np.shape(x), 2)


def pack_nibbles(q):
    """Blocks of 32 4-bit values: byte j holds element j (low) and element j + 16 (high)."""
    return (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)


def quantize(x, kind, rng, std):
    """Row-major f32 `x` (rows × cols) as GGUF bytes of type `kind`. Q4_K and Q6_K blocks are
    random bytes (any bytes are valid quants; both executors read the same) with scales that
    give values of about `std`."""
    rows, cols = x.shape
    if kind == F32:
        return x.astype(np.float32).tobytes()
    if kind == F16:
        return x.astype(np.float16).tobytes()
    if kind == BF16:
        return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    if kind in (Q4_0, Q4_1, Q8_0):
        b = x.reshape(rows, cols // 32, 32)
        if kind == Q8_0:
            d = np.abs(b).max(-1, keepdims=True) / 127
            q = np.round(b / np.where(d == 0, 1, d)).astype(np.int8).view(np.uint8)
            return np.concatenate([f16(d[..., 0]), q], -1).tobytes()
        if kind == Q4_0:
            d = np.abs(b).max(-1, keepdims=True) / 8
            q = np.clip(np.round(b / np.where(d == 0, 1, d)) + 8, 0, 15).astype(np.uint8)
            return np.concatenate([f16(d[..., 0]), pack_nibbles(q)], -1).tobytes()
        lo, hi = b.min(-1, keepdims=True), b.max(-1, keepdims=True)
        d = (hi - lo) / 15
        q = np.clip(np.round((b - lo) / np.where(d == 0, 1, d)), 0, 15).astype(np.uint8)
        return np.concatenate([f16(d[..., 0]), f16(lo[..., 0]), pack_nibbles(q)], -1).tobytes()
    blocks = rows * cols // 256
    if kind == Q4_K:  # d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
        d = f16(np.full(blocks, std / 317))  # 6-bit scales times nibbles: rms about 317
        dmin = f16(np.full(blocks, std / 317))
        rest = rng.integers(0, 256, (blocks, 140), dtype=np.uint8)
        return np.concatenate([d, dmin, rest], -1).tobytes()
    if kind == Q6_K:  # 128 bytes low nibbles, 64 bytes high pairs, 16 i8 scales, d
        rest = rng.integers(0, 256, (blocks, 192), dtype=np.uint8)
        scales = rng.integers(-64, 64, (blocks, 16), dtype=np.int8).view(np.uint8)
        return np.concatenate([rest, scales, f16(np.full(blocks, std / 685))], -1).tobytes()
    raise ValueError(kind)


def dequantize(data, kind, rows, cols):
    """GGUF bytes of type `kind` as f32 rows × cols, by the formats' definitions (ggml's
    order of f32 operations)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if kind == F32:
        return raw.view(np.float32).reshape(rows, cols)
    if kind == F16:
        return raw.view(np.float16).astype(np.float32).reshape(rows, cols)
    if kind == BF16:
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(rows, cols)
    half = lambda b, at: b[:, at:at + 2].copy().view(np.float16).astype(np.float32)  # (blocks, 1)
    if kind in (Q4_0, Q4_1, Q8_0):
        size = {Q4_0: 18, Q4_1: 20, Q8_0: 34}[kind]
        b = raw.reshape(-1, size)
        d = half(b, 0)
        if kind == Q8_0:
            y = b[:, 2:].view(np.int8).astype(np.float32) * d
        else:
            qs = b[:, 2 if kind == Q4_0 else 4:]
            q = np.concatenate([qs & 15, qs >> 4], 1).astype(np.float32)
            y = d * (q - 8) if kind == Q4_0 else d * q + half(b, 2)
        return y.astype(np.float32).reshape(rows, cols)
    if kind == Q4_K:
        b = raw.reshape(-1, 144)
        d, dmin, sc12, qs = half(b, 0), half(b, 2), b[:, 4:16].astype(np.int32), b[:, 16:]
        sc = np.concatenate([sc12[:, 0:4] & 63, (sc12[:, 8:12] & 15) | ((sc12[:, 0:4] >> 6) << 4)], 1)
        mn = np.concatenate([sc12[:, 4:8] & 63, (sc12[:, 8:12] >> 4) | ((sc12[:, 4:8] >> 6) << 4)], 1)
        y = np.empty((b.shape[0], 256), np.float32)
        for c in range(4):  # 64 elements: sub-block 2c the low nibbles of 32 bytes, 2c + 1 the high
            q = qs[:, 32 * c:32 * c + 32]
            for j, nib in ((2 * c, q & 15), (2 * c + 1, q >> 4)):
                scale = (d[:, 0] * sc[:, j]).astype(np.float32)[:, None]
                low = (dmin[:, 0] * mn[:, j]).astype(np.float32)[:, None]
                y[:, 32 * j:32 * j + 32] = scale * nib.astype(np.float32) - low
        return y.reshape(rows, cols)
    if kind == Q6_K:
        b = raw.reshape(-1, 210)
        d, scales = half(b, 208), b[:, 192:208].view(np.int8).astype(np.float32)
        y = np.empty((b.shape[0], 256), np.float32)
        for h in range(2):
            ql, qh = b[:, 64 * h:64 * h + 64], b[:, 128 + 32 * h:160 + 32 * h]
            for k in range(4):  # elements 128h + 32k + l
                low = (ql[:, 32 * (k % 2):32 * (k % 2) + 32] >> (4 * (k // 2))) & 15
                q = (low | (((qh >> (2 * k)) & 3) << 4)).astype(np.float32) - 32
                for part in range(2):  # l < 16 and l >= 16: scales 16 elements each
                    e = 128 * h + 32 * k + 16 * part
                    scale = (d[:, 0] * scales[:, e // 16]).astype(np.float32)[:, None]
                    y[:, e:e + 16] = scale * q[:, 16 * part:16 * part + 16]
        return y.reshape(rows, cols)
    raise ValueError(kind)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, metadata, tensors):
    """GGUF v3: metadata (str -> int | float | str), tensors (name, ggml dims, type, bytes)."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, value in metadata.items():
        out += gguf_string(key)
        if isinstance(value, str):
            out += struct.pack("<I", 8) + gguf_string(value)
        elif isinstance(value, float):
            out += struct.pack("<If", 6, value)
        else:
            out += struct.pack("<II", 4, value)
    offset = 0
    for name, dims, kind, data in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", kind, offset)
        offset += (len(data) + 31) // 32 * 32
    out += bytes(-len(out) % 32)
    for _, _, _, data in tensors:
        out += data + bytes(-len(data) % 32)
    open(path, "wb").write(out)


def write_safetensors(path, tensors):
    """f32 tensors (name -> array) as one safetensors file."""
    header, offset = {}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())


def unpermute(w, heads):
    """GGUF's Q or K rows (each head's rotation pairs interleaved) in HF's order (halves)."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


HF_NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
            "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj"}


def hf_name(name):
    top = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight",
           "output_norm.weight": "model.norm.weight"}
    if name in top:
        return top[name]
    _, layer, part, _ = name.split(".")
    return f"model.layers.{layer}.{HF_NAMES[part]}.weight"


def make_model(gguf_path, hf_dir, seed=7):
    """The GGUF, and its weights dequantized into an HF model directory; the tensor types."""
    s, rng = SHAPE, np.random.default_rng(seed)
    h, inter, q_dim, kv_dim = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    metadata = {
        "general.architecture": "llama", "llama.block_count": s["layers"],
        "llama.context_length": 4096, "llama.embedding_length": h,
        "llama.feed_forward_length": inter, "llama.attention.head_count": s["heads"],
        "llama.attention.head_count_kv": s["kv_heads"], "llama.attention.key_length": s["head_dim"],
        "llama.attention.value_length": s["head_dim"], "llama.vocab_size": s["vocab"],
        "llama.rope.freq_base": 10000.0, "llama.attention.layer_norm_rms_epsilon": 1e-5,
    }
    kinds = [Q4_K, Q4_0, Q6_K, Q4_1, Q8_0, F16, BF16, F32]
    tensors, hf, used = [], {}, []

    def matrix(name, rows, cols, kind, std=0.05):
        data = quantize(rng.normal(0, std, (rows, cols)).astype(np.float32), kind, rng, std)
        tensors.append((name, [cols, rows], kind, data))
        w = dequantize(data, kind, rows, cols)
        heads = {"attn_q": s["heads"], "attn_k": s["kv_heads"]}.get(name.split(".")[-2])
        hf[hf_name(name)] = unpermute(w, heads) if heads else w
        used.append(f"{name}={NAMES[kind]}")

    def vector(name, n):
        v = (1 + 0.2 * rng.normal(size=n)).astype(np.float32)
        tensors.append((name, [n], F32, v.tobytes()))
        hf[hf_name(name)] = v

    matrix("token_embd.weight", s["vocab"], h, Q8_0, std=1.0)
    slot = 0
    for layer in range(s["layers"]):
        vector(f"blk.{layer}.attn_norm.weight", h)
        for name, rows, cols in [("attn_q", q_dim, h), ("attn_k", kv_dim, h), ("attn_v", kv_dim, h),
                                 ("attn_output", h, q_dim), ("ffn_gate", inter, h),
                                 ("ffn_up", inter, h), ("ffn_down", h, inter)]:
            matrix(f"blk.{layer}.{name}.weight", rows, cols, kinds[slot % len(kinds)])
            slot += 1
        vector(f"blk.{layer}.ffn_norm.weight", h)
    vector("output_norm.weight", h)
    matrix("output.weight", s["vocab"], h, Q6_K, std=0.2)  # peaked next-token distributions
    write_gguf(gguf_path, metadata, tensors)
    os.makedirs(hf_dir, exist_ok=True)
    write_safetensors(os.path.join(hf_dir, "model.safetensors"), hf)
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=h,
                  intermediate_size=inter, num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                  num_key_value_heads=s["kv_heads"], head_dim=s["head_dim"], vocab_size=s["vocab"],
                  rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=4096,
                  tie_word_embeddings=False, torch_dtype="float32")
    json.dump(config, open(os.path.join(hf_dir, "config.json"), "w"))
    return used


def generate(turbine, engine, model, prompts, out, tokens):
    cmd = [turbine, "generate", "--engine", engine, "--model", model, "--prompts", prompts,
           "--max-tokens", str(tokens), "--out", out]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{engine} on {model} failed:\n{run.stdout}\n{run.stderr}")
    return json.load(open(out))


def compare(ref_tokens, ref_logits, tokens, logits):
    """(relative error over the steps up to the first parting, whether they part off a near-tie)."""
    n = len(ref_tokens)
    k = next((i for i in range(n) if ref_tokens[i] != tokens[i]), None)
    steps = n if k is None else k + 1
    a, b = np.array(logits[:steps], dtype=np.float64), np.array(ref_logits[:steps], dtype=np.float64)
    err = np.linalg.norm(a - b) / np.linalg.norm(b)
    if k is None:
        return err, False
    gap = abs(b[k][ref_tokens[k]] - b[k][tokens[k]])
    return err, gap >= 2 * np.abs(a[k] - b[k]).max()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--turbine", required=True)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--engine", default="cuda", help="the executor under test (cpu: to try the script)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="gguf-")
    gguf, hf = os.path.join(d, "model.gguf"), os.path.join(d, "hf")
    used = make_model(gguf, hf)
    rng = np.random.default_rng(11)
    prompts = [rng.integers(0, SHAPE["vocab"], n).tolist() for n in (3, 17, 40, 96, 250, 700)]
    pfile = os.path.join(d, "prompts.json")
    json.dump(prompts, open(pfile, "w"))
    run = lambda engine, model, name: generate(args.turbine, engine, model, pfile, os.path.join(d, name), args.tokens)
    got = run(args.engine, gguf, "gguf.json")
    ref = run(args.engine, hf, "hf.json")
    cpu = run("cpu", gguf, "cpu.json")
    rows, ok = [], True
    for i, p in enumerate(prompts):
        err, off_tie = compare(ref["alone"][i], ref["logits"][i], got["alone"][i], got["logits"][i])
        berr, boff = compare(got["alone"][i], got["logits"][i], got["batched"][i], got["batched_logits"][i])
        cerr, _ = compare(cpu["alone"][i], cpu["logits"][i], got["alone"][i], got["logits"][i])
        passed = err <= 1e-2 and not off_tie and not boff
        ok &= passed
        rows.append((len(p), f"{err:.1e}", got["alone"][i] == ref["alone"][i], f"{berr:.1e}",
                     got["batched"][i] == got["alone"][i], f"{cerr:.1e}", "PASS" if passed else "FAIL"))
    json.dump({"types": used, "gguf": got["alone"], "hf": ref["alone"], "gguf_batched": got["batched"],
               "cpu": cpu["alone"]}, open(os.path.join(args.out, "gguf.json"), "w"))
    print(f"{args.engine} executor; tensor types:", " ".join(used))
    print("prompt  err vs HF  = HF  batch err  batched=alone  CPU err  result")
    for r in rows:
        print(f"{r[0]:>6} {r[1]:>10} {str(r[2]):>5} {r[3]:>10} {str(r[4]):>14} {r[5]:>8}  {r[6]}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
