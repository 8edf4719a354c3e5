//! The echo engine streams a request's prompt tokens back, one per step: the first at once (echo
//! adds nothing to time to first token), each later one after a configurable delay. It stops with `length` at `max_tokens` and with `stop` when the prompt is used
//! up. Prompt tokens are echoed even when they are stop tokens: echo tests the pipeline, not
//! generation.

use crate::metrics::WorkerHandles;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use turbine_protocols::{EngineOutput, FinishReason, PreprocessedRequest};
use turbine_runtime::{EngineStream, Generate};

pub struct EchoEngine {
    token_delay: Duration,
    metrics: WorkerHandles,
}

impl EchoEngine {
    pub fn new(token_delay: Duration, metrics: WorkerHandles) -> Self {
        Self {
            token_delay,
            metrics,
        }
    }
}

impl Generate for EchoEngine {
    fn generate(&self, request: PreprocessedRequest, cancel: CancellationToken) -> EngineStream {
        let (tx, rx) = mpsc::channel(32);
        let delay = self.token_delay;
        let metrics = self.metrics.clone();
        metrics.active.inc();
        tokio::spawn(async move {
            let finished = echo(request, delay, &cancel, &tx).await;
            metrics.active.dec();
            if finished {
                &metrics.finished
            } else {
                &metrics.cancelled
            }
            .inc();
        });
        ReceiverStream::new(rx).map(Ok).boxed()
    }
}

/// Streams the echo; false if the request was cancelled first.
async fn echo(
    request: PreprocessedRequest,
    delay: Duration,
    cancel: &CancellationToken,
    tx: &mpsc::Sender<EngineOutput>,
) -> bool {
    let max = request.stop.max_tokens as usize;
    let tokens = &request.token_ids;
    let count = tokens.len().min(max);
    let finish = if tokens.len() > max {
        FinishReason::Length
    } else {
        FinishReason::Stop
    };
    if count == 0 {
        let last = EngineOutput {
            finish_reason: Some(finish),
            cached_tokens: Some(0),
            ..Default::default()
        };
        return tx.send(last).await.is_ok();
    }
    for (i, &token) in tokens[..count].iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return false,
            }
        } else if cancel.is_cancelled() {
            return false;
        }
        let output = EngineOutput {
            token_ids: vec![token],
            finish_reason: (i + 1 == count).then(|| finish.clone()),
            cached_tokens: (i == 0).then_some(0),
        };
        if tx.send(output).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkerMetrics;
    use turbine_protocols::{InstanceId, StopConditions};

    fn engine(delay_ms: u64) -> (EchoEngine, WorkerHandles) {
        let metrics = WorkerMetrics::register(&prometheus::Registry::new())
            .expect("metrics")
            .for_worker(InstanceId(1));
        (
            EchoEngine::new(Duration::from_millis(delay_ms), metrics.clone()),
            metrics,
        )
    }

    fn request(tokens: Vec<u32>, max_tokens: u32) -> PreprocessedRequest {
        PreprocessedRequest {
            request_id: "r".into(),
            token_ids: tokens,
            sampling: Default::default(),
            stop: StopConditions {
                max_tokens,
                stop_token_ids: vec![],
            },
            priority: 0,
        }
    }

    #[tokio::test]
    async fn echoes_until_prompt_or_max_tokens() {
        let (engine, metrics) = engine(0);
        let out: Vec<_> = engine
            .generate(request(vec![5, 6, 7], 10), CancellationToken::new())
            .collect()
            .await;
        let tokens: Vec<u32> = out
            .iter()
            .flat_map(|o| o.as_ref().expect("ok").token_ids.clone())
            .collect();
        assert_eq!(tokens, vec![5, 6, 7]);
        assert_eq!(
            out.last()
                .and_then(|o| o.as_ref().ok())
                .and_then(|o| o.finish_reason.clone()),
            Some(FinishReason::Stop)
        );

        let out: Vec<_> = engine
            .generate(request(vec![5, 6, 7], 2), CancellationToken::new())
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].as_ref().expect("ok").finish_reason,
            Some(FinishReason::Length)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(metrics.finished.get(), 2);
    }

    #[tokio::test]
    async fn cancellation_stops_the_echo() {
        let (engine, metrics) = engine(50);
        let cancel = CancellationToken::new();
        let mut stream = engine.generate(request(vec![1; 100], 100), cancel.clone());
        assert!(stream.next().await.is_some());
        cancel.cancel();
        drop(stream);
        for _ in 0..100 {
            if metrics.cancelled.get() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.cancelled.get(), 1);
        assert_eq!(metrics.active.get(), 0);
    }
}
