//! The flow both generation endpoints share once a request is parsed: admit it, tokenize it off
//! the async threads, start one engine stream per prompt, and answer with SSE or one JSON body.

use crate::admission::AdmissionPermit;
use crate::dispatch::Dispatch;
use crate::error::ApiError;
use crate::generate::{Choice, Step, TextOptions};
use crate::metrics::RequestTracker;
use crate::preprocess::{self, GenerationParams};
use crate::registry::ModelEntry;
use crate::response::{DONE_FRAME, Endpoint, FinishedChoice, ResponseMeta, error_frame};
use crate::server::AppState;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream, SelectAll};
use std::sync::Arc;
use turbine_protocols::PreprocessedRequest;
use turbine_protocols::openai::{OpenAiFinishReason, Usage};

use crate::server::INLINE_PREPROCESS_BYTES;

/// Runs `tokenize` (on the blocking pool unless the body is small) and serves the prompts it
/// returns.
pub async fn serve(
    state: &AppState,
    entry: Arc<ModelEntry>,
    endpoint: Endpoint,
    params: GenerationParams,
    body_bytes: usize,
    tokenize: impl FnOnce(&ModelEntry) -> Result<Vec<Vec<u32>>, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let permit = state.admission.admit().await?;
    let prompts = if body_bytes <= INLINE_PREPROCESS_BYTES {
        tokenize(&entry)?
    } else {
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || tokenize(&entry))
            .await
            .map_err(|e| ApiError::internal(format!("preprocessing panicked: {e}")))??
    };
    let mut requests = Vec::with_capacity(prompts.len());
    for token_ids in prompts {
        let stop = preprocess::stop_conditions(&entry, &params, token_ids.len(), &state.config)?;
        requests.push(PreprocessedRequest {
            request_id: String::new(),
            token_ids,
            sampling: params.sampling.clone(),
            stop,
            priority: params.priority,
        });
    }
    let meta = ResponseMeta::new(endpoint, entry.card.name.clone(), params.include_usage);
    let input_tokens = requests.iter().map(|r| r.token_ids.len()).sum();
    let tracker = state
        .metrics
        .track(&entry.card.name, endpoint.label(), input_tokens);
    let mut choices = Vec::with_capacity(requests.len());
    for (index, mut request) in requests.into_iter().enumerate() {
        request.request_id = format!("{}-{index}", meta.id);
        let prompt_tokens = request.token_ids.len();
        let max_tokens = request.stop.max_tokens;
        let mut dispatch = Dispatch::new(
            entry.clone(),
            state.plane.clone(),
            state.metrics.clone(),
            request,
            state.config.retry_after_secs,
        );
        let started = dispatch.start(&[]).await?;
        let text = TextOptions {
            tokenizer: entry.tokenizer.clone(),
            skip_special_tokens: params.skip_special_tokens,
            stop_strings: params.stop_strings.clone(),
        };
        choices.push(Choice::new(
            index as u32,
            started,
            dispatch,
            text,
            prompt_tokens,
            max_tokens,
        ));
    }
    let run = Run {
        meta,
        remaining: choices.len(),
        steps: merge(choices),
        usage: Usage::default(),
        tracker,
        _permit: permit,
    };
    if params.stream {
        Ok(run.into_sse())
    } else {
        run.into_json().await
    }
}

/// A step of one choice; `usage` is set with the choice's last step.
type IndexedStep = (u32, Result<Step, ApiError>, Option<Usage>);

fn merge(choices: Vec<Choice>) -> SelectAll<BoxStream<'static, IndexedStep>> {
    stream::select_all(choices.into_iter().map(|choice| {
        stream::unfold(choice, |mut choice| async move {
            let step = choice.next_step().await?;
            let usage = match &step {
                Ok(s) if s.finish.is_some() => Some(choice.usage()),
                _ => None,
            };
            Some(((choice.index, step, usage), choice))
        })
        .boxed()
    }))
}

/// A request whose engine streams are running.
struct Run {
    meta: ResponseMeta,
    remaining: usize,
    steps: SelectAll<BoxStream<'static, IndexedStep>>,
    usage: Usage,
    tracker: RequestTracker,
    /// Keeps the admission slot until the response ends.
    _permit: AdmissionPermit,
}

impl Run {
    async fn into_json(mut self) -> Result<Response, ApiError> {
        let mut texts: Vec<String> = vec![String::new(); self.remaining];
        let mut finishes: Vec<Option<OpenAiFinishReason>> = vec![None; self.remaining];
        while let Some((index, step, usage)) = self.steps.next().await {
            let step = step.inspect_err(|e| self.tracker.finish(e.status.as_u16()))?;
            self.tracker.tokens(step.new_tokens);
            texts[index as usize].push_str(&step.text);
            if let Some(finish) = step.finish {
                finishes[index as usize] = Some(finish);
                self.usage.add(&usage.unwrap_or_default());
            }
        }
        let choices = texts
            .into_iter()
            .zip(finishes)
            .map(|(text, finish)| FinishedChoice {
                text,
                finish: finish.unwrap_or(OpenAiFinishReason::Stop),
            })
            .collect();
        let body = self.meta.full_body(choices, self.usage.clone())?;
        self.tracker.finish(200);
        Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response())
    }

    fn into_sse(self) -> Response {
        let start: Vec<Bytes> = (0..self.remaining as u32)
            .filter_map(|i| self.meta.start_frame(i))
            .collect();
        let head = stream::iter(start.into_iter().map(Ok::<_, std::convert::Infallible>));
        let body = stream::unfold(Some(self), |run| async move {
            let mut run = run?;
            let frames = run.next_frames().await;
            let done = run.remaining == 0;
            Some((Ok(Bytes::from(frames)), (!done).then_some(run)))
        });
        let mut response = Response::new(Body::from_stream(head.chain(body)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// Waits for the next step that has something to send and renders its frames; the last call
    /// returns the closing frames, ending with `[DONE]`.
    async fn next_frames(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let Some((index, step, usage)) = self.steps.next().await else {
                self.close(&mut out);
                return out;
            };
            let step = match step {
                Ok(step) => step,
                Err(err) => {
                    self.tracker.finish(err.status.as_u16());
                    out.extend_from_slice(&error_frame(&err));
                    out.extend_from_slice(DONE_FRAME);
                    self.remaining = 0;
                    return out;
                }
            };
            self.tracker.tokens(step.new_tokens);
            if !step.text.is_empty() || step.finish.is_some() {
                out.extend_from_slice(&self.meta.step_frame(index, &step.text, step.finish));
            }
            if step.finish.is_some() {
                self.usage.add(&usage.unwrap_or_default());
                self.remaining -= 1;
                if self.remaining == 0 {
                    self.close(&mut out);
                    return out;
                }
            }
            if !out.is_empty() {
                return out;
            }
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.meta.include_usage {
            out.extend_from_slice(&self.meta.usage_frame(self.usage.clone()));
        }
        out.extend_from_slice(DONE_FRAME);
        self.tracker.finish(200);
        self.remaining = 0;
    }
}
