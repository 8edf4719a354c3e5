"""GGUF weights on the GPU: the CUDA executor against the CPU executor on one small random Llama
GGUF whose matrices use every quantized type the loader reads (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K,
F16, BF16, F32). Both executors load the file through the same loader; the CUDA one dequantizes
to bf16 on upload and rotates with GGUF's interleaved RoPE (safetensors models use the other
layout), so this checks what parity.py, on safetensors, does not.

Checks: logits relative error of CUDA against CPU <= 2e-2 over each prompt's steps up to where
their greedy outputs first part; outputs equal, or parting at a near-tie (the CPU's logits of the
two tokens closer than twice the largest CUDA - CPU logit difference of that step); CUDA batched
equal to CUDA alone the same way. Needs numpy only (not torch), so the model can be made anywhere.

Usage: python3 gguf.py --turbine path/to/turbine [--out DIR] [--make-only FILE]
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


def make_model(path, seed=7):
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
    tensors, used = [], []

    def matrix(name, rows, cols, kind, std=0.05):
        x = rng.normal(0, std, (rows, cols)).astype(np.float32)
        tensors.append((name, [cols, rows], kind, quantize(x, kind, rng, std)))
        used.append(f"{name}={NAMES[kind]}")

    def vector(name, n):
        tensors.append((name, [n], F32, (1 + 0.2 * rng.normal(size=n)).astype(np.float32).tobytes()))

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
    write_gguf(path, metadata, tensors)
    return used


def generate(turbine, engine, model, prompts, out, tokens):
    cmd = [turbine, "generate", "--engine", engine, "--model", model, "--prompts", prompts,
           "--max-tokens", str(tokens), "--out", out]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{engine} failed:\n{run.stdout}\n{run.stderr}")
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
    ap.add_argument("--turbine")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--make-only", help="write the model to this file and stop")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    if args.make_only:
        print("\n".join(make_model(args.make_only)))
        return
    d = tempfile.mkdtemp(prefix="gguf-")
    model = os.path.join(d, "model.gguf")
    used = make_model(model)
    rng = np.random.default_rng(11)
    prompts = [rng.integers(0, SHAPE["vocab"], n).tolist() for n in (3, 17, 40, 96, 250, 700)]
    pfile = os.path.join(d, "prompts.json")
    json.dump(prompts, open(pfile, "w"))
    cpu = generate(args.turbine, "cpu", model, pfile, os.path.join(d, "cpu.json"), args.tokens)
    gpu = generate(args.turbine, "cuda", model, pfile, os.path.join(d, "cuda.json"), args.tokens)
    rows, ok = [], True
    for i, p in enumerate(prompts):
        err, off_tie = compare(cpu["alone"][i], cpu["logits"][i], gpu["alone"][i], gpu["logits"][i])
        berr, boff = compare(gpu["alone"][i], gpu["logits"][i], gpu["batched"][i], gpu["batched_logits"][i])
        passed = err <= 2e-2 and not off_tie and not boff
        ok &= passed
        rows.append((len(p), f"{err:.2e}", gpu["alone"][i] == cpu["alone"][i], f"{berr:.1e}",
                     gpu["batched"][i] == gpu["alone"][i], "PASS" if passed else "FAIL"))
    json.dump({"types": used, "cpu": cpu["alone"], "cuda": gpu["alone"], "cuda_batched": gpu["batched"]},
              open(os.path.join(args.out, "gguf.json"), "w"))
    print("tensor types:", " ".join(used))
    print("prompt  err vs CPU  = CPU  batch err  batched=alone  result")
    for r in rows:
        print(f"{r[0]:>6} {r[1]:>11} {str(r[2]):>6} {r[3]:>10} {str(r[4]):>14}  {r[5]}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
