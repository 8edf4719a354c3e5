//! Schema-driven fuzzing of the OpenAI routes against the real binary (echo engine).
//!
//! From a fixed seed, each case mutates a valid `/v1/completions` or `/v1/chat/completions`
//! request along the OpenAI schema (every field with wrong types, edge and out-of-range values,
//! missing required fields, unknown fields, every `prompt` and `messages` form), mangles the body
//! (truncated, invalid UTF-8, lone surrogates, non-JSON number literals, 10k-deep nesting,
//! oversized, empty), varies method, path and content type, or writes HTTP-level garbage over raw
//! TCP (broken request lines and headers, oversized headers, bad chunking, bodies cut short).
//!
//! Every answer must be below 500; a JSON route's 4xx has OpenAI's error shape; a 200 stream ends
//! with `data: [DONE]`; at the end the server is alive with nothing in flight.
//!
//! Reproduce: the seed is printed; `TURBINE_FUZZ_SEED=<u64>` runs another seed and
//! `TURBINE_FUZZ_CASE=<index>` runs one case of it; `TURBINE_FUZZ_VERBOSE=1` prints every case
//! and its answer. Each case depends only on (seed, index).

mod common;

use common::Server;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turbine_bench::sse::SseParser;

const DEFAULT_SEED: u64 = 0x7572_6269_6e65_f022;
const CASES: usize = 1500;
const CONCURRENCY: usize = 16;
const MAX_BODY: usize = 65536;
/// SmolLM2's vocabulary.
const VOCAB: u64 = 49152;
/// One case may take this long before it counts as a hang.
const CASE_LIMIT: Duration = Duration::from_secs(30);
/// All cases together.
const TOTAL_LIMIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// A tiny deterministic PRNG (splitmix64).

struct Rng(u64);

