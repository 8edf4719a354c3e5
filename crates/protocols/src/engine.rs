//! The engine contract: token ids in, a stream of token ids out. Detokenization and stop strings
//! happen in the frontend, so a request can move to another worker by appending the tokens generated
//! so far to its prompt.

use serde::{Deserialize, Serialize};

/// A request as a worker sees it: a tokenized prompt plus how to sample and when to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessedRequest {
    /// Unique per request; used in logs and for cancellation.
    pub request_id: String,
    pub token_ids: Vec<u32>,
    pub sampling: SamplingOptions,
    pub stop: StopConditions,
    /// Lower is served first when the engine schedules by priority; ignored under FCFS.
    #[serde(default)]
    pub priority: i32,
}

/// Sampling parameters after validation and defaulting. Neutral values disable a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingOptions {
    /// 0 means greedy.
    pub temperature: f32,
    /// 1 disables nucleus sampling.
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 0 disables min-p.
    pub min_p: f32,
    /// Makes this request's samples reproducible regardless of the batch it runs in.
    pub seed: Option<u64>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// 1 disables the repetition penalty.
    pub repetition_penalty: f32,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
        }
    }
}

/// When generation ends, as far as the engine can tell from token ids alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopConditions {
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// Generation stops when one of these is sampled; the token itself is not streamed.
    /// The frontend puts the model's end-of-sequence ids here unless the client set `ignore_eos`.
    pub stop_token_ids: Vec<u32>,
}

/// One item of the engine's output stream. Several tokens may arrive in one item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineOutput {
    pub token_ids: Vec<u32>,
    /// Set on the last item only.
    pub finish_reason: Option<FinishReason>,
    /// Prompt tokens served from the prefix cache; set on the first item.
    pub cached_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token (end of sequence) or, decided in the frontend, a stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The request was cancelled before it finished.
    Cancelled,
    /// The engine failed this request; the message says why.
    Error(String),
}
