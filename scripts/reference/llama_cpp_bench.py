#!/usr/bin/env python3
"""llama.cpp speed on SmolLM2-135M-Instruct (Q4_1 GGUF), the baseline for Turbine's CPU executor.

Measures with llama-cpp-python (same build and GGUF as scripts/reference/llama_cpp.py), n_threads 2:
  decode    single-stream decode: a short prompt, then DECODE_TOKENS greedy tokens, one llama_decode
            call per token (argmax in numpy); tok/s = DECODE_TOKENS / wall time of those calls.
  prefill   a PREFILL_TOKENS-token prompt (the reference English text repeated) in a fresh KV cache,
            n_batch 2048 / n_ubatch 512 (llama.cpp's defaults); tok/s = PREFILL_TOKENS / wall time.
Each is the median of --runs (default 3) runs after one warm-up run. Wall-clock figures, Python
overhead included (a small per-token cost in llama-cpp-python's eval).

Usage: python3 scripts/reference/llama_cpp_bench.py [--model GGUF] [--runs 3] [--threads 2]
  (re-executes itself in $TURBINE_CACHE/venv; run scripts/reference/llama_cpp.py once first to
  install llama-cpp-python). Prints one JSON object on stdout.
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# The neighbouring llama_cpp.py would shadow the llama_cpp package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

CACHE = Path(os.environ.get("TURBINE_CACHE", Path.home() / ".cache" / "turbine"))
VENV = CACHE / "venv"
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DECODE_PROMPT = "The history of bridges"
DECODE_TOKENS = 128
PREFILL_TOKENS = 1024


def ensure_venv():
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not python.exists():
            sys.exit(f"llama_cpp_bench.py: no venv at {VENV}: run scripts/reference/llama_cpp.py first")
        # The script that was run (this one, or one importing this function).
        os.execv(str(python), [str(python), *sys.argv])


def reference_module():
    spec = importlib.util.spec_from_file_location("turbine_reference_llama_cpp", HERE / "llama_cpp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decode_run(llm, prompt_tokens):
    import numpy as np

    llm.reset()
    llm.eval(prompt_tokens)
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    start = time.perf_counter()
    for _ in range(DECODE_TOKENS):
        llm.eval([tok])
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    return DECODE_TOKENS / (time.perf_counter() - start)


def prefill_run(llm, tokens):
    llm.reset()
    start = time.perf_counter()
    llm.eval(tokens)
    return len(tokens) / (time.perf_counter() - start)


def median_of(fn, runs):
    fn()  # warm-up
    runs_tok_s = [fn() for _ in range(runs)]
    return {"tok_s": round(statistics.median(runs_tok_s), 2), "runs_tok_s": [round(v, 2) for v in runs_tok_s]}


def main():
    ensure_venv()
    import llama_cpp
    from llama_cpp import Llama

    ap = argparse.ArgumentParser(description="llama.cpp decode/prefill speed on SmolLM2 Q4_1")
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    load_before = round(os.getloadavg()[0], 2)
    ref = reference_module()
    llm = Llama(
        model_path=args.model, n_ctx=2048, n_batch=2048, n_ubatch=512, n_threads=args.threads,
        n_threads_batch=args.threads, seed=0, logits_all=False, verbose=False,
    )
    text_tokens = llm.tokenize(ref.TEXT.encode(), add_bos=True, special=False)
    long_tokens = (text_tokens * (PREFILL_TOKENS // len(text_tokens) + 1))[:PREFILL_TOKENS]
    decode_prompt = llm.tokenize(DECODE_PROMPT.encode(), add_bos=True, special=False)

    decode = median_of(lambda: decode_run(llm, decode_prompt), args.runs)
    prefill = median_of(lambda: prefill_run(llm, long_tokens), args.runs)
    result = {
        "engine": "llama.cpp (llama-cpp-python)",
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp": ref.LLAMA_CPP_COMMITS.get(llama_cpp.__version__, "unknown"),
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "model": Path(args.model).name,
        "threads": args.threads,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "arch": platform.machine(),
                    "loadavg_1m_before": load_before},
        "decode": {"prompt_tokens": len(decode_prompt), "tokens": DECODE_TOKENS, **decode},
        "prefill": {"tokens": PREFILL_TOKENS, **prefill},
    }
    print(json.dumps(result, indent=2))


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