impl Rng {
    fn for_case(seed: u64, index: usize) -> Rng {
        let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Cases.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Well-formed HTTP to the server: every request gets an answer, and JSON routes answer 4xx
    /// with OpenAI's error shape.
    Api,
    /// HTTP-level garbage: the server may close without answering; an answer must be below 500.
    /// The client half-closes after writing, so the server never waits for more.
    Garbage,
    /// Writes the request (cut short) and closes the socket without reading.
    Abandon,
    /// A streaming request read until its first body bytes, then dropped (client goes away).
    DropMidStream,
}

struct Case {
    index: usize,
    what: String,
    request: Vec<u8>,
    kind: Kind,
    /// A HEAD request: responses carry no body.
    head: bool,
}

const COMPLETIONS: &str = "/v1/completions";
const CHAT: &str = "/v1/chat/completions";

fn http(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        out.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn generate(seed: u64, index: usize, model: &str) -> Case {
    let mut rng = Rng::for_case(seed, index);
    let roll = rng.below(100);
    let mut case = match roll {
        0..=84 => json_case(&mut rng, model),
        85..=94 => garbage_case(&mut rng, model),
        95..=97 => abandon_case(&mut rng, model),
        _ => drop_mid_stream_case(&mut rng, model),
    };
    case.index = index;
    case
}

/// A schema-mutated request to one of the JSON routes.
fn json_case(rng: &mut Rng, model: &str) -> Case {
    let chat = rng.one_in(2);
    let mut what = Vec::new();
    let mut raws: Vec<Vec<u8>> = Vec::new();
    let mut request = if chat {
        chat_base(rng, model)
    } else {
        completion_base(rng, model)
    };
    let mutations = match rng.below(10) {
        0 => 0,
        1..=4 => 1,
        5..=7 => 2,
        _ => 3 + rng.below(3),
    };
    let valid_only = rng.one_in(4);
    for _ in 0..mutations {
        if valid_only {
            valid_mutation(rng, &mut request, chat, &mut what);
        } else {
            mutate(rng, &mut request, chat, &mut raws, &mut what);
        }
    }
    let mut body = serde_json::to_vec(&Value::Object(request)).expect("serialize");
    for (i, raw) in raws.iter().enumerate() {
        let placeholder = serde_json::to_vec(&placeholder_name(i)).expect("placeholder");
        body = replace_bytes(&body, &placeholder, raw);
    }
    if rng.one_in(6) {
        mangle_body(rng, &mut body, model, &mut what);
    }
    let mut path = if chat { CHAT } else { COMPLETIONS }.to_string();
    let mut method = "POST";
    let mut content_type = Some("application/json".to_string());
    if rng.one_in(12) {
        path = rng
            .pick(&[
                "/v1/completions/",
                "/v1//completions",
                "/V1/completions",
                "/v1/completions?stream=true&model=x",
                "/v1/chat/completions?x=%ff",
                "/v1/chat/completions/../completions",
                "/v1/%63ompletions",
                "/v1/chat",
                "/v1/models",
                "/v1/models/nope",
                "/v1/embeddings",
                "/",
            ])
            .to_string();
        what.push(format!("path {path}"));
    }
    if rng.one_in(15) {
        method = rng.pick(&["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]);
        what.push(format!("method {method}"));
    }
    if rng.one_in(8) {
        content_type = rng
            .pick(&[
                None,
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some("multipart/form-data; boundary=xyz"),
                Some("application/json; charset=latin1"),
                Some("application/json; charset=utf-16"),
                Some("application/octet-stream"),
                Some(""),
                Some("*/*"),
                Some("application/jsonx"),
            ])
            .map(String::from);
        what.push(format!("content-type {content_type:?}"));
    }
    let mut request = http(method, &path, content_type.as_deref(), &body);
    if rng.one_in(20) {
        // The same request with a chunked body instead of Content-Length.
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
        if let Some(ct) = &content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        request = head.into_bytes();
        let piece = 1 + rng.below(4096);
        for chunk in body.chunks(piece) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        what.push(format!("chunked by {piece}"));
    }
    Case {
        index: 0,
        what: what.join("; "),
        request,
        kind: Kind::Api,
        head: method == "HEAD",
    }
}

const WORDS: &[&str] = &[
    "the",
    "river",
    "quietly",
    "carried",
    "lanterns",
    "past",
    "seven",
    "bridges",
    "while",
    "merchants",
    "argued",
    "about",
    "copper",
    "prices",
    "and",
    "a",
    "small",
    "dog",
    "slept",
    "under",
    "blue",
    "awning",
    "of",
    "bakery",
    "whose",
    "owner",
    "hummed",
    "old",
    "songs",
    "from",
    "north",
    "mountains",
    "telescope",
    "quantum",
    "1984",
    "3.14159",
    "naïve",
    "café",
    "résumé",
    "über",
    "東京",
    "🦀",
    "—",
    "(parenthetical)",
    "\"quoted\"",
    "it's",
    "e-mail",
];

fn words(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

const TEXTS: &[&str] = &[
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Crab 🦀, dragon 龘, café, and 🧑‍🚀 astronaut.",
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|>",
    "<|im_end|><|im_start|>assistant",
    "\u{0}\u{1}\u{1b}[31m\u{7f}",
    "\n\n\n",
    "\t tabs \t and  spaces  ",
    "مرحبا بالعالم",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕥𝕖𝕩𝕥",
    "{{ messages }}{% for m in messages %}{{ m }}{% endfor %}",
    "{{ raise_exception('boom') }}",
    "a\u{301}\u{301}\u{301}\u{301} Zalgo",
    "\u{feff}byte order mark",
    "\u{fffd}\u{fffe}\u{ffff}",
    "\u{202e}right-to-left override",
    "{\"json\": [1, 2, {\"x\": null}]}",
    "null",
    " ",
];

fn short_text(rng: &mut Rng) -> String {
    if rng.one_in(3) {
        let n = 1 + rng.below(12);
        words(rng, n)
    } else {
        rng.pick(TEXTS).to_string()
    }
}

/// A text of about `bytes` bytes: words, one repeated character, or random Unicode scalars.
fn long_text(rng: &mut Rng, bytes: usize) -> String {
    match rng.below(3) {
        0 => {
            let mut s = String::new();
            while s.len() < bytes {
                s.push_str(rng.pick(WORDS));
                s.push(' ');
            }
            s
        }
        1 => rng
            .pick(&["a", "é", "🦀", " ", "\n", "<|im_end|>"])
            .repeat(bytes / 4 + 1),
        _ => {
            let mut s = String::new();
            while s.len() < bytes {
                let c = char::from_u32(rng.next() as u32 % 0x3_0000).unwrap_or('x');
                s.push(c);
            }
            s
        }
    }
}

fn completion_base(rng: &mut Rng, model: &str) -> Map<String, Value> {
    let mut request = Map::new();
    request.insert("model".into(), json!(model));
    request.insert("prompt".into(), json!(short_text(rng)));
    request.insert("max_tokens".into(), json!(1 + rng.below(24)));
    add_stream(rng, &mut request);
    request
}

fn chat_base(rng: &mut Rng, model: &str) -> Map<String, Value> {
    let mut messages = Vec::new();
    if rng.one_in(2) {
        messages
            .push(json!({"role": rng.pick(&["system", "developer"]), "content": short_text(rng)}));
    }
    for turn in 0..1 + rng.below(3) {
        if turn > 0 {
            messages.push(json!({"role": "assistant", "content": short_text(rng)}));
        }
        let content = if rng.one_in(3) {
            json!([{"type": "text", "text": short_text(rng)}])
        } else {
            json!(short_text(rng))
        };
        messages.push(json!({"role": "user", "content": content}));
    }
    let mut request = Map::new();
    request.insert("model".into(), json!(model));
    request.insert("messages".into(), Value::Array(messages));
    let key = if rng.one_in(2) {
        "max_tokens"
    } else {
        "max_completion_tokens"
    };
    request.insert(key.into(), json!(1 + rng.below(24)));
    add_stream(rng, &mut request);
    request
}

fn add_stream(rng: &mut Rng, request: &mut Map<String, Value>) {
    if rng.one_in(2) {
        request.insert("stream".into(), json!(true));
        if rng.one_in(2) {
            request.insert(
                "stream_options".into(),
                json!({"include_usage": rng.one_in(2)}),
            );
        }
    } else if rng.one_in(3) {
        request.insert("stream".into(), json!(false));
    }
}

const COMMON_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "ignore_eos",
    "n",
    "user",
    "stream",
    "stream_options",
    "stop_token_ids",
    "skip_special_tokens",
    "priority",
];
const COMPLETION_FIELDS: &[&str] = &["prompt", "echo", "logprobs", "suffix", "best_of"];
const CHAT_FIELDS: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "logprobs",
    "top_logprobs",
    "chat_template_kwargs",
    "add_generation_prompt",
];
const UNKNOWN_FIELDS: &[&str] = &[
    "frobnicate",
    "response_format",
    "functions",
    "function_call",
    "logit_bias",
    "parallel_tool_calls",
    "service_tier",
    "",
    "model ",
    "MODEL",
    "__proto__",
    "\u{0}",
    "🦀",
];

fn field(rng: &mut Rng, chat: bool) -> &'static str {
    let own = if chat { CHAT_FIELDS } else { COMPLETION_FIELDS };
    if rng.one_in(2) {
        rng.pick(own)
    } else {
        rng.pick(COMMON_FIELDS)
    }
}

fn mutate(
    rng: &mut Rng,
    request: &mut Map<String, Value>,
    chat: bool,
    raws: &mut Vec<Vec<u8>>,
    what: &mut Vec<String>,
) {
    let (name, value) = match rng.below(12) {
        0..=3 => {
            let name = field(rng, chat);
            (name.to_string(), schema_value(rng, name, chat))
        }
        4 | 5 => {
            let name = field(rng, chat);
            (name.to_string(), any_value(rng, 3))
        }
        6 => {
            let name = if chat { "messages" } else { "prompt" };
            let value = if chat {
                messages_form(rng)
            } else {
                prompt_form(rng)
            };
            (name.to_string(), value)
        }
        7 => {
            let keys: Vec<String> = request.keys().cloned().collect();
            if !keys.is_empty() {
                let key = rng.pick(&keys);
                request.remove(&key);
                what.push(format!("remove {key}"));
            }
            return;
        }
        8 => (rng.pick(UNKNOWN_FIELDS).to_string(), any_value(rng, 3)),
        9 => {
            let name = field(rng, chat);
            let literal = raw_literal(rng);
            let value = if rng.one_in(3) {
                json!([placeholder(raws, literal)])
            } else {
                placeholder(raws, literal)
            };
            (name.to_string(), value)
        }
        10 => {
            // A nested field of a nested object.
            let name = rng.pick(&["stream_options", "chat_template_kwargs", "messages"]);
            let inner = any_value(rng, 2);
            let value = match name {
                "messages" => {
                    json!([{"role": "user", "content": "hi", rng.pick(&["content", "role", "name", "tool_calls", "tool_call_id", "reasoning_content", "extra"]): inner}])
                }
                "stream_options" => json!({"include_usage": inner}),
                _ => {
                    json!({rng.pick(&["enable_thinking", "bos_token", "eos_token", "messages", "tools", "documents", "add_generation_prompt", "range", "loop", "namespace", "raise_exception", "x"]): inner})
                }
            };
            (name.to_string(), value)
        }
        _ => {
            let name = rng.pick(&["max_tokens", "stop", "stream", "n"]);
            (name.to_string(), schema_value(rng, name, chat))
        }
    };
    what.push(format!("{name} = {}", abbreviate(&value.to_string(), 160)));
    request.insert(name, value);
}

/// A change that keeps the request valid (or at most over the context): exercises the whole
/// serving path with unusual values.
fn valid_mutation(
    rng: &mut Rng,
    request: &mut Map<String, Value>,
    chat: bool,
    what: &mut Vec<String>,
) {
    let (name, value) = match rng.below(if chat { 14 } else { 13 }) {
        0 | 1 => {
            let source = request
                .get("prompt")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| short_text(rng));
            let stops = (0..rng.below(17))
                .map(|_| {
                    if rng.one_in(3) || source.is_empty() {
                        json!(rng.pick(&["", " ", "é", "🦀", "\u{301}", "<|im_end|>", "\n", "the"]))
                    } else {
                        json!(substring(rng, &source))
                    }
                })
                .collect();
            ("stop", Value::Array(stops))
        }
        2 => ("max_tokens", json!(1 + rng.below(200))),
        3 => ("temperature", json!(rng.below(2001) as f64 / 1000.0)),
        4 => (
            rng.pick(&["top_p", "min_p"]),
            json!((1 + rng.below(1000)) as f64 / 1000.0),
        ),
        5 => (
            rng.pick(&["presence_penalty", "frequency_penalty"]),
            json!(rng.below(4001) as f64 / 1000.0 - 2.0),
        ),
        6 => (
            rng.pick(&[
                "top_k",
                "seed",
                "repetition_penalty",
                "n",
                "best_of",
                "priority",
            ]),
            rng.pick(&[
                json!(1),
                json!(-1),
                json!(0),
                json!(5),
                json!(i64::MIN),
                json!(10),
            ]),
        ),
        7 => (
            rng.pick(&["ignore_eos", "skip_special_tokens", "echo", "logprobs"]),
            json!(rng.one_in(2)),
        ),
        8 => (
            "stop_token_ids",
            Value::Array(
                (0..rng.below(5))
                    .map(|_| json!(rng.below(VOCAB as usize)))
                    .collect(),
            ),
        ),
        9 => ("user", json!(short_text(rng))),
        10 => ("stream_options", json!({"include_usage": rng.one_in(2)})),
        11 if !chat => {
            let value = match rng.below(4) {
                0 => json!([short_text(rng), short_text(rng)]),
                // Special tokens included: 0 <|endoftext|>, 1 <|im_start|>, 2 <|im_end|>.
                1 => Value::Array(
                    (0..1 + rng.below(40))
                        .map(|_| json!(rng.below(VOCAB as usize)))
                        .collect(),
                ),
                2 => json!([[1, 2, 3], [0], [rng.below(VOCAB as usize)]]),
                _ => json!(rng.pick(TEXTS)),
            };
            ("prompt", value)
        }
        12 if !chat => ("suffix", json!("")),
        11 => {
            let messages: Vec<Value> = (0..1 + rng.below(5))
                .map(|i| {
                    let role = rng.pick(&["system", "developer", "user", "assistant", "tool"]);
                    let content = if rng.one_in(3) {
                        json!([{"type": "text", "text": short_text(rng)}, "bare", {"type": "input_text", "text": "x"}])
                    } else if rng.one_in(5) {
                        Value::Null
                    } else {
                        json!(short_text(rng))
                    };
                    let mut m = json!({"role": role, "content": content});
                    if role == "tool" {
                        m["tool_call_id"] = json!(format!("call_{i}"));
                    }
                    if role == "assistant" && rng.one_in(3) {
                        m["tool_calls"] = json!([{"id": format!("call_{i}"), "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]);
                    }
                    m
                })
                .collect();
            ("messages", Value::Array(messages))
        }
        12 => (
            rng.pick(&["tools", "tool_choice"]),
            schema_value(rng, "tools", true),
        ),
        _ => (
            rng.pick(&["chat_template_kwargs", "add_generation_prompt"]),
            rng.pick(&[
                json!({"enable_thinking": true}),
                json!(false),
                json!(true),
                json!({}),
            ]),
        ),
    };
    what.push(format!("{name} = {}", abbreviate(&value.to_string(), 160)));
    request.insert(name.to_string(), value);
}

/// A piece of `text` cut at random character boundaries.
fn substring(rng: &mut Rng, text: &str) -> String {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let a = rng.pick(&bounds);
    let b = rng.pick(&bounds);
    text[a.min(b)..a.max(b)].to_string()
}

fn placeholder_name(i: usize) -> Value {
    Value::String(format!("\u{E000}raw{i}\u{E000}"))
}

/// A value that becomes raw bytes in the body after serialization.
fn placeholder(raws: &mut Vec<Vec<u8>>, bytes: Vec<u8>) -> Value {
    raws.push(bytes);
    placeholder_name(raws.len() - 1)
}

fn raw_literal(rng: &mut Rng) -> Vec<u8> {
    let nested = |open: &str, close: &str, depth: usize, inner: &str| -> Vec<u8> {
        format!("{}{inner}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
    };
    match rng.below(22) {
        0 => b"NaN".to_vec(),
        1 => b"Infinity".to_vec(),
        2 => b"-Infinity".to_vec(),
        3 => b"1e999".to_vec(),
        4 => b"-1e999".to_vec(),
        5 => b"100000000000000000000000000000".to_vec(),
        6 => b"-0".to_vec(),
        7 => rng
            .pick(&["01", "1.", ".5", "+1", "0x10", "1e", "--1"])
            .as_bytes()
            .to_vec(),
        8 => rng
            .pick(&["undefined", "True", "None", "'single'", "nul"])
            .as_bytes()
            .to_vec(),
        9 => br#""\ud800""#.to_vec(),
        10 => br#""lone \udc00 low""#.to_vec(),
        11 => b"\"\xff\xfe invalid utf-8\"".to_vec(),
        12 => b"\"trunc\xc3\"".to_vec(),
        13 => b"\"\xed\xa0\x80 encoded surrogate\"".to_vec(),
        14 => b"\"\xc0\xaf overlong\"".to_vec(),
        15 => b"\"raw \x01 control \n newline\"".to_vec(),
        16 => br#""bad \q escape""#.to_vec(),
        17 => nested("[", "]", 10_000, ""),
        18 => nested("{\"a\":", "}", 3_000, "1"),
        19 => nested("[", "]", 127 + rng.below(4), "1"),
        20 => "[".repeat(10_000).into_bytes(),
        _ => nested("[{\"type\":\"text\",\"text\":", "}]", 200, "\"x\""),
    }
}

const INTS: &[i128] = &[
    0,
    1,
    2,
    -1,
    15,
    16,
    17,
    255,
    256,
    257,
    4096,
    49151,
    49152,
    65535,
    i32::MAX as i128,
    i32::MIN as i128,
    u32::MAX as i128,
    u32::MAX as i128 + 1,
    i64::MAX as i128,
    i64::MIN as i128,
    u64::MAX as i128,
];

fn int(rng: &mut Rng) -> Value {
    let v = rng.pick(INTS);
    if v < 0 {
        json!(v as i64)
    } else {
        json!(v as u64)
    }
}

fn float(rng: &mut Rng) -> Value {
    json!(rng.pick(&[
        0.0, -0.0, 0.5, -0.5, 1.0, 1.5, 2.0, 2.000001, -2.0, -2.000001, 10.0, 10.5, 1e-45, 1e-300,
        3.4e38, 3.5e38, 1e39, 1e300, -1e300,
    ]))
}

fn string(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => json!(""),
        1 => json!(rng.pick(&[
            "NaN", "Infinity", "-1", "1e999", "true", "null", "0x1f", " 1 "
        ])),
        2 => {
            let size = rng.pick(&[100, 1000, 5000, 20_000, 70_000]);
            json!(long_text(rng, size))
        }
        _ => json!(short_text(rng)),
    }
}

/// A value of a random JSON type.
fn any_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.one_in(2)),
        2 => int(rng),
        3 => float(rng),
        4 => string(rng),
        5 => Value::Array(
            (0..rng.below(5))
                .map(|_| any_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.below(4) {
                let key = if rng.one_in(2) {
                    rng.pick(COMMON_FIELDS).to_string()
                } else {
                    short_text(rng)
                };
                map.insert(key, any_value(rng, depth - 1));
            }
            Value::Object(map)
        }
    }
}

fn bool_like(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!(true),
        json!(false),
        json!("true"),
        json!(1),
        json!(0),
        Value::Null,
        json!([true]),
    ])
}

