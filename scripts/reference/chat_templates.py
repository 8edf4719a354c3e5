#!/usr/bin/env python3
"""Reference renders of real chat templates, for crates/tokens/tests/chat_templates.rs.

Renders the chat templates of three model families (Llama 3 and Qwen3 from their tokenizer_config.json,
SmolLM2 from its GGUF metadata) with jinja2 configured exactly as transformers'
`_compile_jinja_template` configures it, and writes the cases and the expected text as JSON:
    {family: [{messages, tools, add_generation_prompt, extra, expected}]}

Messages go through the same content normalization as the Rust side (`normalize_content`: text parts
joined with "\\n", null content -> "", as vLLM does for string-content templates) before rendering.
`strftime_now` is frozen at FIXED_NOW, the same instant the Rust test passes to `with_fixed_now`.

Usage: scripts/fixtures.sh && scripts/reference/chat_templates.py [OUTPUT]
  OUTPUT defaults to crates/tokens/tests/fixtures/chat_templates.json. Runs itself in the venv
  $TURBINE_CACHE/venv (default ~/.cache/turbine/venv), creating it with jinja2 and gguf if needed.
"""

import copy
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("TURBINE_CACHE", Path.home() / ".cache" / "turbine"))
VENV = CACHE / "venv"
REQUIREMENTS = ["jinja2==3.1.6", "gguf==0.19.0"]
REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "crates/tokens/tests/fixtures/chat_templates.json"
FIXED_NOW = datetime.datetime(2024, 7, 26, 10, 0, 0)


def ensure_venv():
    """Re-executes this script in the venv, creating it first when it is missing."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import jinja2, gguf"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def compile_template(source):
    """transformers.utils.chat_template_utils._compile_jinja_template, without the assistant-mask
    tracker (the `{% generation %}` tag), which none of these templates use."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def normalize_content(messages):
    """vLLM's "string" content format: text parts joined with "\\n", null content -> ""."""
    out = copy.deepcopy(messages)
    for message in out:
        content = message.get("content")
        if content is None:
            message["content"] = ""
        elif isinstance(content, list):
            texts = []
            for part in content:
                if isinstance(part, str):
                    texts.append(part)
                elif part.get("type") in ("text", "input_text", "output_text"):
                    texts.append(part["text"])
                elif part.get("type") == "refusal":
                    texts.append(part["refusal"])
                else:
                    raise ValueError(f"unexpected content part {part!r}")
            message["content"] = "\n".join(texts)
    return out


def token_text(token):
    """A special token from tokenizer_config.json: a string or an AddedToken object."""
    return token["content"] if isinstance(token, dict) else token


def load_families():
    """{family: (template source, bos_token, eos_token)} from the fixture cache."""
    families = {}
    for family in ("llama3", "qwen3"):
        path = CACHE / "fixtures" / "tokenizers" / family / "tokenizer_config.json"
        config = json.loads(path.read_text())
        families[family] = (
            config["chat_template"],
            token_text(config.get("bos_token")),
            token_text(config.get("eos_token")),
        )
    from gguf import GGUFReader

    reader = GGUFReader(str(CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    fields = reader.fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    families["smollm2"] = (
        fields["tokenizer.chat_template"].contents(),
        tokens[fields["tokenizer.ggml.bos_token_id"].contents()],
        tokens[fields["tokenizer.ggml.eos_token_id"].contents()],
    )
    return families


WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city — in °C or °F.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. \"Zürich\""},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "precision": {"type": "number", "minimum": 0.5, "maximum": 1e20, "default": 1.0},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.\nReturns <b>snippets</b> & links.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}},
        },
    },
]

TOOL_CONVERSATION = [
    {"role": "user", "content": "What's the weather in Zürich and Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21.5, \"sky\": \"☀️\"}"},
    {"role": "tool", "tool_call_id": "call_2", "name": "get_weather", "content": "18"},
]


def case(messages, add_generation_prompt=True, tools=None, extra=None):
    return {"messages": messages, "tools": tools, "add_generation_prompt": add_generation_prompt, "extra": extra}


def common_cases():
    return [
        case([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}]),
        case([{"role": "user", "content": "What is 2+2?"}]),
        case(
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Name a color."},
                {"role": "assistant", "content": "Blue."},
                {"role": "user", "content": "Another one?"},
            ]
        ),
        case(
            [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}],
            add_generation_prompt=False,
        ),
        case(
            [
                {
                    "role": "user",
                    "content": "  Ünïcödé 🦀🚀 中文 \"quotes\" 'single' back\\slash\ttab\n\nline two\n  ",
                }
            ]
        ),
        case(
            [
                {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
            ],
            extra={"unused_kwarg": True},
        ),
        case([{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hello"}]),
    ]


def tool_cases():
    return [
        case(TOOL_CONVERSATION, tools=WEATHER_TOOLS),
        case(
            [{"role": "system", "content": "Use tools when useful."}, {"role": "user", "content": "Search for rust"}],
            tools=WEATHER_TOOLS,
        ),
    ]


def qwen3_cases():
    return [
        case([{"role": "user", "content": "Quick answer: capital of France?"}], extra={"enable_thinking": False}),
        case([{"role": "user", "content": "Think first."}], extra={"enable_thinking": True}),
        case(
            [
                {"role": "user", "content": "First question"},
                {"role": "assistant", "content": "<think>\nhmm, easy\n</think>\n\nFirst answer"},
                {"role": "user", "content": "Second question"},
                {"role": "assistant", "content": "Second answer", "reasoning_content": "\nlet me think\n"},
            ],
            add_generation_prompt=False,
        ),
        case(
            TOOL_CONVERSATION
            + [{"role": "assistant", "content": "Sunny in Zürich, 18 in Paris.", "reasoning_content": "Both done."}],
            tools=WEATHER_TOOLS,
            add_generation_prompt=False,
        ),
    ]


def main():
    ensure_venv()
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    cases = {
        "llama3": common_cases() + tool_cases(),
        "qwen3": common_cases() + tool_cases() + qwen3_cases(),
        "smollm2": common_cases(),
    }
    result = {}
    for family, (source, bos_token, eos_token) in load_families().items():
        template = compile_template(source)
        special = {k: v for k, v in (("bos_token", bos_token), ("eos_token", eos_token)) if v is not None}
        result[family] = []
        for c in cases[family]:
            expected = template.render(
                messages=normalize_content(c["messages"]),
                tools=c["tools"],
                documents=None,
                add_generation_prompt=c["add_generation_prompt"],
                **{**special, **(c["extra"] or {})},
            )
            result[family].append({**c, "expected": expected})
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {sum(len(v) for v in result.values())} cases to {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
