//! Hugging Face chat templates, rendered with minijinja the way `transformers` renders them with jinja2.
//!
//! `apply_chat_template` compiles a template in an `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True)` with loop controls, adds `raise_exception`, `strftime_now` and its own
//! `tojson` (`json.dumps` with `ensure_ascii=False`: `", "`/`": "` separators, keys in insertion
//! order, no HTML escaping), and renders it with `messages`, `tools`, `documents`,
//! `add_generation_prompt`, the special tokens and any extra keyword arguments. This module does the
//! same, and closes the gaps between minijinja and jinja2 that real templates hit:
//!
//! - Python string/list/dict methods (`.strip()`, `.startswith()`, `.split()`, `.items()`, `.get()`,
//!   ...) come from `minijinja_contrib::pycompat`.
//! - Undefined values are lenient, like jinja2's default `Undefined`: they print as nothing and are
//!   falsy; an attribute of an undefined value is an error in both.
//! - Values print as Python's `str()` does (`{{ x }}` and `|string`): `True`, `None`, `1.0`,
//!   `['a', 'b']`, `{'k': 1}`. The `~` operator still uses minijinja's spelling (`true`, `none`).
//! - The `{% generation %}` block `transformers` adds (for assistant masks) renders its body.
//!
//! Maps keep their insertion order (serde_json's and minijinja's `preserve_order` features), as
//! Python dicts do, so `tool | tojson` prints the keys in the order the client sent them.
//!
//! A [`ChatTemplate`] is compiled once and rendered concurrently from many threads.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use chrono::{Local, NaiveDateTime};
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

use crate::error::TokensError;

/// The name errors carry, e.g. `(in chat_template:12)`.
const NAME: &str = "chat_template";

/// Variables the renderer sets itself; `extra` may not override them (`transformers` raises a
/// `TypeError` for a duplicate keyword argument).
const RESERVED: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

/// A compiled chat template. `Send + Sync`; rendering takes `&self`.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

/// What one render of a chat template sees.
#[derive(Debug, Clone, Copy)]
pub struct ChatTemplateInput<'a> {
    /// An array of `{role, content, tool_calls?, name?, tool_call_id?, reasoning_content?}`, with
    /// `content` already a string (see [`normalize_content`]).
    pub messages: &'a serde_json::Value,
    /// Tool definitions; the template sees `None` when absent.
    pub tools: Option<&'a serde_json::Value>,
    /// Whether to end with the header of an assistant turn.
    pub add_generation_prompt: bool,
    /// Extra template variables (`chat_template_kwargs`, e.g. `enable_thinking`). They override
    /// `bos_token`/`eos_token`.
    pub extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl ChatTemplate {
    /// Compiles `source`. `bos_token`/`eos_token` are the tokenizer's special tokens; a missing
    /// one is undefined in the template, as in `transformers`. `strftime_now` reads the local clock.
    pub fn new(
        source: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<Self, TokensError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| Ok(write_py(out, value, false)?));
        env.add_filter("string", |value: &Value| -> Result<String, Error> {
            let mut out = String::new();
            write_py(&mut out, value, false)?;
            Ok(out)
        });
        env.add_filter("tojson", tojson);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", |format: &str| {
            strftime(Local::now().naive_local(), format)
        });
        env.add_template_owned(NAME, rewrite_generation_tags(source))
            .map_err(template_error)?;
        Ok(Self {
            env,
            bos_token: bos_token.map(str::to_owned),
            eos_token: eos_token.map(str::to_owned),
        })
    }

    /// Makes `strftime_now` report `now` instead of the local clock, for reproducible output.
    pub fn with_fixed_now(mut self, now: NaiveDateTime) -> Self {
        self.env
            .add_function("strftime_now", move |format: &str| strftime(now, format));
        self
    }

    /// Renders the prompt text for `input`. A template error (including `raise_exception`) is a
    /// [`TokensError::Template`] naming the line.
    pub fn render(&self, input: &ChatTemplateInput<'_>) -> Result<String, TokensError> {
        let mut ctx = BTreeMap::new();
        for (name, token) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
        ] {
            if let Some(token) = token {
                ctx.insert(name.to_owned(), Value::from(token.as_str()));
            }
        }
        for (key, value) in input.extra.into_iter().flatten() {
            if RESERVED.contains(&key.as_str()) {
                return Err(TokensError::Template(format!(
                    "chat_template_kwargs may not set `{key}`"
                )));
            }
            ctx.insert(key.clone(), Value::from_serialize(value));
        }
        ctx.insert("messages".into(), Value::from_serialize(input.messages));
        ctx.insert("tools".into(), Value::from_serialize(input.tools));
        ctx.insert("documents".into(), Value::from(()));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(input.add_generation_prompt),
        );
        self.env
            .get_template(NAME)
            .and_then(|template| template.render(Value::from(ctx)))
            .map_err(template_error)
    }
}