/// A value that is plausible (or deliberately just out of range) for `name`.
fn schema_value(rng: &mut Rng, name: &str, chat: bool) -> Value {
    match name {
        "model" => rng.pick(&[json!("nope"), json!(""), json!(" "), json!("smollm2"), json!(5)]),
        "max_tokens" | "max_completion_tokens" | "n" | "best_of" | "top_logprobs" | "top_k"
        | "seed" | "priority" => {
            if rng.one_in(4) {
                rng.pick(&[json!(1.0), json!(1.5), json!("1"), json!(-0.0), json!(1e10)])
            } else {
                int(rng)
            }
        }
        "logprobs" if chat => bool_like(rng),
        "logprobs" => {
            if rng.one_in(2) {
                int(rng)
            } else {
                bool_like(rng)
            }
        }
        "temperature" | "top_p" | "min_p" | "presence_penalty" | "frequency_penalty"
        | "repetition_penalty" => {
            if rng.one_in(4) {
                int(rng)
            } else {
                float(rng)
            }
        }
        "ignore_eos" | "stream" | "skip_special_tokens" | "echo" | "add_generation_prompt" => {
            bool_like(rng)
        }
        "user" | "suffix" => string(rng),
        "stop" => stop_form(rng),
        "stop_token_ids" => rng.pick(&[
            json!([]),
            json!([0]),
            json!([2, 0, 1]),
            json!([u32::MAX]),
            json!([-1]),
            json!([1.5]),
            json!("2"),
            json!([[1]]),
            Value::Array((0..1000).map(|i| json!(i)).collect()),
        ]),
        "stream_options" => rng.pick(&[
            json!({"include_usage": true}),
            json!({"include_usage": false}),
            json!({"include_usage": null}),
            json!({"include_usage": "yes"}),
            json!({}),
            json!({"include_usage": true, "continuous_usage_stats": true}),
            Value::Null,
            json!([]),
            json!("include_usage"),
        ]),
        "tools" => rng.pick(&[
            json!([]),
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]),
            json!([{"type": "function"}]),
            json!([1, "x", null, [], {}]),
            json!({"type": "function"}),
            json!("none"),
        ]),
        "tool_choice" => rng.pick(&[
            json!("auto"),
            json!("none"),
            json!("required"),
            json!({"type": "function", "function": {"name": "get_weather"}}),
            json!(5),
            Value::Null,
        ]),
        "chat_template_kwargs" => rng.pick(&[
            json!({}),
            json!({"enable_thinking": false}),
            json!({"messages": []}),
            json!({"tools": 5}),
            json!({"documents": 1}),
            json!({"add_generation_prompt": false}),
            json!({"bos_token": "<X>", "eos_token": null}),
            json!({"range": 1, "loop": "x", "namespace": [], "raise_exception": {}}),
            json!({"": 1, "🦀": {"deep": [[[[1]]]]}}),
            json!(5),
            json!([]),
        ]),
        "prompt" => prompt_form(rng),
        "messages" => messages_form(rng),
        _ => any_value(rng, 2),
    }
}

