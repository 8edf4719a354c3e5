#!/usr/bin/env python3
"""Exact float64 reference outputs for SmolLM2-135M-Instruct (Q4_1 GGUF), beside llama.cpp's.

llama.cpp is not an exact reference: it quantizes activations to 8 bits before every quantized matmul,
so its logits sit ~0.1 (median) away from an exact forward pass of the same weights, and its top-1
choice flips wherever two logits are that close (AVX2 and AVX-512 builds of the same llama.cpp commit
agree on 96% of teacher-forced positions). This script computes the exact answer instead: the GGUF's
weights dequantized exactly (gguf_to_hf.py) and run through numpy_llama.py in float64, on the same
token ids as the llama.cpp fixture (llama.cpp's tokenization), so a Rust executor that dequantizes
exactly and computes in f32 can be held to tight bounds.

Writes crates/engine/tests/fixtures/reference/smollm2_f64.json:
  generator, model {file, sha256}, reference, tokens_from,
  teacher_forced {tokens, top1, top1_logit, top1_margin, top5, top5_logits}   (all positions)
  greedy [{name, prompt_tokens, output_tokens, output_margins}]              (same prompts, 32 steps)
Logits are rounded to 5 decimals. Takes a few minutes (greedy steps recompute the whole sequence).

Usage: "$TURBINE_CACHE/venv/bin/python" scripts/reference/smollm2_f64.py [--model GGUF] [--out JSON]
  (needs numpy and gguf; reads smollm2_llama_cpp.json, written by llama_cpp.py, for the token ids)
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURES = REPO / "crates/engine/tests/fixtures/reference"
CACHE = Path(os.environ.get("TURBINE_CACHE", Path.home() / ".cache" / "turbine"))
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load(name):
    spec = importlib.util.spec_from_file_location(f"turbine_reference_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def top_data(logits):
    order = np.argsort(-logits, axis=-1, kind="stable")[..., :5]
    top5_logits = np.take_along_axis(logits, order, axis=-1)
    return order, top5_logits


def main():
    ap = argparse.ArgumentParser(description="exact float64 SmolLM2 reference fixture")
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--llama-cpp-fixture", default=str(FIXTURES / "smollm2_llama_cpp.json"))
    ap.add_argument("--out", default=str(FIXTURES / "smollm2_f64.json"))
    args = ap.parse_args()
    numpy_llama, gguf_to_hf, llama_cpp_ref = load("numpy_llama"), load("gguf_to_hf"), load("llama_cpp")
    ref = json.loads(Path(args.llama_cpp_fixture).read_text())

    with tempfile.TemporaryDirectory() as tmp:
        gguf_to_hf.convert(args.model, tmp)
        model = numpy_llama.load_model(tmp)

    tokens = ref["teacher_forced"]["tokens"]
    logits = numpy_llama.forward(model, tokens)
    top5, top5_logits = top_data(logits)
    r5 = lambda a: [round(float(v), 5) for v in a]  # noqa: E731
    teacher = {
        "tokens": tokens,
        "top1": [int(i) for i in top5[:, 0]],
        "top1_logit": r5(top5_logits[:, 0]),
        "top1_margin": r5(top5_logits[:, 0] - top5_logits[:, 1]),
        "top5": [[int(i) for i in row] for row in top5],
        "top5_logits": [r5(row) for row in top5_logits],
    }

    cases = []
    for case in ref["greedy"]:
        seq = list(case["prompt_tokens"])
        out, margins = [], []
        for _ in range(len(case["output_tokens"])):
            last = numpy_llama.forward(model, seq)[-1]
            order, top = top_data(last)
            out.append(int(order[0]))
            margins.append(round(float(top[0] - top[1]), 5))
            seq.append(out[-1])
        cases.append({"name": case["name"], "prompt_tokens": case["prompt_tokens"], "output_tokens": out,
                      "output_margins": margins})
        print(f"smollm2_f64.py: {case['name']}: identical to llama.cpp: {out == case['output_tokens']}",
              file=sys.stderr)

    fixture = {
        "generator": "scripts/reference/smollm2_f64.py",
        "model": {"file": Path(args.model).name, "sha256": llama_cpp_ref.sha256(args.model)},
        "reference": "float64 numpy_llama.py forward of the GGUF weights dequantized exactly by gguf_to_hf.py",
        "tokens_from": Path(args.llama_cpp_fixture).name,
        "teacher_forced": teacher,
        "greedy": cases,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(llama_cpp_ref.compact_json(fixture) + "\n", encoding="utf-8")
    agree = np.mean(np.array(teacher["top1"]) == np.array(ref["teacher_forced"]["top1"]))
    print(f"smollm2_f64.py: wrote {out_path}; teacher-forced top-1 agreement with llama.cpp {agree * 100:.2f}%",
          file=sys.stderr)


if __name__ == "__main__":
    main()