/// Turns message contents given as arrays of text parts (`[{"type": "text", "text": "..."}]`, or
/// bare strings) into one string, the parts joined with `"\n"`, and a null or missing content into
/// `""`, as vLLM does for templates that expect string content. A message with any other kind of
/// part (an image, ...) is left as it is.
pub fn normalize_content(messages: &serde_json::Value) -> serde_json::Value {
    let mut messages = messages.clone();
    for message in messages.as_array_mut().into_iter().flatten() {
        let Some(message) = message.as_object_mut() else {
            continue;
        };
        let text = match message.get("content") {
            None | Some(serde_json::Value::Null) => Some(String::new()),
            Some(serde_json::Value::Array(parts)) => join_text_parts(parts),
            Some(_) => None,
        };
        if let Some(text) = text {
            message.insert("content".into(), text.into());
        }
    }
    messages
}

fn join_text_parts(parts: &[serde_json::Value]) -> Option<String> {
    let texts = parts
        .iter()
        .map(|part| match part {
            serde_json::Value::String(text) => Some(text.as_str()),
            _ => match part.get("type")?.as_str()? {
                "text" | "input_text" | "output_text" => part.get("text")?.as_str(),
                "refusal" => part.get("refusal")?.as_str(),
                _ => None,
            },
        })
        .collect::<Option<Vec<_>>>()?;
    Some(texts.join("\n"))
}

/// `transformers` adds a `{% generation %}...{% endgeneration %}` block that renders its body (it
/// only marks assistant text for training masks). minijinja has no custom tags, so the block
/// becomes `{% if true %}...{% endif %}`, which trims whitespace the same way.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}") else {
            break;
        };
        let tag = &rest[start + 2..start + len];
        let keyword = tag.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..start + 2]);
        match keyword {
            "generation" => out.push_str(&tag.replacen(keyword, "if true", 1)),
            "endgeneration" => out.push_str(&tag.replacen(keyword, "endif", 1)),
            _ => out.push_str(tag),
        }
        out.push_str("%}");
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn template_error(err: Error) -> TokensError {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    TokensError::Template(message)
}

