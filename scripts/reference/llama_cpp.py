#!/usr/bin/env python3
"""llama.cpp reference outputs for SmolLM2-135M-Instruct (Q4_1 GGUF), for the CPU executor's tests.

Runs llama.cpp (through llama-cpp-python, with llama.cpp's own tokenizer) on the GGUF that
scripts/fixtures.sh fetches and writes one small JSON fixture:

  teacher_forced   a fixed English text (TEXT below, ~400 tokens), tokenized by llama.cpp, evaluated in
                   one pass with logits for every position; per position: top-1 id, its logit, the
                   margin to the second-best logit, and the top-5 ids. llama.cpp's logits carry ~0.1
                   of noise from its 8-bit activation quantization (an AVX2 and an AVX-512 build of
                   the same commit agree on only 96% of top-1s here), so compare top-1 where the
                   margin is clear (>= 0.3: 100% agreement between those builds and with the exact
                   float64 reference of smollm2_f64.py).
  greedy           5 fixed prompts (3 plain text, 2 in SmolLM2's ChatML), 32 greedy tokens each:
                   argmax of the logits at every step (no sampler, no penalties), stopping early only at
                   an end-of-generation token.
  prompt tokens    every text's llama.cpp token ids (`tokens`, `prompt_tokens`), so the Rust test can also
                   check Turbine's tokenizer against llama.cpp's.

Settings: n_ctx 2048, n_threads 2, n_batch 512, seed 0, BOS added only if the GGUF says so
(`tokenizer.ggml.add_bos_token`, false for this model). Each part runs twice in fresh contexts and the
script fails if the two runs differ, so the fixture is deterministic on a given build.

Fixture keys: generator, model {file, sha256, add_bos}, llama_cpp_python, llama_cpp (vendored commit),
ggml_version, system_info, settings, teacher_forced {text, tokens, top1, top1_logit, top1_margin, top5},
greedy [{name, chat, prompt, prompt_tokens, output_tokens, output_margins (top-1 minus top-2 logit at
each step), output_text, stopped_at_eog}].
Logits are rounded to 4 decimals.

Setup: llama-cpp-python==LLAMA_CPP_PYTHON (below) is installed into $TURBINE_CACHE/venv
(default ~/.cache/turbine/venv) if missing. PyPI ships it only as source, so this compiles llama.cpp:
10-20 minutes on 2 cores, logged to $TURBINE_CACHE/llama-cpp-python-build.log. CMAKE_ARGS defaults to
"-DGGML_NATIVE=ON" (tuned to this CPU; --no-cache-dir so that pip does not reuse a wheel it built
earlier with other flags). `python -c "import llama_cpp; print(llama_cpp.llama_print_system_info())"`
shows AVX512 = 1 on an AVX-512 machine for a native build.

Usage: scripts/fixtures.sh model && python3 scripts/reference/llama_cpp.py [--model GGUF] [--out JSON]
  --out defaults to crates/engine/tests/fixtures/reference/smollm2_llama_cpp.json (made on an
  AVX-512 machine); smollm2_llama_cpp_avx2.json beside it was made with --out on an AVX2-only one
  (AMD EPYC Zen 3). The two builds' logits differ (vector widths, expf), and the CPU executor
  reproduces either (`ggml::Width`); cpu_reference.rs checks both.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# This file is named llama_cpp.py: keep `import llama_cpp` from finding it instead of the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

CACHE = Path(os.environ.get("TURBINE_CACHE", Path.home() / ".cache" / "turbine"))
VENV = CACHE / "venv"
REPO = Path(__file__).resolve().parents[2]
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUTPUT = REPO / "crates/engine/tests/fixtures/reference/smollm2_llama_cpp.json"

LLAMA_CPP_PYTHON = "0.3.36"
# The llama.cpp commit each llama-cpp-python release vendors (from its CHANGELOG.md).
LLAMA_CPP_COMMITS = {"0.3.36": "ggml-org/llama.cpp@0c1e57098"}

N_CTX = 2048
N_THREADS = 2
N_BATCH = 512
SEED = 0
GREEDY_TOKENS = 32

TEXT = (
    "The history of bridges is, in many ways, the history of how people learned to move goods and ideas "
    "across difficult ground. The earliest bridges were probably nothing more than fallen trees or flat "
    "stones laid across a stream, but by the time of the Roman Empire engineers were building stone arches "
    "that spanned wide rivers and deep valleys. The Romans understood that an arch carries its load by "
    "compression, pushing outward against the ground on either side, and they used a volcanic ash called "
    "pozzolana to make a durable concrete. Several of their bridges and aqueducts are still standing today, "
    "nearly two thousand years after they were built.\n\n"
    "During the Middle Ages, bridges were often built by religious orders or paid for with tolls, and many "
    "of them carried houses, shops and chapels along their length. The old London Bridge, completed in 1209, "
    "stood for more than six centuries. The Industrial Revolution changed everything: cast iron, and later "
    "wrought iron and steel, allowed engineers to span distances that stone could never reach. The first "
    "iron bridge was raised over the River Severn in England in 1779, and within a hundred years railways "
    "had spread long truss and girder bridges across every continent. Not every experiment succeeded. The "
    "collapse of the Tay Bridge in Scotland during a winter storm in 1879 taught engineers to take the force "
    "of the wind far more seriously.\n\n"
    "In the twentieth century, suspension bridges grew longer and lighter. The Golden Gate Bridge, opened in "
    "1937, held the record for the longest main span for almost thirty years. Modern designers use computer "
    "models to study how a deck will respond to traffic, temperature and earthquakes, and cable-stayed "
    "bridges have become a popular choice for medium spans because they are economical and quick to build. "
    "Yet the basic questions remain the same as they were for the Romans: how to carry a load safely from "
    "one side to the other, and how to make a structure that will last."
)

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
PROMPTS = [
    ("capital", False, "The capital of France is"),
    ("story", False, "Once upon a time, in a small village by the sea, there lived"),
    ("code", False, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("chat_water_cycle", True, CHAT.format("Explain the water cycle in a few sentences.")),
    ("chat_exercise", True, CHAT.format("What are three benefits of regular exercise?")),
]


def ensure_venv():
    """Re-executes this script in the venv, creating it and installing llama-cpp-python if missing."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
    try:
        import llama_cpp  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        log = CACHE / "llama-cpp-python-build.log"
        env = dict(os.environ)
        env.setdefault("CMAKE_ARGS", "-DGGML_NATIVE=ON")
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        print(
            f"llama_cpp.py: installing llama-cpp-python=={LLAMA_CPP_PYTHON} (compiles llama.cpp, "
            f"10-20 minutes on 2 cores; CMAKE_ARGS={env['CMAKE_ARGS']!r}; log: {log})",
            file=sys.stderr,
        )
        with open(log, "w") as f:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-v", "--no-cache-dir", "numpy", f"llama-cpp-python=={LLAMA_CPP_PYTHON}"],
                env=env, stdout=f, stderr=subprocess.STDOUT, check=True,
            )
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ggml_version():
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    for p in sorted(lib.glob("libggml.so.*")):
        m = re.fullmatch(r"libggml\.so\.(\d+\.\d+\.\d+)", p.name)
        if m:
            return m.group(1)
    return "unknown"


