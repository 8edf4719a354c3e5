//! One choice of a response: an engine stream turned into text. Tokens are detokenized
//! incrementally (never emitting half a UTF-8 character) and matched against stop strings (never
//! emitting a stop string or anything after it). Under load several engine outputs that are ready
//! at once are coalesced into one step, so a busy server sends fewer, larger chunks.

use crate::dispatch::Dispatch;
use crate::error::ApiError;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Instant;
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
    /// Moves the request to another worker when its stream breaks.
    dispatch: Dispatch,
    /// Every token generated so far, whichever worker made it.
    generated: Vec<u32>,
    detokenizer: IncrementalDetokenizer,
    stops: StopStringMatcher,
    prompt_tokens: u32,
    max_tokens: u32,
    cached_tokens: u32,
    /// When the last worker was lost, until the next one produces a token.
    lost_at: Option<Instant>,
}

/// How a choice ends its text: a tokenizer and the stop conditions of the response.
pub struct TextOptions {
    pub tokenizer: Arc<Tokenizer>,
    pub skip_special_tokens: bool,
    pub stop_strings: Vec<String>,
}

impl Choice {
    /// A choice whose request `dispatch` has started (`engine` from its worker, `route` its load).
    pub fn new(
        index: u32,
        (engine, route): (EngineStream, RouteGuard),
        dispatch: Dispatch,
        text: TextOptions,
        prompt_tokens: usize,
        max_tokens: u32,
    ) -> Self {
        Self {
            index,
            engine: Some(engine),
            route: Some(route),
            dispatch,
            generated: Vec::new(),
            detokenizer: IncrementalDetokenizer::new(text.tokenizer, text.skip_special_tokens),
            stops: StopStringMatcher::new(text.stop_strings),
            prompt_tokens: prompt_tokens as u32,
            max_tokens,
            cached_tokens: 0,
            lost_at: None,
        }
    }

    pub fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_tokens,
            self.generated.len() as u32,
            self.cached_tokens,
        )
    }

    /// The next step, or `None` after the last one.
    pub async fn next_step(&mut self) -> Option<Result<Step, ApiError>> {
        self.engine.as_ref()?;
        let mut step = Step::default();
        loop {
            for output in self.ready_outputs().await {
                let err = match output {
                    Ok(output) => match self.apply(output, &mut step) {
                        Some(end) => return Some(end.map(|()| step)),
                        None => continue,
                    },
                    Err(err) => err,
                };
                let worker = self.route.as_ref().map(|r| r.worker());
                let moving = worker.is_some_and(|w| self.dispatch.should_migrate(w, &err));
                if !moving {
                    return Some(Err(self.fail(err)));
                }
                if let Err(api) = self.migrate().await {
                    self.end();
                    return Some(Err(api));
                }
                break;
            }
            if step.new_tokens > 0 || step.finish.is_some() {
                return Some(Ok(step));
            }
        }
    }

    /// The next engine output, and every one already waiting behind it (up to a limit), so a
    /// busy server sends fewer, larger chunks. A stream that ends early yields an error.
    async fn ready_outputs(&mut self) -> Vec<Result<EngineOutput, RuntimeError>> {
        let Some(engine) = self.engine.as_mut() else {
            return vec![Err(ended_early())];
        };
        let mut outputs = vec![engine.next().await.unwrap_or_else(|| Err(ended_early()))];
        while outputs.len() < MAX_COALESCED && !outputs.iter().any(ends) {
            match engine.next().now_or_never() {
                Some(Some(item)) => outputs.push(item),
                Some(None) => outputs.push(Err(ended_early())),
                None => break,
            }
        }
        outputs
    }

    /// Restarts the request on another worker after the tokens generated so far.
    async fn migrate(&mut self) -> Result<(), ApiError> {
        self.lost_at.get_or_insert_with(Instant::now);
        self.engine = None;
        self.route = None;
        let (engine, route) = self.dispatch.start(&self.generated).await?;
        self.engine = Some(engine);
        self.route = Some(route);
        Ok(())
    }

    /// Adds one engine output to `step`; `Some` when the choice has ended (well or badly).
    fn apply(&mut self, output: EngineOutput, step: &mut Step) -> Option<Result<(), ApiError>> {
        // Only the first worker's prefix hit counts: a migrated request's "cache" is its own past.
        if let Some(cached) = output.cached_tokens
            && self.generated.is_empty()
        {
            self.cached_tokens = cached;
        }
        step.new_tokens += output.token_ids.len();
        self.generated.extend_from_slice(&output.token_ids);
        if !output.token_ids.is_empty()
            && let Some(lost) = self.lost_at.take()
        {
            self.dispatch.resumed(lost.elapsed());
        }
        if let Some(route) = &mut self.route {
            route.generated(output.token_ids.len());
        }
        let mut text = self.detokenizer.push_many(&output.token_ids);
        let finish = match output.finish_reason {
            // All tokens arrived (a migrated request's last worker may not say so itself).
            None if self.generated.len() >= self.max_tokens as usize => {
                Some(OpenAiFinishReason::Length)
            }
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