fn stop_form(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!(short_text(rng)),
        1 => json!(""),
        2 => Value::Array((0..rng.below(24)).map(|_| json!(short_text(rng))).collect()),
        3 => json!(["", "", ""]),
        4 => json!([" ", "e", "é", "🦀", "\u{301}", "<|im_end|>", "\n"]),
        5 => json!([long_text(rng, 3000)]),
        6 => json!(["ok", 1, null]),
        _ => any_value(rng, 1),
    }
}

fn token_id(rng: &mut Rng) -> Value {
    if rng.one_in(4) {
        rng.pick(&[
            json!(VOCAB),
            json!(VOCAB + 1),
            json!(u32::MAX),
            json!(u32::MAX as u64 + 1),
            json!(-1),
            json!(i64::MIN),
            json!(1.5),
            json!(1000.0),
            json!("5"),
            Value::Null,
        ])
    } else if rng.one_in(8) {
        json!(rng.pick(&[0, 1, 2, 49151]))
    } else {
        json!(rng.below(VOCAB as usize))
    }
}

fn token_ids(rng: &mut Rng) -> Value {
    let n = rng.pick(&[0, 1, 3, 20, 250, 255, 256, 300]);
    let clean = rng.one_in(2);
    Value::Array(
        (0..n)
            .map(|_| {
                if clean {
                    json!(3 + rng.below(VOCAB as usize - 3))
                } else {
                    token_id(rng)
                }
            })
            .collect(),
    )
}

