#!/usr/bin/env python3
"""One-off check of numpy_llama.py against transformers (not used by any test).

For each tiny arch (llama with llama3 rope scaling, qwen3 with tied embeddings, qwen2 with q/k/v biases)
and a few seeds: writes the model with `numpy_llama.py --make-model`, loads it with transformers'
AutoModelForCausalLM in float64 (eager attention), and compares all-position logits with numpy_llama's
float64 forward. Prints the max relative error per case ( max|a-b| / max|b| ) and fails above 1e-9.

Needs torch and transformers (large; not in the shared venv). Usage, in a venv that has them:
  python scripts/reference/numpy_llama_vs_transformers.py
"""

import importlib.util
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


def main():
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("llama", "qwen3", "qwen2"):
            for seed in (0, 1, 2):
                d = f"{tmp}/{arch}-{seed}"
                numpy_llama.make_model(d, arch, seed)
                ref = numpy_llama.forward(d, TOKENS)
                model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager")
                model.eval()
                with torch.no_grad():
                    out = model(torch.tensor([TOKENS])).logits[0].numpy()
                err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
                worst = max(worst, err)
                print(f"{arch:6} seed {seed}: max rel err {err:.3e}  ({type(model).__name__}, "
                      f"tied={model.config.tie_word_embeddings}, rope={getattr(model.config, 'rope_parameters', None)})")
    print(f"worst {worst:.3e}")
    sys.exit(0 if worst < 1e-9 else 1)


if __name__ == "__main__":
    main()