fn strftime(now: NaiveDateTime, format: &str) -> Result<String, Error> {
    let mut out = String::new();
    write!(out, "{}", now.format(format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(out)
}

/// Writes `value` as Python's `str()` (or `repr()` when `repr` is set) would.
fn write_py(out: &mut impl Write, value: &Value, repr: bool) -> fmt::Result {
    match value.kind() {
        ValueKind::Undefined => Ok(()),
        ValueKind::None => out.write_str("None"),
        ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(x) => out.write_str(&py_float(x)),
            Err(_) => write!(out, "{value}"),
        },
        ValueKind::String if repr => write_py_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            out.write_char('[')?;
            for (i, item) in value.try_iter().map_err(|_| fmt::Error)?.enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_py(out, &item, true)?;
            }
            out.write_char(']')
        }
        ValueKind::Map => {
            out.write_char('{')?;
            for (i, key) in value.try_iter().map_err(|_| fmt::Error)?.enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_py(out, &key, true)?;
                out.write_str(": ")?;
                write_py(out, &value.get_item(&key).map_err(|_| fmt::Error)?, true)?;
            }
            out.write_char('}')
        }
        _ => write!(out, "{value}"),
    }
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`.
fn write_py_str_repr(out: &mut impl Write, s: &str) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.write_char(quote)?;
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c == quote => write!(out, "\\{c}")?,
            c if c.is_control() => write!(out, "\\x{:02x}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_char(quote)
}

/// Python's `repr(float)`: the shortest round-trip digits, in exponent form outside 1e-4..1e16.
fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let fixed = x.to_string();
        if fixed.contains('.') {
            fixed
        } else {
            fixed + ".0"
        }
    } else {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// The `tojson` filter of `transformers`: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, each overridable by keyword.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_owned(),
            None => " ".repeat(usize::try_from(i64::try_from(v)?.max(0)).unwrap_or(0)),
        }),
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(seps) => match <[String; 2]>::try_from(seps) {
            Ok([item, key]) => (item, key),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be an (item, key) pair",
                ));
            }
        },
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let json = PyJson {
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    json.write(&mut out, value, 0)?;
    Ok(Value::from_safe_string(out))
}

/// Python's `json.dumps` output format.
struct PyJson {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl PyJson {
    fn write(&self, out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.write_number(out, value)?,
            ValueKind::String => self.write_str(out, value.as_str().unwrap_or_default()),
            ValueKind::Seq => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.write_container(out, ('[', ']'), &items, depth, |out, item| {
                    self.write(out, item, depth + 1)
                })?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    entries.push((self.key(&key)?, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_container(out, ('{', '}'), &entries, depth, |out, (key, item)| {
                    self.write_str(out, key);
                    out.push_str(&self.key_sep);
                    self.write(out, item, depth + 1)
                })?;
            }
            kind => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: a value of type {kind} is not JSON serializable"),
                ));
            }
        }
        Ok(())
    }

    fn write_container<T>(
        &self,
        out: &mut String,
        (open, close): (char, char),
        items: &[T],
        depth: usize,
        mut write_item: impl FnMut(&mut String, &T) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                (0..level).for_each(|_| out.push_str(indent));
            }
        };
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            newline(out, depth + 1);
            write_item(out, item)?;
        }
        newline(out, depth);
        out.push(close);
        Ok(())
    }

    fn write_number(&self, out: &mut String, value: &Value) -> Result<(), Error> {
        if value.is_integer() {
            write!(out, "{value}")?;
        } else {
            let x = f64::try_from(value.clone())?;
            match py_float(x).as_str() {
                "nan" => out.push_str("NaN"),
                "inf" => out.push_str("Infinity"),
                "-inf" => out.push_str("-Infinity"),
                repr => out.push_str(repr),
            }
        }
        Ok(())
    }

    /// A map key as `json.dumps` converts it: strings as they are, scalars spelled as JSON.
    fn key(&self, key: &Value) -> Result<String, Error> {
        if let Some(s) = key.as_str() {
            return Ok(s.to_owned());
        }
        match key.kind() {
            ValueKind::None | ValueKind::Bool | ValueKind::Number => {
                let mut out = String::new();
                self.write(&mut out, key, 0)?;
                Ok(out)
            }
            kind => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: keys must be strings or scalars, not {kind}"),
            )),
        }
    }

    fn write_str(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if c < ' ' || (self.ensure_ascii && c > '~') => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, messages: serde_json::Value) -> Result<String, TokensError> {
        let template = ChatTemplate::new(source, Some("<s>"), Some("</s>"))?;
        template.render(&ChatTemplateInput {
            messages: &messages,
            tools: None,
            add_generation_prompt: false,
            extra: None,
        })
    }

    #[test]
    fn chat_template_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
    }

    #[test]
    fn raise_exception_surfaces_its_message() {
        let source = "{% if messages[0].role != 'user' %}\n{{ raise_exception('Conversation roles must alternate') }}\n{% endif %}";
        let err = render(source, json!([{"role": "system", "content": "x"}])).unwrap_err();
        let TokensError::Template(message) = err else {
            panic!("expected a template error, got {err:?}");
        };
        assert!(
            message.contains("Conversation roles must alternate"),
            "{message}"
        );
        assert!(message.contains("chat_template:2"), "{message}");
    }

    #[test]
    fn syntax_error_is_a_clean_error() {
        let err = ChatTemplate::new("{% for m in messages %}\n{{ m.content }", None, None)
            .err()
            .expect("the template must not compile");
        let TokensError::Template(message) = err else {
            panic!("expected a template error, got {err:?}");
        };
        assert!(message.contains("syntax error"), "{message}");
        assert!(message.contains("chat_template:2"), "{message}");
    }

    #[test]
    fn runtime_error_is_a_clean_error() {
        let err = render(
            "{{ messages[0].content.nope() }}",
            json!([{"content": "x"}]),
        );
        assert!(matches!(err, Err(TokensError::Template(_))), "{err:?}");
    }

    #[test]
    fn generation_blocks_render_their_body() {
        let source = "{% for m in messages %}\n  {%- if m.role == 'assistant' %}\n{% generation %}\n{{ m.content }}\n{%- endgeneration %}\n{% else %}{{ m.content }}\n{% endif %}\n{% endfor %}";
        let messages =
            json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]);
        assert_eq!(render(source, messages).unwrap(), "q\na");
    }

    #[test]
    fn rendering_is_deterministic() {
        let source = "{% for m in messages %}{{ m | tojson }}{{ m.items() | list }}{% endfor %}";
        let messages =
            json!([{"role": "user", "content": "héllo", "z": 1, "a": [1.5, null, true]}]);
        let first = render(source, messages.clone()).unwrap();
        for _ in 0..10 {
            assert_eq!(render(source, messages.clone()).unwrap(), first);
        }
    }

    #[test]
    fn values_print_like_python() {
        let out = render(
            "{{ messages[0] }}|{{ true }}|{{ none }}|{{ 2.0 }}|{{ 1e20 }}|{{ 1e-5 }}|{{ undefined_name }}|{{ 3 | string }}",
            json!([{"b": "it's", "a": [1, 0.5, false, null, "x\"y\n"]}]),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{'b': "it's", 'a': [1, 0.5, False, None, 'x"y\n']}|True|None|2.0|1e+20|1e-05||3"#
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let messages = json!([{"z": "é<&>'\"\u{1}", "a": [1, 2.5, true, null], "e": {}}]);
        let out = render("{{ messages[0] | tojson }}", messages.clone()).unwrap();
        assert_eq!(
            out,
            r#"{"z": "é<&>'\"\u0001", "a": [1, 2.5, true, null], "e": {}}"#
        );
        let out = render("{{ messages[0].a | tojson(indent=2) }}", messages.clone()).unwrap();
        assert_eq!(out, "[\n  1,\n  2.5,\n  true,\n  null\n]");
        let out = render(
            "{{ messages[0] | tojson(separators=(',', ':'), sort_keys=true, ensure_ascii=true) }}",
            messages,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"a":[1,2.5,true,null],"e":{},"z":"\u00e9<&>'\"\u0001"}"#
        );
    }

    #[test]
    fn strftime_now_uses_the_fixed_clock() {
        let now = chrono::NaiveDate::from_ymd_opt(2024, 7, 26)
            .and_then(|d| d.and_hms_opt(10, 0, 0))
            .unwrap();
        let template = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}", None, None)
            .unwrap()
            .with_fixed_now(now);
        let messages = json!([]);
        let input = ChatTemplateInput {
            messages: &messages,
            tools: None,
            add_generation_prompt: false,
            extra: None,
        };
        assert_eq!(template.render(&input).unwrap(), "26 Jul 2024");
    }

    #[test]
    fn variables_follow_transformers() {
        let source = "{{ bos_token }}|{{ eos_token is defined }}|{{ tools }}|{{ documents }}|{{ add_generation_prompt }}|{{ enable_thinking }}";
        let template = ChatTemplate::new(source, Some("<s>"), None).unwrap();
        let messages = json!([]);
        let extra = json!({"enable_thinking": false, "bos_token": "<b>"});
        let mut input = ChatTemplateInput {
            messages: &messages,
            tools: None,
            add_generation_prompt: true,
            extra: extra.as_object(),
        };
        assert_eq!(
            template.render(&input).unwrap(),
            "<b>|False|None|None|True|False"
        );
        let extra = json!({"messages": []});
        input.extra = extra.as_object();
        assert!(matches!(
            template.render(&input),
            Err(TokensError::Template(_))
        ));
    }

    #[test]
    fn content_parts_are_joined() {
        let messages = json!([
            {"role": "system", "content": "plain"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, "b", {"type": "input_text", "text": "c"}]},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u"}}]},
            "not a message",
        ]);
        let normalized = normalize_content(&messages);
        assert_eq!(
            normalized,
            json!([
                {"role": "system", "content": "plain"},
                {"role": "user", "content": "a\nb\nc"},
                {"role": "assistant", "content": "", "tool_calls": []},
                messages[3],
                "not a message",
            ])
        );
        assert_eq!(normalize_content(&json!({"a": 1})), json!({"a": 1}));
    }
}