fn prompt_form(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => json!(short_text(rng)),
        1 => json!(""),
        2 => {
            let size = rng.pick(&[600, 2000, 10_000, 60_000, 70_000]);
            json!(long_text(rng, size))
        }
        3 => Value::Array((0..rng.below(6)).map(|_| json!(short_text(rng))).collect()),
        4 => json!([]),
        5 => json!(["", "x"]),
        6 => token_ids(rng),
        7 => Value::Array((0..1 + rng.below(4)).map(|_| token_ids(rng)).collect()),
        8 => json!([[]]),
        9 => json!(["text", 5]),
        10 => json!([[1, 2], "text"]),
        11 => json!([[[1]]]),
        12 => {
            // Many small prompts; max_tokens stays as the base set it.
            Value::Array((0..rng.pick(&[64, 500])).map(|_| json!("hi")).collect())
        }
        _ => any_value(rng, 2),
    }
}

fn content_form(rng: &mut Rng) -> Option<Value> {
    Some(match rng.below(14) {
        0 => return None,
        1 => Value::Null,
        2 => json!(""),
        3 => {
            json!([{"type": "text", "text": short_text(rng)}, {"type": "text", "text": short_text(rng)}])
        }
        4 => json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]),
        5 => json!([{"type": "text"}]),
        6 => json!([{"type": "text", "text": 5}]),
        7 => json!(["bare string part"]),
        8 => json!([]),
        9 => json!([{"type": "input_text", "text": "x"}, {"type": "refusal", "refusal": "no"}]),
        10 => {
            let size = rng.pick(&[1000, 10_000]);
            json!(long_text(rng, size))
        }
        11 => any_value(rng, 2),
        _ => json!(short_text(rng)),
    })
}

fn message(rng: &mut Rng) -> Value {
    if rng.one_in(15) {
        return any_value(rng, 2);
    }
    let role = rng.pick(&[
        json!("system"),
        json!("developer"),
        json!("user"),
        json!("user"),
        json!("assistant"),
        json!("tool"),
        json!("function"),
        json!("wizard"),
        json!(""),
        json!("User"),
        Value::Null,
        json!(5),
    ]);
    let mut m = Map::new();
    if !rng.one_in(12) {
        m.insert("role".into(), role);
    }
    if let Some(content) = content_form(rng) {
        m.insert("content".into(), content);
    }
    if rng.one_in(5) {
        let (key, value) = rng.pick(&[
            ("name", json!("alice")),
            ("name", json!(7)),
            ("tool_call_id", json!("call_1")),
            ("tool_call_id", json!([])),
            ("reasoning_content", json!("thinking...")),
            (
                "tool_calls",
                json!([{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]),
            ),
            ("tool_calls", json!([{"function": {"arguments": {"not": "a string"}}}])),
            ("tool_calls", json!("x")),
            ("unknown", json!({"a": 1})),
        ]);
        m.insert(key.into(), value);
    }
    Value::Object(m)
}

fn messages_form(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => json!([]),
        1 => rng.pick(&[
            json!({}),
            json!("hi"),
            Value::Null,
            json!(5),
            json!([1]),
            json!([[]]),
            json!([null]),
        ]),
        2 => Value::Array((0..rng.pick(&[50, 200])).map(|_| message(rng)).collect()),
        _ => Value::Array((0..1 + rng.below(5)).map(|_| message(rng)).collect()),
    }
}

