//! The chat templates of three real model families render byte-identical to transformers' jinja2
//! setup. Expected outputs come from `scripts/reference/chat_templates.py`; the templates are read
//! from the fixture cache that `scripts/fixtures.sh` fills.

use std::path::PathBuf;

use serde_json::Value;
use turbine_tokens::chat_template::normalize_content;
use turbine_tokens::gguf::GgufFile;
use turbine_tokens::{ChatTemplate, ChatTemplateInput};

/// The instant `strftime_now` reports, the same as `FIXED_NOW` in the reference script.
fn fixed_now() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2024, 7, 26)
        .and_then(|day| day.and_hms_opt(10, 0, 0))
        .expect("a valid date")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("TURBINE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/turbine")))
        .expect("neither TURBINE_CACHE nor HOME is set")
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "missing fixture {}: run `scripts/fixtures.sh` first",
        path.display()
    );
    path
}

/// A template and its special tokens from a `tokenizer_config.json` fixture.
fn from_tokenizer_config(family: &str) -> ChatTemplate {
    let path = require(cache_dir().join(format!(
        "fixtures/tokenizers/{family}/tokenizer_config.json"
    )));
    let text = std::fs::read_to_string(&path).expect("readable tokenizer_config.json");
    let config: Value = serde_json::from_str(&text).expect("valid tokenizer_config.json");
    // A special token is a string or an AddedToken object `{content, ...}`.
    let token = |name: &str| {
        let token = config.get(name)?;
        token.get("content").unwrap_or(token).as_str()
    };
    let source = config["chat_template"]
        .as_str()
        .expect("chat_template is a string");
    ChatTemplate::new(source, token("bos_token"), token("eos_token"))
        .expect("template compiles")
        .with_fixed_now(fixed_now())
}

/// The SmolLM2 template and special tokens from the GGUF model's metadata.
fn from_gguf() -> ChatTemplate {
    let path = require(cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let gguf = GgufFile::open(&path).expect("valid GGUF");
    let tokens = gguf
        .get_str_array("tokenizer.ggml.tokens")
        .expect("token list");
    let token = |key: &str| {
        let id = gguf.get_u32(key)?;
        tokens.get(usize::try_from(id).ok()?).map(String::as_str)
    };
    let source = gguf
        .get_str("tokenizer.chat_template")
        .expect("chat template in metadata");
    ChatTemplate::new(
        source,
        token("tokenizer.ggml.bos_token_id"),
        token("tokenizer.ggml.eos_token_id"),
    )
    .expect("template compiles")
    .with_fixed_now(fixed_now())
}

/// Renders every reference case of `family`; panics with a diff for each one that differs.
fn check_family(family: &str, template: &ChatTemplate) {
    let fixtures: Value =
        serde_json::from_str(include_str!("fixtures/chat_templates.json")).expect("valid fixture");
    let cases = fixtures[family].as_array().expect("cases for the family");
    assert!(!cases.is_empty(), "no reference cases for {family}");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let messages = normalize_content(&case["messages"]);
        let input = ChatTemplateInput {
            messages: &messages,
            tools: Some(&case["tools"]).filter(|tools| !tools.is_null()),
            add_generation_prompt: case["add_generation_prompt"].as_bool().expect("a bool"),
            extra: case["extra"].as_object(),
        };
        let expected = case["expected"].as_str().expect("expected text");
        match template.render(&input) {
            Ok(actual) if actual == expected => {}
            Ok(actual) => failures.push(format!("{family} case {i}:\n{}", diff(expected, &actual))),
            Err(err) => failures.push(format!("{family} case {i}: {err}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from the reference:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The first differing line with two lines of context, `-` expected, `+` actual.
fn diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.split_inclusive('\n').collect();
    let actual: Vec<&str> = actual.split_inclusive('\n').collect();
    let first = (0..expected.len().max(actual.len()))
        .find(|&i| expected.get(i) != actual.get(i))
        .unwrap_or(0);
    let mut out = String::new();
    for i in first.saturating_sub(2)..(first + 3).min(expected.len().max(actual.len())) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => out += &format!("  {:4} {e:?}\n", i + 1),
            (e, a) => {
                if let Some(e) = e {
                    out += &format!("- {:4} {e:?}\n", i + 1);
                }
                if let Some(a) = a {
                    out += &format!("+ {:4} {a:?}\n", i + 1);
                }
            }
        }
    }
    out
}

#[test]
fn llama3_matches_reference() {
    check_family("llama3", &from_tokenizer_config("llama3"));
}

#[test]
fn qwen3_matches_reference() {
    check_family("qwen3", &from_tokenizer_config("qwen3"));
}

#[test]
fn smollm2_gguf_matches_reference() {
    check_family("smollm2", &from_gguf());
}
