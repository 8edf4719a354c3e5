//! One choice of a response: an engine stream turned into text. Tokens are detokenized
//! incrementally (never emitting half a UTF-8 character) and matched against stop strings (never
//! emitting a stop string or anything after it). Under load several engine outputs that are ready
//! at once are coalesced into one step, so a busy server sends fewer, larger chunks.

use crate::error::ApiError;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use turbine_protocols::openai::{OpenAiFinishReason, Usage};
use turbine_protocols::{EngineOutput, FinishReason};
use turbine_router::RouteGuard;
use turbine_runtime::{EngineStream, RuntimeError};
use turbine_tokens::{IncrementalDetokenizer, StopStringMatcher, Tokenizer};

/// Most engine outputs merged into one step.
const MAX_COALESCED: usize = 64;

/// What one step of a choice produced.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Text safe to send now; may be empty when a stop string or a character is still partial.
    pub text: String,
    /// Tokens the engine produced in this step.
    pub new_tokens: usize,
    /// Set on the choice's last step.
    pub finish: Option<OpenAiFinishReason>,
}

pub struct Choice {
    pub index: u32,
    /// `None` once finished: dropping the engine stream cancels the engine's work.
    engine: Option<EngineStream>,
    /// The request's load on its worker, as the router books it; `None` once finished.
    route: Option<RouteGuard>,
    detokenizer: IncrementalDetokenizer,
    stops: StopStringMatcher,
    prompt_tokens: u32,
    completion_tokens: u32,
    cached_tokens: u32,
}

impl Choice {
    pub fn new(
        index: u32,
        engine: EngineStream,
        tokenizer: Arc<Tokenizer>,
        skip_special_tokens: bool,
        stop_strings: Vec<String>,
        prompt_tokens: usize,
        route: RouteGuard,
    ) -> Self {
        Self {
            index,
            engine: Some(engine),
            route: Some(route),
            detokenizer: IncrementalDetokenizer::new(tokenizer, skip_special_tokens),
            stops: StopStringMatcher::new(stop_strings),
            prompt_tokens: prompt_tokens as u32,
            completion_tokens: 0,
            cached_tokens: 0,
        }
    }

    pub fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
        )
    }

    /// The next step, or `None` after the last one.
    pub async fn next_step(&mut self) -> Option<Result<Step, ApiError>> {
        let engine = self.engine.as_mut()?;
        let first = match engine.next().await {
            Some(item) => item,
            None => return Some(Err(self.fail(ended_early()))),
        };
        let mut outputs = vec![first];
        while outputs.len() < MAX_COALESCED && !outputs.iter().any(ends) {
            match engine.next().now_or_never() {
                Some(Some(item)) => outputs.push(item),
                Some(None) => outputs.push(Err(ended_early())),
                None => break,
            }
        }
        let mut step = Step::default();
        for output in outputs {
            match output {
                Ok(output) => {
                    if let Some(finish) = self.apply(output, &mut step) {
                        return Some(finish.map(|()| step));
                    }
                }
                Err(err) => return Some(Err(self.fail(err))),
            }
        }
        Some(Ok(step))
    }

    /// Adds one engine output to `step`; `Some` when the choice has ended (well or badly).
    fn apply(&mut self, output: EngineOutput, step: &mut Step) -> Option<Result<(), ApiError>> {
        if let Some(cached) = output.cached_tokens {
            self.cached_tokens = cached;
        }
        step.new_tokens += output.token_ids.len();
        if let Some(route) = &mut self.route {
            route.generated(output.token_ids.len());
        }
        self.completion_tokens += output.token_ids.len() as u32;
        let mut text = self.detokenizer.push_many(&output.token_ids);
        let finish = match output.finish_reason {
            None => None,
            Some(FinishReason::Stop) => Some(OpenAiFinishReason::Stop),
            Some(FinishReason::Length) => Some(OpenAiFinishReason::Length),
            Some(FinishReason::Cancelled) => {
                return Some(Err(self.fail(RuntimeError::Engine(
                    "the worker cancelled the request".into(),
                ))));
            }
            Some(FinishReason::Error(message)) => {
                return Some(Err(self.fail(RuntimeError::Engine(message))));
            }
        };
        if finish.is_some() {
            text.push_str(&self.detokenizer.finish());
        }
        let matched = self.stops.push(&text);
        step.text.push_str(&matched.text);
        if matched.stopped {
            step.finish = Some(OpenAiFinishReason::Stop);
            self.end();
            return Some(Ok(()));
        }
        if finish.is_some() {
            step.text.push_str(&self.stops.flush());
            step.finish = finish;
            self.end();
            return Some(Ok(()));
        }
        None
    }

    /// Stops the engine's work (if any is left) and takes the request's load off its worker.
    fn end(&mut self) {
        self.engine = None;
        self.route = None;
    }

    fn fail(&mut self, err: RuntimeError) -> ApiError {
        self.end();
        match err {
            RuntimeError::Engine(message) => {
                ApiError::internal(format!("generation failed: {message}"))
            }
            other => ApiError::overloaded(format!("generation failed: {other}"), 1),
        }
    }
}

fn ends(item: &Result<EngineOutput, RuntimeError>) -> bool {
    item.as_ref().map_or(true, |o| o.finish_reason.is_some())
}

fn ended_early() -> RuntimeError {
    RuntimeError::Disconnected("the worker ended the stream before finishing".into())
}