def open_model(path):
    from llama_cpp import Llama

    return Llama(
        model_path=str(path), n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_BATCH, n_threads=N_THREADS,
        n_threads_batch=N_THREADS, seed=SEED, logits_all=True, verbose=False,
    )


def tokenize(llm, text, special):
    # add_bos=True adds BOS only when the vocabulary asks for it (llama_vocab_get_add_bos).
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)


def teacher_forced(llm, tokens):
    import numpy as np

    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    order = np.argsort(-logits, axis=1, kind="stable")
    top5 = order[:, :5]
    rows = np.arange(len(tokens))
    top1_logit = logits[rows, top5[:, 0]]
    margin = top1_logit - logits[rows, top5[:, 1]]
    return {
        "top1": [int(i) for i in top5[:, 0]],
        "top1_logit": [round(float(v), 4) for v in top1_logit],
        "top1_margin": [round(float(v), 4) for v in margin],
        "top5": [[int(i) for i in row] for row in top5],
    }


def greedy(llm, prompt_tokens, n):
    import llama_cpp
    import numpy as np

    llm.reset()
    llm.eval(prompt_tokens)
    out, margins = [], []
    stopped = False
    for _ in range(n):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tok = int(np.argmax(logits))
        second = np.partition(logits, -2)[-2]
        out.append(tok)
        margins.append(round(float(logits[tok] - second), 4))
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
            stopped = True
            break
        if len(out) < n:
            llm.eval([tok])
    return out, margins, stopped


def compact_json(obj, indent=0):
    """JSON with scalar lists on one line and lists of lists one inner list per line."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {compact_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and all(isinstance(x, (list, dict)) for x in obj):
        items = [inner + compact_json(x, indent + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":") if isinstance(obj, list) else None)


def main():
    ensure_venv()
    import llama_cpp

    ap = argparse.ArgumentParser(description="llama.cpp reference fixture for SmolLM2")
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--out", default=str(OUTPUT))
    args = ap.parse_args()
    model = Path(args.model)
    if not model.exists():
        sys.exit(f"llama_cpp.py: {model} is missing: run scripts/fixtures.sh model")
    version = llama_cpp.__version__
    if version != LLAMA_CPP_PYTHON:
        print(f"llama_cpp.py: warning: llama-cpp-python {version} installed, pinned {LLAMA_CPP_PYTHON}", file=sys.stderr)

    llm = open_model(model)
    add_bos = bool(llm._model.add_bos_token())

    text_tokens = tokenize(llm, TEXT, special=False)
    tf = teacher_forced(llm, text_tokens)
    if teacher_forced(open_model(model), text_tokens) != tf:
        sys.exit("llama_cpp.py: teacher-forced results differ between two runs")

    cases = []
    for name, chat, prompt in PROMPTS:
        ptoks = tokenize(llm, prompt, special=chat)
        out, margins, stopped = greedy(llm, ptoks, GREEDY_TOKENS)
        again = greedy(open_model(model), ptoks, GREEDY_TOKENS)
        if again != (out, margins, stopped):
            sys.exit(f"llama_cpp.py: greedy output for {name!r} differs between two runs")
        text = llm.detokenize(out, special=True).decode("utf-8", errors="replace")
        cases.append({
            "name": name, "chat": chat, "prompt": prompt, "prompt_tokens": ptoks,
            "output_tokens": out, "output_margins": margins, "output_text": text, "stopped_at_eog": stopped,
        })

    fixture = {
        "generator": "scripts/reference/llama_cpp.py",
        "model": {"file": model.name, "sha256": sha256(model), "add_bos": add_bos},
        "llama_cpp_python": version,
        "llama_cpp": LLAMA_CPP_COMMITS.get(version, "unknown"),
        "ggml_version": ggml_version(),
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "settings": {
            "n_ctx": N_CTX, "n_threads": N_THREADS, "n_batch": N_BATCH, "seed": SEED,
            "greedy_tokens": GREEDY_TOKENS,
        },
        "teacher_forced": {"text": TEXT, "tokens": text_tokens, **tf},
        "greedy": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(compact_json(fixture) + "\n", encoding="utf-8")
    print(f"llama_cpp.py: wrote {out} ({len(text_tokens)} teacher-forced positions, {len(cases)} greedy prompts)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
