#!/usr/bin/env python3
"""Drives `turbine serve` with the official `openai` Python SDK: models, chat and completions,
streaming and not, usage, and errors mapped to the SDK's exception classes. With the echo engine
the texts are checked exactly; with a real model (the CPU engine) the answers must be text of the
asked length that the model's chat template framed (the assistant does not echo the template).

Usage: scripts/checks/openai_sdk.py PATH/TO/turbine [extra serve flags]
Runs itself in $TURBINE_CACHE/venv (default ~/.cache/turbine/venv), installing `openai` if needed.
"""

import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("TURBINE_CACHE", Path.home() / ".cache" / "turbine"))
VENV = CACHE / "venv"


def ensure_venv():
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(python), "-c", "import openai"], capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "openai>=1.40,<3"], check=True)
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(python), [str(python), *sys.argv])


def start(binary, extra):
    server = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline().strip()
    if not line.startswith("turbine: serving "):
        server.kill()
        sys.exit(f"unexpected first line from turbine: {line!r}")
    model, url = line[len("turbine: serving "):].split(" at ")
    return server, model, url


def check(binary, extra):
    import openai

    server, model, url = start(binary, extra)
    echo = "echo" in extra
    try:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list()] == [model]

        chat = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello there"}], max_tokens=5,
            temperature=0,
        )
        assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
        if echo:
            assert chat.choices[0].finish_reason == "length" and chat.usage.completion_tokens == 5
        else:  # a real model may end its answer sooner
            assert chat.choices[0].finish_reason in ("length", "stop"), chat
            assert 0 < chat.usage.completion_tokens <= 5 and chat.choices[0].message.content, chat
        assert chat.usage.prompt_tokens_details.cached_tokens == 0

        chunks = list(
            client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                stream=True,
                stream_options={"include_usage": True},
                temperature=0,
                max_tokens=16,
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].choices == []
        if echo:
            assert "user\nHi" in text, text
        else:
            assert text.strip() and "<|im_start|>" not in text, text

        prompt = "The SDK agrees with us 🦀."
        if echo:
            done = client.completions.create(model=model, prompt=prompt, max_tokens=100, stop=["never"])
            assert done.choices[0].text == prompt and done.choices[0].finish_reason == "stop", done
            streamed = client.completions.create(model=model, prompt=prompt, stream=True, stop=[" with"])
            assert "".join(c.choices[0].text for c in streamed) == "The SDK agrees"
        else:
            done = client.completions.create(
                model=model, prompt="The capital of France is", max_tokens=8, temperature=0
            )
            assert done.choices[0].text and done.usage.completion_tokens <= 8, done
            streamed = list(
                client.completions.create(model=model, prompt=prompt, max_tokens=12, stream=True, temperature=0)
            )
            assert "".join(c.choices[0].text for c in streamed), streamed

        try:
            client.completions.create(model="no-such-model", prompt="x")
            raise AssertionError("unknown model accepted")
        except openai.NotFoundError:
            pass
        try:
            client.completions.create(model=model, prompt="x", temperature=5)
            raise AssertionError("temperature 5 accepted")
        except openai.BadRequestError as err:
            assert "temperature" in str(err)
        print("openai SDK check: ok")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ensure_venv()
    check(sys.argv[1], sys.argv[2:])
