//! Workload requests as OpenAI request bodies, serialized once before the run.
//!
//! Only standard fields go out, plus `ignore_eos` (vLLM, SGLang, llama.cpp and Turbine honour it;
//! others ignore it) so that `max_tokens` is the exact output length. Token-id prompts
//! (`/v1/completions` with `prompt: [ids]`) reach the server exactly; text prompts are the ids
//! decoded, and each is checked to encode back to the same ids.

use crate::workload::{Arrival, Workload};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::time::Duration;
use turbine_tokens::{Tokenizer, TokensError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`, the prompt as one user message: the chat template adds tokens, so
    /// prompt lengths are the message's, not the server's.
    Chat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFormat {
    /// Token ids (completions only).
    Tokens,
    /// The ids decoded to text.
    Text,
}

#[derive(Debug, Clone)]
pub struct RequestFormat {
    pub model: String,
    pub api: Api,
    pub prompt: PromptFormat,
    /// Merged into every body (e.g. `{"min_tokens": 64}` or sampling settings).
    pub extra: Map<String, Value>,
}

impl RequestFormat {
    pub fn path(&self) -> &'static str {
        match self.api {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Planned {
    pub arrival: Arrival,
    pub after: Option<(usize, Duration)>,
    pub body: Bytes,
}

/// The workload's bodies, and for text prompts how many did not encode back to their ids.
pub struct Prepared {
    pub requests: Vec<Planned>,
    pub text_mismatches: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("text prompts need a tokenizer")]
    NoTokenizer,
    #[error("chat requests need text prompts")]
    ChatTokens,
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokensError),
}

pub fn prepare(
    workload: &Workload,
    format: &RequestFormat,
    tokenizer: Option<&Tokenizer>,
) -> Result<Prepared, PrepareError> {
    if format.api == Api::Chat && format.prompt == PromptFormat::Tokens {
        return Err(PrepareError::ChatTokens);
    }
    let mut mismatches = 0;
    let mut requests = Vec::with_capacity(workload.requests.len());
    for request in &workload.requests {
        let mut body = json!({
            "model": format.model,
            "max_tokens": request.max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
            "ignore_eos": true,
        });
        let prompt = match format.prompt {
            PromptFormat::Tokens => json!(request.prompt),
            PromptFormat::Text => {
                let tokenizer = tokenizer.ok_or(PrepareError::NoTokenizer)?;
                let (text, exact) = to_text(tokenizer, &request.prompt, format.api)?;
                mismatches += usize::from(!exact);
                json!(text)
            }
        };
        match format.api {
            Api::Completions => body["prompt"] = prompt,
            Api::Chat => body["messages"] = json!([{"role": "user", "content": prompt}]),
        }
        if let Value::Object(fields) = &mut body {
            fields.extend(format.extra.clone());
        }
        requests.push(Planned {
            arrival: request.arrival,
            after: request.after,
            body: Bytes::from(body.to_string()),
        });
    }
    Ok(Prepared {
        requests,
        text_mismatches: (format.prompt == PromptFormat::Text).then_some(mismatches),
    })
}

/// The text of `ids`, leaving out a leading bos that the server adds itself, and whether the
/// server's tokenization of it gives back `ids` (for chat: the message's tokens).
fn to_text(tokenizer: &Tokenizer, ids: &[u32], api: Api) -> Result<(String, bool), TokensError> {
    let adds_bos = tokenizer.adds_bos_token() && ids.first() == tokenizer.bos_token_id().as_ref();
    let content = if adds_bos { &ids[1..] } else { ids };
    let text = tokenizer.decode(content, false)?;
    let exact = match api {
        Api::Completions => tokenizer.encode(&text, true)? == ids,
        Api::Chat => tokenizer.encode(&text, false)? == content,
    };
    Ok((text, exact))
}
