//! Turns an OpenAI request into what the engine takes: validated sampling options, stop conditions
//! and prompt token ids. Template rendering and tokenization are blocking work: callers run
//! [`chat_prompt`] and [`completion_prompts`] on the blocking pool, never on the async threads.

use crate::config::FrontendConfig;
use crate::error::ApiError;
use crate::metrics::FrontendMetrics;
use crate::registry::ModelEntry;
use std::time::Instant;
use turbine_protocols::openai::{
    ChatCompletionRequest, ChatMessage, CommonRequest, MessageContent, PromptInput,
};
use turbine_protocols::{SamplingOptions, StopConditions};
use turbine_tokens::ChatTemplateInput;

/// Most prompts one completion request may carry (each becomes an engine request).
const MAX_PROMPTS: usize = 256;

/// Most stop strings one request may carry.
const MAX_STOP_STRINGS: usize = 16;

/// Everything about a request except its prompts, validated.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub sampling: SamplingOptions,
    /// `None`: as many as fit in the context (capped by the frontend's limit).
    pub max_tokens: Option<u32>,
    pub ignore_eos: bool,
    pub extra_stop_token_ids: Vec<u32>,
    pub stop_strings: Vec<String>,
    pub skip_special_tokens: bool,
    pub stream: bool,
    pub include_usage: bool,
    pub priority: i32,
}

/// Validates the fields chat and completions share. `max_tokens` is passed separately because chat
/// also has `max_completion_tokens`.
pub fn generation_params(
    common: &CommonRequest,
    max_tokens: Option<u32>,
) -> Result<GenerationParams, ApiError> {
    let sampling = sampling_options(common)?;
    match common.n {
        None | Some(1) => {}
        Some(0) => return Err(ApiError::invalid_param("n", "n must be at least 1.")),
        Some(n) => {
            return Err(ApiError::invalid_param(
                "n",
                format!("n = {n} is not supported yet; only n = 1 is."),
            ));
        }
    }
    if max_tokens == Some(0) {
        return Err(ApiError::invalid_param(
            "max_tokens",
            "max_tokens must be at least 1.",
        ));
    }
    let stop_strings: Vec<String> = common
        .stop
        .clone()
        .map(|s| s.into_vec())
        .unwrap_or_default();
    if stop_strings.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid_param(
            "stop",
            format!(
                "At most {MAX_STOP_STRINGS} stop strings are allowed; got {}.",
                stop_strings.len()
            ),
        ));
    }
    Ok(GenerationParams {
        sampling,
        max_tokens,
        ignore_eos: common.ignore_eos.unwrap_or(false),
        extra_stop_token_ids: common.stop_token_ids.clone().unwrap_or_default(),
        stop_strings: stop_strings.into_iter().filter(|s| !s.is_empty()).collect(),
        skip_special_tokens: common.skip_special_tokens.unwrap_or(true),
        stream: common.stream.unwrap_or(false),
        include_usage: common
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage == Some(true)),
        priority: common.priority.unwrap_or(0),
    })
}

fn sampling_options(common: &CommonRequest) -> Result<SamplingOptions, ApiError> {
    let defaults = SamplingOptions::default();
    let in_range = |name: &str, value: Option<f32>, lo: f32, hi: f32, default: f32| match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (lo..=hi).contains(&v) => Ok(v),
        Some(v) => Err(ApiError::invalid_param(
            name,
            format!("{name} must be between {lo} and {hi}; got {v}."),
        )),
    };
    let top_p = in_range("top_p", common.top_p, 0.0, 1.0, defaults.top_p)?;
    if top_p == 0.0 {
        return Err(ApiError::invalid_param(
            "top_p",
            "top_p must be greater than 0.",
        ));
    }
    let repetition_penalty = in_range(
        "repetition_penalty",
        common.repetition_penalty,
        0.0,
        10.0,
        1.0,
    )?;
    if repetition_penalty == 0.0 {
        return Err(ApiError::invalid_param(
            "repetition_penalty",
            "repetition_penalty must be greater than 0.",
        ));
    }
    let top_k = match common.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as u32,
        Some(k) => {
            return Err(ApiError::invalid_param(
                "top_k",
                format!("top_k must be -1 (off) or positive; got {k}."),
            ));
        }
    };
    Ok(SamplingOptions {
        temperature: in_range(
            "temperature",
            common.temperature,
            0.0,
            2.0,
            defaults.temperature,
        )?,
        top_p,
        top_k,
        min_p: in_range("min_p", common.min_p, 0.0, 1.0, defaults.min_p)?,
        // Negative seeds are valid in the API; keep their bits.
        seed: common.seed.map(|s| s as u64),
        presence_penalty: in_range("presence_penalty", common.presence_penalty, -2.0, 2.0, 0.0)?,
        frequency_penalty: in_range(
            "frequency_penalty",
            common.frequency_penalty,
            -2.0,
            2.0,
            0.0,
        )?,
        repetition_penalty,
    })
}