/// Replaces or damages the whole serialized body.
fn mangle_body(rng: &mut Rng, body: &mut Vec<u8>, model: &str, what: &mut Vec<String>) {
    let choice = rng.below(16);
    match choice {
        0 => {
            let at = rng.below(body.len());
            body.truncate(at);
            what.push(format!("truncated at {at}"));
            return;
        }
        1 => {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(body.len() + 1);
                let byte = rng.pick(&[0xff, 0xfe, 0xc3, 0x80, 0xed, 0xf4, 0x00, 0x1f]);
                body.insert(at, byte);
            }
        }
        2 => *body = Vec::new(),
        3 => {
            *body = rng
                .pick(&[
                    "null",
                    "[]",
                    "{}",
                    "\"str\"",
                    "1",
                    "true",
                    "{\"model\":",
                    " \n\t ",
                    "{}{}",
                    "[{}]",
                ])
                .as_bytes()
                .to_vec();
        }
        4 => {
            let mut with_bom = "\u{feff}".as_bytes().to_vec();
            with_bom.append(body);
            *body = with_bom;
        }
        5 => body.extend_from_slice(rng.pick(&[
            &b"}"[..],
            b"x",
            b", {}",
            b"\0",
            b"\n\n",
            b"// comment",
        ])),
        6 => {
            // A duplicate key.
            if body.last() == Some(&b'}') {
                body.pop();
                body.extend_from_slice(format!(r#","model":"{model}"}}"#).as_bytes());
            }
        }
        7 => *body = "[".repeat(10_000).into_bytes(),
        8 => *body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        9 => *body = format!("{}1{}", "{\"a\":".repeat(8_000), "}".repeat(8_000)).into_bytes(),
        10 => {
            *body = format!(
                r#"{{"model":"{model}","prompt":{}"x"{}}}"#,
                "[".repeat(20_000),
                "]".repeat(20_000)
            )
            .into_bytes()
        }
        11 => {
            // Padded with whitespace to exactly the limit, and one byte over.
            let target = MAX_BODY + rng.below(2);
            if body.len() < target && body.first() == Some(&b'{') {
                let pad = target - body.len();
                body.splice(1..1, std::iter::repeat_n(b' ', pad));
            }
        }
        12 => *body = vec![b'x'; MAX_BODY + 1 + rng.below(100_000)],
        13 => {
            let at = rng.below(body.len() + 1);
            body.splice(
                at..at,
                b"\r\n\r\nGET /live HTTP/1.1\r\n\r\n".iter().copied(),
            );
        }
        14 => {
            // UTF-16 encoded.
            let text = String::from_utf8_lossy(body).into_owned();
            *body = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        }
        _ => *body = (0..rng.below(2000)).map(|_| rng.next() as u8).collect(),
    }
    what.push(format!("body mangled ({choice})"));
}

/// HTTP-level garbage.
fn garbage_case(rng: &mut Rng, model: &str) -> Case {
    let valid = format!(r#"{{"model":"{model}","prompt":"hi","max_tokens":2}}"#);
    let choice = rng.below(20);
    let request: Vec<u8> = match choice {
        0 => (0..1 + rng.below(4096)).map(|_| rng.next() as u8).collect(),
        1 => (0..1 + rng.below(2048))
            .map(|_| rng.pick(b"GETPOST /v1:\r\n HTTP/1.1 abc{}\"\t"))
            .collect(),
        2 => rng
            .pick(&[
                "POST\r\n\r\n",
                "POST /v1/completions\r\n\r\n",
                "POST /v1/completions HTTP/1.1 extra\r\n\r\n",
                "POST /v1/completions HTTP/2.0\r\n\r\n",
                "POST /v1/completions HTTP/1.1\n\n",
                "\r\n\r\n\r\n",
                "GET http://[::1 HTTP/1.1\r\n\r\n",
                "P\0ST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n",
                "POST /v1/com pletions HTTP/1.1\r\nHost: x\r\n\r\n",
                "POST /v1/completions\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
                "POST * HTTP/1.1\r\nHost: x\r\n\r\n",
                "CONNECT x:80 HTTP/1.1\r\nHost: x\r\n\r\n",
                "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                "POST /v1/completions#frag HTTP/1.1\r\nHost: x\r\n\r\n",
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
            ])
            .as_bytes()
            .to_vec(),
        3 => format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\n{}\r\nContent-Length: {}\r\n\r\n{valid}",
            rng.pick(&[
                "No colon here",
                " Leading-Space: x",
                "Space Before : x",
                "Bad\0Name: x",
                "Value: bad\0value",
                "Value: bad\rvalue",
                ": empty name",
                "Folded: a\r\n  continued",
            ]),
            valid.len()
        )
        .into_bytes(),
        4 => {
            let size = rng.pick(&[8_000, 64_000, 200_000, 1_000_000]);
            format!(
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: {}\r\n\r\n{valid}",
                "v".repeat(size),
                valid.len()
            )
            .into_bytes()
        }
        5 => {
            let count = rng.pick(&[99, 150, 1000]);
            let headers: String = (0..count).map(|i| format!("X-H{i}: {i}\r\n")).collect();
            format!(
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n{valid}",
                valid.len()
            )
            .into_bytes()
        }
        6 => format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\n{}\r\n\r\n{valid}",
            rng.pick(&[
                "Content-Length: abc",
                "Content-Length: -1",
                "Content-Length: 99999999999999999999999",
                "Content-Length: 1, 2",
                "Content-Length: 5\r\nContent-Length: 6",
                "Content-Length: 0x10",
                "Content-Length: +5",
                "Content-Length: 18446744073709551615",
            ])
        )
        .into_bytes(),
        7 => format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{valid}",
            valid.len()
        )
        .into_bytes(),
        8 => format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            rng.pick(&[
                "zz\r\nabc\r\n0\r\n\r\n",
                "ffffffffffffffffffff\r\nabc\r\n",
                "5\r\nabc\r\n0\r\n\r\n",
                "3;ext=\"x\r\nabc\r\n0\r\n\r\n",
                "2\r\n{}\r\n",
                "2\r\n{}\r\n0\r\nTrailer: x\r\n\r\n",
                "-1\r\n\r\n",
                "10000\r\n{",
            ])
        )
        .into_bytes(),
        9 => format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n",
            rng.pick(&["gzip", "gzip, chunked", "chunked, gzip", "identity", "chunked, chunked", "xchunked"])
        )
        .into_bytes(),
        10 => format!(
            "POST /v1/completions HTTP/1.0\r\nContent-Length: {}\r\n\r\n{valid}",
            valid.len()
        )
        .into_bytes(),
        11 => format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n{valid}",
            valid.len()
        )
        .into_bytes(),
        12 => format!(
            "POST /{} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}",
            "v".repeat(rng.pick(&[10_000, 100_000, 500_000]))
        )
        .into_bytes(),
        13 => {
            let mut r =
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Bytes: \x80\xff\xfe obs-text\r\n"
                    .to_vec();
            r.extend_from_slice(format!("Content-Length: {}\r\n\r\n{valid}", valid.len()).as_bytes());
            r
        }
        14 => format!(
            "POST http://other.example/v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{valid}",
            valid.len()
        )
        .into_bytes(),
        15 => {
            // Pipelined: several requests in one write.
            let one = |close: bool| {
                format!(
                    "POST /v1/completions HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\n\r\n{valid}",
                    if close { "Connection: close\r\n" } else { "" },
                    valid.len()
                )
            };
            format!("{}{}{}", one(false), one(false), one(true)).into_bytes()
        }
        16 => b"GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n".to_vec(),
        17 => b"GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
        18 => format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}",
            MAX_BODY * 4,
            "x".repeat(MAX_BODY * 4)
        )
        .into_bytes(),
        _ => format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096)).repeat(MAX_BODY / 4096 + 2)
        )
        .into_bytes(),
    };
    Case {
        index: 0,
        what: format!("garbage ({choice})"),
        request,
        kind: Kind::Garbage,
        head: false,
    }
}

