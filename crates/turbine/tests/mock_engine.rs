//! End-to-end tests of `turbine serve --engine mock`: the real engine core (scheduler, block
//! manager, prefix cache) behind the HTTP API, with simulated GPU timing.

mod common;

use common::{Server, all, eventually, stream};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn same_prompt_twice_reports_cached_tokens() {
    let server = Server::start(&["--engine", "mock", "--speedup", "50"]);
    let mut c = server.connect().await;
    let prompt = "Paged attention keeps the KV cache in fixed-size blocks. ".repeat(4);
    let request = json!({"model": server.model, "prompt": prompt, "max_tokens": 12});
    let first = c
        .post_json("/v1/completions", &request)
        .await
        .expect("request")
        .json()
        .expect("json");
    let second = c
        .post_json("/v1/completions", &request)
        .await
        .expect("request")
        .json()
        .expect("json");
    let prompt_tokens = first["usage"]["prompt_tokens"]
        .as_u64()
        .expect("prompt tokens");
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached");
    assert!(
        cached > 0 && cached < prompt_tokens,
        "cached {cached} of {prompt_tokens}"
    );
    assert_eq!(cached % 16, 0, "whole blocks");
    // The mock generates the prompt's tokens in order.
    assert_eq!(first["choices"][0]["finish_reason"], "length");
    assert!(prompt.starts_with(first["choices"][0]["text"].as_str().expect("text")));
    assert_eq!(first["choices"][0]["text"], second["choices"][0]["text"]);
    let hits = server
        .metric("turbine_worker_prefix_cache_hit_tokens_total", &[])
        .await;
    assert_eq!(hits, Some(cached as f64));
}

#[tokio::test]
async fn many_streams_batch_together_and_finish() {
    let server = Server::start(&["--engine", "mock", "--speedup", "20", "--workers", "2"]);
    let results = all((0..64).map(|i| {
        let address = server.address;
        let model = server.model.clone();
        async move {
            let mut c = turbine_bench::Connection::open(address).await.expect("connect");
            let body = json!({
                "model": model, "stream": true, "max_tokens": 16,
                "prompt": format!("Request number {i} asks the mock engine for sixteen tokens of output."),
                "stream_options": {"include_usage": true},
            });
            stream(&mut c, "/v1/completions", &body).await
        }
    }))
    .await;
    for streamed in &results {
        assert!(streamed.done);
        assert_eq!(streamed.finish_reason().as_deref(), Some("length"));
        assert_eq!(
            streamed.events.last().expect("usage")["usage"]["completion_tokens"],
            16
        );
    }
    let finished = server
        .metric("turbine_worker_requests_total", &["outcome=\"finished\""])
        .await;
    assert_eq!(finished, Some(64.0));
    let steps = server
        .metric("turbine_worker_batch_size_count", &[])
        .await
        .expect("steps");
    let sequences = server
        .metric("turbine_worker_batch_size_sum", &[])
        .await
        .expect("sequences");
    assert!(
        sequences / steps > 2.0,
        "continuous batching: {sequences} sequence-steps in {steps} steps"
    );
}

#[tokio::test]
async fn disconnect_frees_the_sequence_and_its_blocks() {
    let server = Server::start(&["--engine", "mock", "--speedup", "1"]);
    let mut c = server.connect().await;
    let body = json!({"model": server.model, "prompt": "A long generation ".repeat(20), "max_tokens": 2000, "stream": true});
    let response = common::start_completion(&mut c, &body).await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(response);
    drop(c);
    let server = &server;
    eventually(|| async move {
        let cancelled = server
            .metric("turbine_worker_requests_total", &["outcome=\"cancelled\""])
            .await;
        let usage = server.metric("turbine_worker_kv_usage_ratio", &[]).await;
        if cancelled == Some(1.0) && usage == Some(0.0) {
            Ok(())
        } else {
            Err(format!("not cancelled: {cancelled:?}, kv usage {usage:?}"))
        }
    })
    .await;
}