/// Rejects chat fields we accept in the schema but cannot honour yet.
pub fn check_chat_unsupported(request: &ChatCompletionRequest) -> Result<(), ApiError> {
    if request.logprobs == Some(true) || request.top_logprobs.is_some_and(|n| n > 0) {
        return Err(ApiError::invalid_param(
            "logprobs",
            "logprobs are not supported yet.",
        ));
    }
    if request.messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must not be empty.",
        ));
    }
    for (i, message) in request.messages.iter().enumerate() {
        if let Some(MessageContent::Parts(parts)) = &message.content
            && let Some(part) = parts.iter().find(|p| p.kind != "text" || p.text.is_none())
        {
            return Err(ApiError::invalid_param(
                &format!("messages[{i}].content"),
                format!(
                    "Content parts of type `{}` are not supported; only text parts are.",
                    part.kind
                ),
            ));
        }
    }
    Ok(())
}

/// Renders the chat template and tokenizes the result. Blocking.
pub fn chat_prompt(
    entry: &ModelEntry,
    request: &ChatCompletionRequest,
    metrics: &FrontendMetrics,
) -> Result<Vec<u32>, ApiError> {
    let template = entry.template.as_ref().ok_or_else(|| {
        ApiError::bad_request(format!(
            "The model `{}` has no chat template; use /v1/completions instead.",
            entry.card.name
        ))
    })?;
    let started = Instant::now();
    let messages =
        turbine_tokens::chat_template::normalize_content(&messages_value(&request.messages)?);
    let tools = request
        .tools
        .as_ref()
        .map(|t| serde_json::Value::Array(t.clone()));
    let text = template
        .render(&ChatTemplateInput {
            messages: &messages,
            tools: tools.as_ref(),
            add_generation_prompt: request.add_generation_prompt.unwrap_or(true),
            extra: request.chat_template_kwargs.as_ref(),
        })
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    metrics
        .template_seconds
        .observe(started.elapsed().as_secs_f64());
    // The template already wrote the special tokens (BOS) it wants.
    tokenize(entry, &text, false, metrics)
}

/// Tokenizes each prompt of a completion request. Blocking.
pub fn completion_prompts(
    entry: &ModelEntry,
    inputs: Vec<PromptInput>,
    metrics: &FrontendMetrics,
) -> Result<Vec<Vec<u32>>, ApiError> {
    if inputs.is_empty() {
        return Err(ApiError::invalid_param(
            "prompt",
            "prompt must not be empty.",
        ));
    }
    if inputs.len() > MAX_PROMPTS {
        return Err(ApiError::invalid_param(
            "prompt",
            format!(
                "At most {MAX_PROMPTS} prompts are allowed in one request; got {}.",
                inputs.len()
            ),
        ));
    }
    let vocab = entry.tokenizer.vocab_size() as u32;
    inputs
        .into_iter()
        .map(|input| match input {
            PromptInput::Text(text) => tokenize(entry, &text, true, metrics),
            PromptInput::Tokens(ids) => match ids.iter().find(|&&id| id >= vocab) {
                Some(bad) => Err(ApiError::invalid_param(
                    "prompt",
                    format!("Token id {bad} is out of range for a vocabulary of {vocab}."),
                )),
                None => Ok(ids),
            },
        })
        .collect()
}

fn tokenize(
    entry: &ModelEntry,
    text: &str,
    add_special_tokens: bool,
    metrics: &FrontendMetrics,
) -> Result<Vec<u32>, ApiError> {
    let started = Instant::now();
    let ids = entry
        .tokenizer
        .encode(text, add_special_tokens)
        .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))?;
    metrics
        .tokenize_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(ids)
}

/// Checks a prompt against the limits and the model's context, and decides `max_tokens`.
pub fn stop_conditions(
    entry: &ModelEntry,
    params: &GenerationParams,
    prompt_len: usize,
    config: &FrontendConfig,
) -> Result<StopConditions, ApiError> {
    let context = entry.card.context_length as usize;
    if prompt_len == 0 {
        return Err(ApiError::invalid_param(
            "prompt",
            "The prompt is empty after tokenization.",
        ));
    }
    let prompt_limit = config
        .max_prompt_tokens
        .map_or(context, |l| (l as usize).min(context));
    if prompt_len > prompt_limit || prompt_len >= context {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {context} tokens and this server accepts prompts of up to \
             {prompt_limit} tokens. However, your prompt has {prompt_len} tokens. Please reduce the length of the prompt."
        )));
    }
    let room = context - prompt_len;
    let max_tokens = match params.max_tokens {
        Some(requested) => {
            if let Some(limit) = config.max_tokens_limit.filter(|&l| requested > l) {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    format!("max_tokens is {requested}, over this server's limit of {limit}."),
                ));
            }
            if requested as usize > room {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    format!(
                        "This model's maximum context length is {context} tokens. However, you requested {} tokens \
                         ({prompt_len} in the prompt, {requested} in the completion). Please reduce the length of \
                         the prompt or completion.",
                        prompt_len + requested as usize
                    ),
                ));
            }
            requested
        }
        None => config
            .max_tokens_limit
            .map_or(room, |l| room.min(l as usize)) as u32,
    };
    let mut stop_token_ids = params.extra_stop_token_ids.clone();
    if !params.ignore_eos {
        stop_token_ids.extend_from_slice(entry.tokenizer.eos_token_ids());
    }
    Ok(StopConditions {
        max_tokens,
        stop_token_ids,
    })
}

/// The message list as chat templates read it.
fn messages_value(messages: &[ChatMessage]) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(messages)
        .map_err(|e| ApiError::internal(format!("cannot serialize messages: {e}")))
}