/// A request whose body stops early; the client closes (or half-closes) the socket.
fn abandon_case(rng: &mut Rng, model: &str) -> Case {
    let size = 1000 + rng.below(30_000);
    let prompt = long_text(rng, size);
    let body = serde_json::to_vec(&json!({"model": model, "prompt": prompt})).expect("json");
    let sent = rng.below(body.len());
    let mut request = http("POST", COMPLETIONS, Some("application/json"), &body);
    let head = request.len() - body.len();
    request.truncate(head + sent);
    let half_close = rng.one_in(2);
    Case {
        index: 0,
        what: format!(
            "body cut at {sent} of {} bytes, then {}",
            body.len(),
            if half_close { "half-close" } else { "close" }
        ),
        request,
        kind: if half_close {
            Kind::Garbage
        } else {
            Kind::Abandon
        },
        head: false,
    }
}

fn drop_mid_stream_case(rng: &mut Rng, model: &str) -> Case {
    let chat = rng.one_in(2);
    let text = words(rng, 60);
    let body = if chat {
        json!({"model": model, "messages": [{"role": "user", "content": text}], "stream": true})
    } else {
        json!({"model": model, "prompt": text, "stream": true})
    };
    let body = serde_json::to_vec(&body).expect("json");
    Case {
        index: 0,
        what: "stream dropped after its first bytes".into(),
        request: http(
            "POST",
            if chat { CHAT } else { COMPLETIONS },
            Some("application/json"),
            &body,
        ),
        kind: Kind::DropMidStream,
        head: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case and judging the answer.

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match find(haystack, needle) {
        Some(at) => [&haystack[..at], with, &haystack[at + needle.len()..]].concat(),
        None => haystack.to_vec(),
    }
}

/// Every response in `bytes` (several when requests were pipelined).
fn parse_responses(mut bytes: &[u8], head_request: bool) -> Result<Vec<Response>, String> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let end = find(bytes, b"\r\n\r\n").ok_or("response head is incomplete")?;
        let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "response head is not UTF-8")?;
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 100 || status == 101 {
            if status == 101 {
                return Err("unexpected protocol switch".into());
            }
            continue;
        }
        if !(head_request || status == 204 || status == 304) {
            if response
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                let (body, rest) = dechunk(bytes)?;
                response.body = body;
                bytes = rest;
            } else if let Some(length) = response.header("content-length") {
                let length: usize = length.parse().map_err(|_| "bad content-length")?;
                if bytes.len() < length {
                    return Err(format!("body cut short: {} of {length} bytes", bytes.len()));
                }
                response.body = bytes[..length].to_vec();
                bytes = &bytes[length..];
            } else {
                response.body = bytes.to_vec();
                bytes = &[];
            }
        }
        responses.push(response);
    }
    Ok(responses)
}

fn dechunk(mut bytes: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(bytes, b"\r\n").ok_or("chunked body ends without its last chunk")?;
        let line = std::str::from_utf8(&bytes[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let end = find(bytes, b"\r\n").ok_or("chunked body ends inside trailers")?;
                bytes = &bytes[end + 2..];
                if end == 0 {
                    return Ok((body, bytes));
                }
            }
        }
        if bytes.len() < size + 2 {
            return Err("chunk cut short".into());
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

fn check_error_shape(body: &[u8]) -> Result<(), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("error body is not JSON ({e})"))?;
    let error = value
        .get("error")
        .and_then(Value::as_object)
        .ok_or("no `error` object")?;
    if error
        .get("message")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("`error.message` is not a non-empty string".into());
    }
    if !error.get("type").is_some_and(Value::is_string) {
        return Err("`error.type` is not a string".into());
    }
    for key in ["param", "code"] {
        match error.get(key) {
            Some(Value::Null | Value::String(_)) => {}
            _ => return Err(format!("`error.{key}` is missing or not null/string")),
        }
    }
    Ok(())
}

fn check_stream(body: &[u8]) -> Result<(), String> {
    if !body.ends_with(b"data: [DONE]\n\n") {
        return Err("stream does not end with `data: [DONE]`".into());
    }
    let events = SseParser::default().push(body);
    let (last, rest) = events.split_last().ok_or("empty stream")?;
    if last != "[DONE]" {
        return Err("last event is not [DONE]".into());
    }
    for event in rest {
        let value: Value =
            serde_json::from_str(event).map_err(|e| format!("event is not JSON ({e}): {event}"))?;
        if value.get("error").is_some() {
            return Err(format!("error inside a 200 stream: {event}"));
        }
        if !value.get("choices").is_some_and(Value::is_array) {
            return Err(format!("event without choices: {event}"));
        }
    }
    Ok(())
}

fn check_api_response(response: &Response) -> Result<(), String> {
    match response.status {
        500.. => Err("server error".into()),
        400..=499 => check_error_shape(&response.body),
        200 => {
            if response
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("text/event-stream"))
            {
                check_stream(&response.body)
            } else {
                let value: Value = serde_json::from_slice(&response.body)
                    .map_err(|e| format!("200 body is not JSON ({e})"))?;
                let is_generation = value.get("choices").is_some_and(Value::is_array)
                    && value.get("usage").is_some_and(Value::is_object);
                let is_other = value.get("status").is_some() || value.get("object").is_some();
                if is_generation || is_other {
                    Ok(())
                } else {
                    Err("200 body is neither a completion nor a known object".into())
                }
            }
        }
        other => Err(format!("unexpected status {other}")),
    }
}

