#!/usr/bin/env python3
"""Reference token ids for the SmolLM2 GGUF tokenizer, for crates/tokens/tests/fixtures/smollm2_ids.json.

Prints JSON {text: ids} for a set of varied texts, encoded without added bos/eos and with special
tokens written in the text recognised.

The reference is built independently of Turbine's Rust code: the vocabulary and merges come from
the GGUF (read with the `gguf` package) and are put into the pipeline of SmolLM2's published
tokenizer.json with HF's Python `tokenizers`: no normalizer, pre-tokenizer Digits(individual) then
ByteLevel (GPT-2 regex, no prefix space), control tokens as special added tokens. (transformers'
own GGUF loader needs torch and ignores `tokenizer.ggml.pre = "smollm"`, so it splits numbers
differently from the real model.) If llama-cpp-python is installed, llama.cpp's own tokenizer is
run on the same file as a cross-check and any disagreement is an error.

Setup:  python3 -m venv "$TURBINE_CACHE/venv" && "$TURBINE_CACHE/venv/bin/pip" install gguf tokenizers
        (optional: llama-cpp-python)
Usage:  "$TURBINE_CACHE/venv/bin/python" scripts/reference/tokenizer_ids.py [model.gguf] \
            > crates/tokens/tests/fixtures/smollm2_ids.json
"""

import json
import os
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    'fn main() {\n    println!("{}", 1 + 2);\n}\n',
    "def f(x):\n\treturn x**2  # square\n",
    "12345 and 3.14159, 1,000,000",
    "你好，世界！日本語のテキスト",
    "I love 🦀 and 😀👍🏽!",
    "a  b   c\t\td\n\n\ne    ",
    " leading and trailing spaces ",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "I'm sure they'll say it's fine, don't you think?",
    "Ünïcödé naïve café — “quotes” and ‘apostrophes’",
    "<|endoftext|>",
    "",
]

CONTROL = 3


def field_strings(reader, key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def field_ints(reader, key):
    field = reader.fields[key]
    return [int(field.parts[i][0]) for i in field.data]


def reference_tokenizer(path):
    reader = GGUFReader(path)
    pre = bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    if pre != "smollm":
        sys.exit(f"expected tokenizer.ggml.pre = smollm, got {pre!r}")
    tokens = field_strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field_strings(reader, "tokenizer.ggml.merges")]
    types = field_ints(reader, "tokenizer.ggml.token_type")
    vocab = {token: i for i, token in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == CONTROL]
    )
    return tok


def llama_cpp_ids(path):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    return {t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in TEXTS}


def main():
    cache = os.environ.get("TURBINE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "turbine")
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = reference_tokenizer(path)
    ids = {t: tok.encode(t, add_special_tokens=False).ids for t in TEXTS}
    for text, got in ids.items():
        if tok.decode(got, skip_special_tokens=False) != text:
            sys.exit(f"reference tokenizer does not round-trip {text!r}")
    cross = llama_cpp_ids(path)
    if cross is not None:
        bad = {t: (ids[t], cross[t]) for t in TEXTS if ids[t] != cross[t]}
        if bad:
            sys.exit(f"HF reference and llama.cpp disagree: {json.dumps(bad, ensure_ascii=False)}")
        print("cross-checked against llama.cpp: identical", file=sys.stderr)
    lines = [f" {json.dumps(text, ensure_ascii=False)}: {json.dumps(got)}" for text, got in ids.items()]
    print("{\n" + ",\n".join(lines) + "\n}")


if __name__ == "__main__":
    main()
