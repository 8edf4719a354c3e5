//! [`ModelTokenizer`]: everything preprocessing needs from a model's files — the tokenizer, the
//! chat template source, the context length and whether prompts start with bos.
//!
//! Invariants:
//! - A `.gguf` file reads only GGUF metadata; a directory reads the HF layout: `tokenizer.json`
//!   (required), and if present `tokenizer_config.json`, `chat_template.jinja` (wins over the
//!   config's template), `config.json`, `generation_config.json`.
//! - Every error names the file (or key) at fault.
//! - The tokenizer's `eos_token_ids` include the configured eos token and every
//!   `generation_config.json` `eos_token_id`.
//! - `add_bos_token` says what `Tokenizer::encode(.., true)` actually does; where
//!   `tokenizer_config.json` sets `add_bos_token`/`add_eos_token`, the tokenizer is made to follow
//!   it, as transformers does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::error::TokensError;
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// The cache root for models and fixtures: `$TURBINE_CACHE`, else `$HOME/.cache/turbine`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("TURBINE_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".cache")
            .join("turbine"),
    }
}

/// A model's tokenizer and the settings around it.
#[derive(Debug, Clone)]
pub struct ModelTokenizer {
    pub tokenizer: Arc<Tokenizer>,
    /// Raw Jinja source of the chat template, if the model has one.
    pub chat_template: Option<String>,
    /// Maximum sequence length the model supports, if its files say.
    pub context_length: Option<u32>,
    /// Whether `encode(.., add_special_tokens = true)` puts the bos token first.
    pub add_bos_token: bool,
}

impl ModelTokenizer {
    /// Loads from a `.gguf` file or a HF-layout model directory.
    pub fn load(path: impl AsRef<Path>) -> Result<ModelTokenizer, TokensError> {
        let path = path.as_ref();
        if path.is_dir() {
            return ModelTokenizer::from_hf_dir(path);
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return ModelTokenizer::from_gguf(&GgufFile::open(path)?);
        }
        if !path.exists() {
            return Err(TokensError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
        Err(TokensError::ModelFiles {
            path: path.to_path_buf(),
            reason: "expected a .gguf file or a directory holding tokenizer.json".into(),
        })
    }

    /// Reads the tokenizer, chat template and context length from GGUF metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<ModelTokenizer, TokensError> {
        let tokenizer = Tokenizer::from_gguf(gguf)?;
        let context_length = gguf
            .architecture()
            .and_then(|arch| gguf.get_u32(&format!("{arch}.context_length")));
        Ok(ModelTokenizer {
            add_bos_token: tokenizer.adds_bos_token(),
            tokenizer: Arc::new(tokenizer),
            chat_template: gguf.get_str("tokenizer.chat_template").map(str::to_string),
            context_length,
        })
    }

    /// Reads a HF-layout directory.
    pub fn from_hf_dir(dir: &Path) -> Result<ModelTokenizer, TokensError> {
        let tokenizer_json = dir.join("tokenizer.json");
        if !tokenizer_json.is_file() {
            return Err(TokensError::ModelFiles {
                path: dir.to_path_buf(),
                reason: "missing tokenizer.json".into(),
            });
        }
        let mut tokenizer = Tokenizer::from_json_file(&tokenizer_json)?;
        let config = read_json(dir, "tokenizer_config.json")?.unwrap_or(Value::Null);

        if let Some(token) = token_content(&config["bos_token"]) {
            tokenizer
                .set_bos_token(token)
                .map_err(|e| config_error(dir, "bos_token", e))?;
        }
        if let Some(token) = token_content(&config["eos_token"]) {
            tokenizer
                .set_eos_token(token)
                .map_err(|e| config_error(dir, "eos_token", e))?;
        }
        if let Some(generation) = read_json(dir, "generation_config.json")? {
            for id in ids(&generation["eos_token_id"]) {
                tokenizer.add_eos_token_id(id);
            }
        }

        let (adds_bos, adds_eos) = (tokenizer.adds_bos_token(), tokenizer.adds_eos_token());
        let want_bos = config["add_bos_token"].as_bool().unwrap_or(adds_bos);
        let want_eos = config["add_eos_token"].as_bool().unwrap_or(adds_eos);
        if (want_bos, want_eos) != (adds_bos, adds_eos) {
            tokenizer
                .set_added_special_tokens(want_bos, want_eos)
                .map_err(|e| config_error(dir, "add_bos_token/add_eos_token", e))?;
        }

        let template_file = dir.join("chat_template.jinja");
        let chat_template = if template_file.is_file() {
            Some(
                std::fs::read_to_string(&template_file).map_err(|source| TokensError::Io {
                    path: template_file,
                    source,
                })?,
            )
        } else {
            chat_template_of(&config["chat_template"])
        };

        let max_positions = read_json(dir, "config.json")?.and_then(|c| trained_context(&c));
        let context_length = max_positions
            .or_else(|| config["model_max_length"].as_u64())
            .and_then(|n| u32::try_from(n).ok());

        Ok(ModelTokenizer {
            add_bos_token: want_bos,
            tokenizer: Arc::new(tokenizer),
            chat_template,
            context_length,
        })
    }
}

fn config_error(dir: &Path, key: &str, e: TokensError) -> TokensError {
    TokensError::ModelFiles {
        path: dir.join("tokenizer_config.json"),
        reason: format!("{key}: {e}"),
    }
}

/// Parses `dir/name` if it exists.
fn read_json(dir: &Path, name: &str) -> Result<Option<Value>, TokensError> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TokensError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TokensError::ModelFiles {
            path,
            reason: format!("invalid JSON: {e}"),
        })
}