/// What a case got, for the summary; `Err` is a finding.
async fn execute(address: SocketAddr, case: &Case) -> Result<String, String> {
    let mut socket = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let written = socket.write_all(&case.request).await;
    match case.kind {
        Kind::Api => written.map_err(|e| format!("write: {e}"))?,
        Kind::Abandon => return Ok("abandoned".into()),
        // The server may answer and close before reading everything.
        Kind::Garbage => {
            let _ = socket.shutdown().await;
        }
        Kind::DropMidStream => {
            written.map_err(|e| format!("write: {e}"))?;
            // Read until the head and some body bytes are in, then drop the socket.
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            while find(&received, b"\r\n\r\n").is_none_or(|end| received.len() == end + 4) {
                let n = socket
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("closed before the first body bytes".into());
                }
                received.extend_from_slice(&buf[..n]);
            }
            let status = parse_status(&received)?;
            if status != 200 {
                return Err(format!("status {status}"));
            }
            return Ok("dropped mid-stream".into());
        }
    }
    let mut received = Vec::new();
    let read = socket.read_to_end(&mut received).await;
    if received.is_empty() {
        return match (case.kind, read) {
            (Kind::Api, Ok(_)) => Err("connection closed without a response".into()),
            (Kind::Api, Err(err)) => Err(format!("no response: {err}")),
            _ => Ok("no response".into()),
        };
    }
    let responses = match (parse_responses(&received, case.head), case.kind) {
        (Ok(responses), _) => responses,
        (Err(err), Kind::Api) => {
            return Err(format!(
                "{err} (read: {read:?}); received {}",
                abbreviate(&String::from_utf8_lossy(&received), 600)
            ));
        }
        // The HTTP/2 preface is not garbage: the server speaks HTTP/2 (prior knowledge) back.
        (Err(_), Kind::Garbage)
            if case
                .request
                .starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                && !received.starts_with(b"HTTP/") =>
        {
            return Ok("answered in HTTP/2".into());
        }
        // Garbage may be answered and then reset before the answer is whole.
        (Err(_), _) => {
            let status = parse_status(&received)?;
            if status >= 500 {
                return Err(format!("status {status}"));
            }
            return Ok(format!("{status} (partial)"));
        }
    };
    if responses.is_empty() {
        return match case.kind {
            Kind::Api => Err("only an interim (1xx) response".into()),
            _ => Ok("interim response only".into()),
        };
    }
    let statuses: Vec<String> = responses.iter().map(|r| r.status.to_string()).collect();
    if std::env::var_os("TURBINE_FUZZ_VERBOSE").is_some() {
        let first = responses
            .first()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned());
        eprintln!(
            "case {} [{}]: {} -> {}",
            case.index,
            case.what,
            statuses.join("+"),
            abbreviate(&first.unwrap_or_default(), 200)
        );
    }
    for response in &responses {
        if response.status >= 500 {
            return Err(format!("status {}", response.status));
        }
        if case.kind == Kind::Api {
            if case.head {
                if response.status >= 400 && response.status != 405 && response.status != 404 {
                    return Err(format!("HEAD got {}", response.status));
                }
                continue;
            }
            check_api_response(response).map_err(|e| {
                format!(
                    "{e}; status {}, body {}",
                    response.status,
                    abbreviate(&String::from_utf8_lossy(&response.body), 600)
                )
            })?;
        }
    }
    Ok(statuses.join("+"))
}

fn parse_status(bytes: &[u8]) -> Result<u16, String> {
    let line_end = find(bytes, b"\r\n").unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..line_end])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad status line".into())
}

fn abbreviate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok().map(|v| v.to_string()),
        None => Some(value.to_string()),
    };
    parsed.and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_routes_survive_schema_fuzzing() {
    let seed: u64 = env_number("TURBINE_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let only: Option<usize> = env_number("TURBINE_FUZZ_CASE");
    println!(
        "fuzz seed {seed:#x} (rerun: TURBINE_FUZZ_SEED={seed:#x}, one case: TURBINE_FUZZ_CASE=<index>)"
    );
    let server = Server::start(&[
        "--context-length",
        "256",
        "--max-body-bytes",
        &MAX_BODY.to_string(),
    ]);
    let cases: Vec<Case> = (0..CASES)
        .filter(|i| only.is_none_or(|o| o == *i))
        .map(|i| generate(seed, i, &server.model))
        .collect();
    let started = Instant::now();
    let address = server.address;
    let results: Vec<(usize, Result<String, String>)> = tokio::time::timeout(
        TOTAL_LIMIT,
        futures::stream::iter(&cases)
            .map(|case| async move {
                let outcome = tokio::time::timeout(CASE_LIMIT, execute(address, case))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {CASE_LIMIT:?} (hang)")));
                (case.index, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect(),
    )
    .await
    .unwrap_or_else(|_| panic!("fuzz seed {seed:#x}: the cases took longer than {TOTAL_LIMIT:?}"));
    let elapsed = started.elapsed();

    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (index, outcome) in results {
        match outcome {
            Ok(label) => *summary.entry(label).or_default() += 1,
            Err(finding) => failures.push((index, finding)),
        }
    }
    failures.sort_by_key(|(index, _)| *index);
    println!(
        "{} cases in {:.1} s; outcomes: {summary:?}",
        cases.len(),
        elapsed.as_secs_f64()
    );
    for (index, finding) in &failures {
        let case = &cases[if only.is_some() { 0 } else { *index }];
        eprintln!(
            "FAILED case {index} (seed {seed:#x}, {:?}, {}): {finding}\n  request: {:?}\n",
            case.kind,
            case.what,
            abbreviate(&String::from_utf8_lossy(&case.request), 3000)
        );
    }

    // The server is alive, healthy, has nothing in flight and counted no 5xx.
    let mut c = server.connect().await;
    assert_eq!(
        c.get("/live").await.expect("live").status,
        200,
        "server not live"
    );
    assert_eq!(c.get("/health").await.expect("health").status, 200);
    // Dropped streams are cancelled asynchronously and the gauges offer no event to await:
    // poll them, for a bounded time.
    let gauges = [
        "turbine_frontend_inflight_requests",
        "turbine_frontend_queued_requests",
        "turbine_worker_active_requests",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut busy = Vec::new();
    loop {
        busy.clear();
        for gauge in gauges {
            let value = server.metric(gauge, &[]).await.unwrap_or(0.0);
            if value != 0.0 {
                busy.push(format!("{gauge} = {value}"));
            }
        }
        if busy.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_errors = server
        .metric("turbine_frontend_requests_total", &["status=\"5"])
        .await;
    assert!(
        failures.is_empty(),
        "fuzz seed {seed:#x}: {} of {} cases failed (first: case {} — {}); see stderr",
        failures.len(),
        cases.len(),
        failures[0].0,
        failures[0].1
    );
    assert!(busy.is_empty(), "still busy at the end: {busy:?}");
    assert_eq!(server_errors, None, "the server counted 5xx responses");
}
