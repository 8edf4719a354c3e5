//! OpenAI response bodies for both generation endpoints: SSE frames while streaming, and the whole
//! JSON body when not.

use crate::error::ApiError;
use bytes::Bytes;
use rand::Rng;
use serde::Serialize;
use turbine_protocols::openai::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionResponse,
    CompletionChoice, CompletionResponse, Delta, OpenAiFinishReason, Role, Usage,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat_completions",
            Endpoint::Completions => "completions",
        }
    }
}

/// The fixed parts of one response.
pub struct ResponseMeta {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
}

/// One finished choice, for non-streaming responses.
pub struct FinishedChoice {
    pub text: String,
    pub finish: OpenAiFinishReason,
}

pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

impl ResponseMeta {
    pub fn new(endpoint: Endpoint, model: String, include_usage: bool) -> Self {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl-",
            Endpoint::Completions => "cmpl-",
        };
        Self {
            endpoint,
            id: format!("{prefix}{:032x}", rand::rng().random::<u128>()),
            created: crate::registry::unix_now(),
            model,
            include_usage,
        }
    }

    /// `usage` on streamed chunks: `null` when the client asked for usage, absent otherwise.
    fn chunk_usage(&self) -> Option<Option<Usage>> {
        self.include_usage.then_some(None)
    }

    /// The frame that opens a choice's stream, if the endpoint has one (chat announces the role).
    pub fn start_frame(&self, index: u32) -> Option<Bytes> {
        match self.endpoint {
            Endpoint::Chat => Some(self.chat_chunk(
                index,
                Some(Role::Assistant),
                Some(""),
                None,
                self.chunk_usage(),
            )),
            Endpoint::Completions => None,
        }
    }

    pub fn step_frame(&self, index: u32, text: &str, finish: Option<OpenAiFinishReason>) -> Bytes {
        let content = (!text.is_empty()).then_some(text);
        match self.endpoint {
            Endpoint::Chat => self.chat_chunk(index, None, content, finish, self.chunk_usage()),
            Endpoint::Completions => self.completion_chunk(index, text, finish),
        }
    }

    /// The last data frame when `include_usage` is set: no choices, the whole request's usage.
    pub fn usage_frame(&self, usage: Usage) -> Bytes {
        match self.endpoint {
            Endpoint::Chat => frame(&ChatCompletionChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: vec![],
                usage: Some(Some(usage)),
                system_fingerprint: None,
            }),
            Endpoint::Completions => frame(&CompletionResponse {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: vec![],
                usage: Some(Some(usage)),
                system_fingerprint: None,
            }),
        }
    }

    fn chat_chunk(
        &self,
        index: u32,
        role: Option<Role>,
        content: Option<&str>,
        finish: Option<OpenAiFinishReason>,
        usage: Option<Option<Usage>>,
    ) -> Bytes {
        frame(&ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChatChunkChoice {
                index,
                delta: Delta { role, content },
                logprobs: None,
                finish_reason: finish,
            }],
            usage,
            system_fingerprint: None,
        })
    }

    fn completion_chunk(
        &self,
        index: u32,
        text: &str,
        finish: Option<OpenAiFinishReason>,
    ) -> Bytes {
        frame(&CompletionResponse {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices: vec![CompletionChoice {
                index,
                text,
                logprobs: None,
                finish_reason: finish,
            }],
            usage: self.chunk_usage(),
            system_fingerprint: None,
        })
    }

    /// The whole non-streaming body.
    pub fn full_body(
        &self,
        choices: Vec<FinishedChoice>,
        usage: Usage,
    ) -> Result<Vec<u8>, ApiError> {
        let body = match self.endpoint {
            Endpoint::Chat => serde_json::to_vec(&ChatCompletionResponse {
                id: self.id.clone(),
                object: "chat.completion",
                created: self.created,
                model: self.model.clone(),
                choices: choices
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| ChatChoice {
                        index: i as u32,
                        message: AssistantMessage {
                            role: Role::Assistant,
                            content: c.text,
                            refusal: None,
                        },
                        logprobs: None,
                        finish_reason: c.finish,
                    })
                    .collect(),
                usage,
                system_fingerprint: None,
            }),
            Endpoint::Completions => serde_json::to_vec(&CompletionResponse {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: choices
                    .iter()
                    .enumerate()
                    .map(|(i, c)| CompletionChoice {
                        index: i as u32,
                        text: &c.text,
                        logprobs: None,
                        finish_reason: Some(c.finish),
                    })
                    .collect(),
                usage: Some(Some(usage)),
                system_fingerprint: None,
            }),
        };
        body.map_err(|e| ApiError::internal(format!("cannot serialize the response: {e}")))
    }
}

/// An error sent inside a stream that has already started (status 200 is gone by then).
pub fn error_frame(error: &ApiError) -> Bytes {
    frame(&error.body())
}

fn frame(value: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serializing our own types to a Vec cannot fail.
    if serde_json::to_writer(&mut out, value).is_err() {
        out.truncate(6);
        out.extend_from_slice(
            br#"{"error":{"message":"serialization failed","type":"internal_error"}}"#,
        );
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