/// A special token given as a string or as an AddedToken object (`{"content": ...}`).
fn token_content(value: &Value) -> Option<&str> {
    value
        .as_str()
        .or_else(|| value.get("content").and_then(Value::as_str))
}

/// A token id given as an integer or a list of integers.
fn ids(value: &Value) -> Vec<u32> {
    let one = |v: &Value| v.as_u64().and_then(|id| u32::try_from(id).ok());
    match value {
        Value::Array(list) => list.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// `chat_template` as a string, or the one named "default" in a list of `{name, template}`.
fn chat_template_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// The longest context a model's config lets the engines serve as the model computes it:
/// `max_position_embeddings`, cut to the attention's sliding window where one is in force
/// (Mistral's `sliding_window`; Qwen2/3's only with `use_sliding_window`). The engines attend
/// over the whole context, which equals the windowed attention up to the window.
fn trained_context(config: &Value) -> Option<u64> {
    let max = config["max_position_embeddings"].as_u64()?;
    let in_force = config
        .get("use_sliding_window")
        .is_none_or(|on| on.as_bool() == Some(true));
    let window = config["sliding_window"].as_u64().filter(|_| in_force);
    Some(window.map_or(max, |w| w.min(max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn special_tokens_as_strings_or_objects() {
        assert_eq!(token_content(&json!("<s>")), Some("<s>"));
        assert_eq!(
            token_content(&json!({"content": "</s>", "special": true})),
            Some("</s>")
        );
        assert_eq!(token_content(&json!(null)), None);
    }

    #[test]
    fn eos_ids_as_int_or_list() {
        assert_eq!(ids(&json!(2)), vec![2]);
        assert_eq!(ids(&json!([151645, 151643])), vec![151645, 151643]);
        assert_eq!(ids(&json!(null)), Vec::<u32>::new());
    }

    #[test]
    fn chat_template_string_or_named_list() {
        assert_eq!(
            chat_template_of(&json!("{{ x }}")).as_deref(),
            Some("{{ x }}")
        );
        let list =
            json!([{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]);
        assert_eq!(chat_template_of(&list).as_deref(), Some("D"));
        assert_eq!(
            chat_template_of(&json!([{"name": "rag", "template": "R"}])),
            None
        );
    }

    #[test]
    fn a_sliding_window_in_force_cuts_the_context() {
        let mistral = json!({"max_position_embeddings": 32768, "sliding_window": 4096});
        assert_eq!(trained_context(&mistral), Some(4096));
        let mistral_v3 = json!({"max_position_embeddings": 32768, "sliding_window": null});
        assert_eq!(trained_context(&mistral_v3), Some(32768));
        let qwen = json!({"max_position_embeddings": 40960, "sliding_window": 4096,
                          "use_sliding_window": false});
        assert_eq!(trained_context(&qwen), Some(40960));
        let qwen_on = json!({"max_position_embeddings": 40960, "sliding_window": 4096,
                             "use_sliding_window": true});
        assert_eq!(trained_context(&qwen_on), Some(4096));
        assert_eq!(trained_context(&json!({"sliding_window": 4096})), None);
    }

    #[test]
    fn missing_tokenizer_json_is_named() {
        let dir = std::env::temp_dir().join(format!("turbine-empty-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let err = ModelTokenizer::load(&dir).expect_err("no tokenizer.json");
        assert!(err.to_string().contains("missing tokenizer.json"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
