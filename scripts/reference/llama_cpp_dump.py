#!/usr/bin/env python3
"""Dumps llama.cpp's intermediate tensors for some tokens: the tool that found where the CPU
executor's numerics parted from llama.cpp's (one flipped 8-bit activation rounding is enough to
change a greedy continuation, so they must agree bit for bit).

Runs the GGUF through llama-cpp-python (the build in $TURBINE_CACHE/venv) in one batch with a
`cb_eval` callback, ggml's per-node hook, and saves every F32 or F16 tensor the graph computes
into an .npz, in evaluation order, keyed `NNNN:name` (`attn_norm-0`, `Qcur-0`, `kq-0`,
`ffn_out-0`, `l_out-0`, ...), shaped as numpy sees ggml's `ne` (the innermost dimension last).
Compare a layer's tensors with the same values of the executor under test, first difference
first.

Usage: $TURBINE_CACHE/venv/bin/python scripts/reference/llama_cpp_dump.py MODEL.gguf OUT.npz ID...
"""
import ctypes
import glob
import os
import sys
from pathlib import Path

# This directory's llama_cpp.py would shadow the llama_cpp package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
import numpy as np  # noqa: E402
from llama_cpp import llama_cpp as L  # noqa: E402

# Offsets in ggml's `struct ggml_tensor` (ggml.h, 64-bit): type, then ne[4] at 16, nb[4] at 48.
TYPE, NE, NB = 0, 16, 48
DTYPES = {0: np.float32, 1: np.float16}


def ggml_base():
    lib_dir = os.path.join(os.path.dirname(L.__file__), "lib")
    base = ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libggml-base.so*"))[0])
    for name, restype in [("ggml_get_name", ctypes.c_char_p), ("ggml_get_data", ctypes.c_void_p),
                          ("ggml_nbytes", ctypes.c_size_t), ("ggml_is_contiguous", ctypes.c_bool)]:
        getattr(base, name).restype = restype
        getattr(base, name).argtypes = [ctypes.c_void_p]
    return base


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    model_path, out, tokens = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3:]]
    base = ggml_base()
    tensors = {}

    @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p)
    def on_tensor(t, ask, _user):
        if ask:
            return True  # yes, show us every node
        dtype = DTYPES.get(ctypes.c_int32.from_address(t + TYPE).value)
        data = base.ggml_get_data(t)
        if dtype is None or not data or not base.ggml_is_contiguous(t):
            return True
        ne = [ctypes.c_int64.from_address(t + NE + 8 * i).value for i in range(4)]
        raw = ctypes.string_at(data, base.ggml_nbytes(t))
        array = np.frombuffer(raw, dtype=dtype).reshape(ne[::-1]).squeeze()
        tensors[f"{len(tensors):04d}:{base.ggml_get_name(t).decode()}"] = array
        return True

    L.llama_backend_init()
    model = L.llama_model_load_from_file(model_path.encode(), L.llama_model_default_params())
    params = L.llama_context_default_params()
    params.n_ctx = max(512, len(tokens))
    params.n_batch = params.n_ubatch = max(512, len(tokens))
    params.n_threads = params.n_threads_batch = 2
    params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.cb_eval = ctypes.cast(on_tensor, type(params.cb_eval))
    params.cb_eval_user_data = None
    ctx = L.llama_init_from_model(model, params)
    batch = L.llama_batch_init(len(tokens), 0, 1)
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, 1
        batch.seq_id[i][0] = 0
    if L.llama_decode(ctx, batch) != 0:
        sys.exit("llama_decode failed")
    np.savez(out, **tensors)
    print(f"{len(tensors)} tensors to {out}")
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
