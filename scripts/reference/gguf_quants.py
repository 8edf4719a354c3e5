#!/usr/bin/env python3
"""Reference dequantization fixtures for Turbine's CPU kernels (crates/engine/tests/fixtures/quants/).

For each GGML type the kernels support, writes `<type>.json`:
    {"type": "Q4_0", "ggml_type": 2, "elements": N, "hex": "<raw block bytes>", "values": [N floats]}
where `values` is what the `gguf` package's `gguf.quants.dequantize` (an implementation
independent of Turbine) makes of the bytes. Every float is an exact float32 value.

Where `gguf.quants` can quantize the type (F32, F16, BF16, Q4_0, Q4_1, Q8_0), the bytes come from
quantizing fixed pseudo-random floats: one normal block, one all-zero block, one all-positive
block and one wide-range block per type. gguf 0.19.0 cannot quantize Q4_K or Q6_K, so their bytes
are fixed pseudo-random super-blocks (random nibbles, scales and high bits, with finite `f16` `d` /
`dmin` fields), which exercises every bit of the layout.

Setup:  python3 -m venv "$TURBINE_CACHE/venv" && "$TURBINE_CACHE/venv/bin/pip" install gguf==0.19.0 numpy
Usage:  "$TURBINE_CACHE/venv/bin/python" scripts/reference/gguf_quants.py [out_dir]
        (default out_dir: crates/engine/tests/fixtures/quants)
"""

import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20240611


def source_floats(rng: np.random.Generator, block: int) -> np.ndarray:
    """Four blocks of `block` floats with different shapes of distribution."""
    normal = rng.standard_normal(block).astype(np.float32)
    zeros = np.zeros(block, dtype=np.float32)
    positive = rng.uniform(0.25, 3.0, block).astype(np.float32)
    wide = (rng.standard_normal(block) * np.exp(rng.uniform(-6, 6, block))).astype(np.float32)
    return np.concatenate([normal, zeros, positive, wide])


def random_k_blocks(rng: np.random.Generator, qtype: T, n: int) -> np.ndarray:
    block_bytes = quants.GGML_QUANT_SIZES[qtype][1]
    raw = rng.integers(0, 256, size=(n, block_bytes), dtype=np.uint8)
    f16 = lambda lo, hi: np.float16(rng.uniform(lo, hi)).reshape(1).view(np.uint8)
    for b in raw:
        if qtype == T.Q4_K:  # d, dmin first
            b[0:2] = f16(0.001, 0.05)
            b[2:4] = f16(0.001, 0.05)
        elif qtype == T.Q6_K:  # d last
            b[208:210] = f16(0.0005, 0.02)
    return raw.reshape(-1)


def fixture(qtype: T, rng: np.random.Generator) -> dict:
    if qtype in (T.Q4_K, T.Q6_K):
        raw = random_k_blocks(rng, qtype, 2)
    else:
        block = 32 if qtype in (T.Q4_0, T.Q4_1, T.Q8_0) else 16
        x = source_floats(rng, block)
        raw = np.asarray(quants.quantize(x.reshape(1, -1), qtype)).reshape(-1).view(np.uint8)
    values = quants.dequantize(raw.reshape(1, -1), qtype).reshape(-1).astype(np.float32)
    assert np.all(np.isfinite(values)), qtype.name
    return {
        "type": qtype.name,
        "ggml_type": int(qtype),
        "elements": int(values.size),
        "hex": raw.tobytes().hex(),
        "values": [float(v) for v in values],
    }


def main() -> None:
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "crates/engine/tests/fixtures/quants"
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for qtype in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q6_K):
        path = os.path.join(out_dir, qtype.name.lower() + ".json")
        with open(path, "w") as f:
            json.dump(fixture(qtype, rng), f)
            f.write("\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
