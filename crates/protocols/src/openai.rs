//! OpenAI API request and response shapes for `/v1/chat/completions`, `/v1/completions` and
//! `/v1/models`. Requests accept every documented field we understand and ignore unknown ones, as
//! OpenAI does; validation beyond types lives in the frontend. Responses serialize exactly to
//! OpenAI's shapes (fields that OpenAI sends as `null` are sent as `null`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields shared by chat and text completion requests.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonRequest {
    pub model: String,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Not in OpenAI's API; vLLM's extension. -1 or 0 disable it.
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopField>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub ignore_eos: Option<bool>,
    pub n: Option<u32>,
    pub user: Option<String>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Extra token ids that end generation (vLLM's extension).
    pub stop_token_ids: Option<Vec<u32>>,
    /// Whether special tokens are left out of the text (vLLM's extension); default true.
    pub skip_special_tokens: Option<bool>,
    /// Lower is served first when the engine schedules by priority (vLLM's extension).
    pub priority: Option<i32>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

impl StopField {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopField::One(s) => vec![s],
            StopField::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    #[serde(flatten)]
    pub common: CommonRequest,
    pub messages: Vec<ChatMessage>,
    /// OpenAI's newer name for `max_tokens`; wins when both are set.
    pub max_completion_tokens: Option<u32>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    /// Extra variables for the chat template, e.g. `enable_thinking` (vLLM's extension).
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// Whether to append the assistant header (vLLM's extension); default true.
    pub add_generation_prompt: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// A message's content: a string, or an array of parts of which we accept text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    #[serde(flatten)]
    pub common: CommonRequest,
    pub prompt: Prompt,
    pub echo: Option<bool>,
    pub logprobs: Option<u32>,
    pub suffix: Option<String>,
    pub best_of: Option<u32>,
}

/// `prompt`: a string, a list of strings, a list of token ids, or a list of token id lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// One prompt of a completion request, before tokenization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

impl Prompt {
    /// The prompts of this request, in choice order.
    pub fn into_inputs(self) -> Vec<PromptInput> {
        match self {
            Prompt::Text(s) => vec![PromptInput::Text(s)],
            Prompt::Texts(v) => v.into_iter().map(PromptInput::Text).collect(),
            Prompt::Tokens(t) => vec![PromptInput::Tokens(t)],
            Prompt::TokenLists(v) => v.into_iter().map(PromptInput::Tokens).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAiFinishReason {
    Stop,
    Length,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }

    /// Sums the usage of several choices (prompt tokens of each prompt, completion tokens of each).
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.prompt_tokens_details.cached_tokens += other.prompt_tokens_details.cached_tokens;
    }
}

/// Non-streaming chat response, `object: "chat.completion"`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionResponse {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub logprobs: Option<Value>,
    pub finish_reason: OpenAiFinishReason,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    pub role: Role,
    pub content: String,
    pub refusal: Option<String>,
}

/// Streaming chat chunk, `object: "chat.completion.chunk"`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChatChunkChoice<'a>>,
    /// Present (as `null` or a value) only when the client asked for `include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<OpenAiFinishReason>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// Text completion response and stream chunk, `object: "text_completion"` in both.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionResponse<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<CompletionChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<OpenAiFinishReason>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// Context length (vLLM reports this as `max_model_len`).
    pub max_model_len: u32,
}

/// OpenAI's error body: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

/// Parses a request body, naming the offending field in the error (`messages[0].role: unknown
/// variant ...`). Fields of the flattened [`CommonRequest`] are located by a second, diagnostic
/// pass, because serde loses the path at a `flatten` boundary.
pub fn parse_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    // Some clients prefix JSON with a UTF-8 byte-order mark; JSON parsers may ignore it.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(err) if err.path().iter().next().is_none() && !err.inner().is_syntax() => {
            let de = &mut serde_json::Deserializer::from_slice(body);
            match serde_path_to_error::deserialize::<_, CommonRequest>(de) {
                Err(common) => Err(common.to_string()),
                Ok(_) => Err(err.inner().to_string()),
            }
        }
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_accepts_parts_and_ignores_unknown_fields() {
        let req: ChatCompletionRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"hi"}]},
                {"role":"user","content":"yo"}],"max_completion_tokens":5,"stop":"x","frobnicate":1}"#,
        )
        .expect("valid request");
        assert_eq!(req.common.model, "m");
        assert_eq!(req.messages[0].role, Role::Developer);
        assert!(matches!(
            req.messages[0].content,
            Some(MessageContent::Parts(_))
        ));
        assert_eq!(req.max_completion_tokens, Some(5));
        assert_eq!(
            req.common.stop.map(StopField::into_vec),
            Some(vec!["x".to_string()])
        );
    }

    #[test]
    fn prompt_forms() {
        let parse = |s: &str| {
            serde_json::from_str::<Prompt>(s)
                .expect("prompt")
                .into_inputs()
        };
        assert_eq!(parse(r#""a""#), vec![PromptInput::Text("a".into())]);
        assert_eq!(parse(r#"["a","b"]"#).len(), 2);
        assert_eq!(parse("[1,2,3]"), vec![PromptInput::Tokens(vec![1, 2, 3])]);
        assert_eq!(parse("[[1],[2]]").len(), 2);
        assert!(serde_json::from_str::<Prompt>("[-1]").is_err());
    }

    #[test]
    fn chunk_usage_field_is_null_or_absent() {
        let chunk = |usage| ChatCompletionChunk {
            id: "c",
            object: "chat.completion.chunk",
            created: 1,
            model: "m",
            choices: vec![],
            usage,
            system_fingerprint: None,
        };
        let absent = serde_json::to_value(chunk(None)).expect("json");
        assert!(absent.get("usage").is_none());
        let null = serde_json::to_value(chunk(Some(None))).expect("json");
        assert_eq!(null["usage"], Value::Null);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |s: &str| parse_request::<ChatCompletionRequest>(s.as_bytes()).unwrap_err();
        assert!(
            err(r#"{"model":"m","messages":[],"temperature":"hot"}"#).starts_with("temperature:")
        );
        assert!(
            err(r#"{"model":"m","messages":[{"role":"bot"}]}"#).starts_with("messages[0].role:")
        );
        assert!(err(r#"{"model":"m"}"#).contains("missing field `messages`"));
        assert!(err(r#"{"model":"m","#).contains("EOF"));
    }
}
