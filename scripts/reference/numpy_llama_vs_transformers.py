#!/usr/bin/env python3
"""One-off check of numpy_llama.py against transformers (not used by any test).

For each tiny arch (llama with llama3 rope scaling, qwen3 with tied embeddings, qwen2 with q/k/v biases)
and a few seeds: writes the model with `numpy_llama.py --make-model`, loads it with transformers'
AutoModelForCausalLM in float64 (eager attention), and compares all-position logits with numpy_llama's
float64 forward, max relative error max|a-b| / max|b|:
  as-is   transformers unchanged; its RMSNorm and RoPE compute in float32 internally even for a float64
          model, so agreement is ~1e-7 (float32 rounding), failing above 1e-5;
  f64     transformers with RMSNorm, the rotary cos/sin and the attention softmax patched to float64
          (inv_freq: numpy_llama's, after checking it equals transformers' float32 inv_freq to 1e-6),
          failing above 1e-12.

Needs torch and transformers (large; not in the shared venv). Usage, in a venv that has them:
  python scripts/reference/numpy_llama_vs_transformers.py
"""

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("numpy_llama", HERE / "numpy_llama.py")
numpy_llama = importlib.util.module_from_spec(spec)
spec.loader.exec_module(numpy_llama)

TOKENS = [1, 17, 200, 3, 99, 254, 0, 42, 42, 128, 7, 63, 5, 180, 31, 77, 250, 2, 19, 64]


def patch_float64(model, inv_freq):
    """Makes transformers' float32-internal pieces compute in float64."""

    def rms_forward(self, x):
        x = x.to(torch.float64)
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    inv = torch.tensor(inv_freq, dtype=torch.float64)

    def rope_forward(self, x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling

    for module in model.modules():
        name = type(module).__name__
        if name.endswith("RMSNorm"):
            module.forward = rms_forward.__get__(module)
        elif name.endswith("RotaryEmbedding"):
            hf_inv = module.inv_freq.to(torch.float64).numpy()
            assert np.allclose(hf_inv, inv_freq, rtol=1e-6, atol=0), (hf_inv, inv_freq)
            module.forward = rope_forward.__get__(module)


_softmax = torch.nn.functional.softmax


def softmax_f64(x, dim=None, _stacklevel=3, dtype=None):
    return _softmax(x, dim=dim, dtype=torch.float64)


def logits(model, f64=False):
    torch.nn.functional.softmax = softmax_f64 if f64 else _softmax
    try:
        with torch.no_grad():
            return model(torch.tensor([TOKENS])).logits[0].numpy()
    finally:
        torch.nn.functional.softmax = _softmax


def main():
    worst = {"as-is": 0.0, "f64": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("llama", "qwen3", "qwen2"):
            for seed in (0, 1, 2):
                d = f"{tmp}/{arch}-{seed}"
                numpy_llama.make_model(d, arch, seed)
                ref = numpy_llama.forward(d, TOKENS)
                model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager")
                model.eval()
                errs = {}
                errs["as-is"] = float(np.max(np.abs(logits(model) - ref)) / np.max(np.abs(ref)))
                cfg = json.load(open(f"{d}/config.json"))
                patch_float64(model, numpy_llama.rope_inv_freq(cfg, cfg["head_dim"]))
                errs["f64"] = float(np.max(np.abs(logits(model, f64=True) - ref)) / np.max(np.abs(ref)))
                for k, v in errs.items():
                    worst[k] = max(worst[k], v)
                print(f"{arch:6} seed {seed}: max rel err as-is {errs['as-is']:.2e}, f64 {errs['f64']:.2e}  "
                      f"({type(model).__name__}, tied={model.config.tie_word_embeddings}, "
                      f"rope={getattr(model.config, 'rope_parameters', None)})")
    print(f"worst: as-is {worst['as-is']:.2e}, f64 {worst['f64']:.2e}")
    sys.exit(0 if worst["as-is"] < 1e-5 and worst["f64"] < 1e-12 else 1)


if __name__ == "__main__":
    main()
