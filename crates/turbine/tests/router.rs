//! End-to-end tests of the router inside `turbine serve`: KV-aware placement with mock workers
//! (their KV events feed the index), approximate mode with workers that publish no events, and
//! admission when every worker is busy.

mod common;

use common::{Server, eventually, start_completion};
use serde_json::{Value, json};
use std::time::Duration;

/// A 256-token shared head (16 blocks) and a 32-token tail of its own per turn.
fn turn(i: u32) -> Vec<u32> {
    let mut prompt: Vec<u32> = (100..356).collect();
    prompt.extend(1000 + i * 32..1000 + (i + 1) * 32);
    prompt
}

/// Sends eight turns one after another and returns each one's cached prompt tokens.
async fn cached_tokens_per_turn(policy: &str) -> Vec<u64> {
    let server = Server::start(&[
        "--engine",
        "mock",
        "--speedup",
        "100",
        "--workers",
        "4",
        "--router",
        policy,
    ]);
    let mut c = server.connect().await;
    let mut cached = Vec::new();
    for i in 0..8 {
        let body = json!({"model": server.model, "prompt": turn(i), "max_tokens": 4});
        let response: Value = c
            .post_json("/v1/completions", &body)
            .await
            .expect("request")
            .json()
            .expect("json");
        cached.push(
            response["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .expect("cached tokens"),
        );
        if i == 0 {
            // The first turn's blocks reach the router's index through the event plane.
            eventually(|| async {
                let blocks = server.metric("turbine_router_indexed_blocks", &[]).await;
                match blocks {
                    Some(b) if b >= 16.0 => Ok(()),
                    other => Err(format!("indexed blocks: {other:?}")),
                }
            })
            .await;
        }
    }
    cached
}

#[tokio::test]
async fn kv_routing_keeps_a_conversation_on_the_worker_that_holds_it() {
    let kv = cached_tokens_per_turn("kv").await;
    assert_eq!(kv, [0, 256, 256, 256, 256, 256, 256, 256]);
    // Round-robin visits each of the four workers cold once.
    let round_robin = cached_tokens_per_turn("round-robin").await;
    assert_eq!(round_robin, [0, 0, 0, 0, 256, 256, 256, 256]);
}

#[tokio::test]
async fn workers_without_kv_events_are_routed_in_approximate_mode() {
    let server = Server::start(&["--workers", "3"]);
    let mut c = server.connect().await;
    let prompt: Vec<u32> = (100..164).collect();
    for _ in 0..3 {
        let body = json!({"model": server.model, "prompt": prompt, "max_tokens": 2});
        let response = c
            .post_json("/v1/completions", &body)
            .await
            .expect("request");
        assert_eq!(response.status, 200);
    }
    let hits = server
        .metric("turbine_router_predicted_hit_blocks_total", &[])
        .await
        .expect("hit metric");
    // The echo workers publish nothing; the router remembers where it sent the 4 blocks.
    assert!(hits >= 4.0, "predicted hit blocks: {hits}");
}

#[tokio::test]
async fn when_every_worker_is_busy_requests_queue_then_overflow_gets_503() {
    // One worker with 64 blocks: a 1000-token prompt fills 63 of them (over 95%).
    let server = Server::start(&[
        "--engine",
        "mock",
        "--speedup",
        "0.01",
        "--num-blocks",
        "64",
        "--context-length",
        "1024",
        "--router-queue-size",
        "1",
    ]);
    let long: Vec<u32> = (0..1000).map(|i| 100 + i % 5000).collect();
    let mut a = server.connect().await;
    let body = json!({"model": server.model, "prompt": long, "max_tokens": 24, "stream": true});
    let running = start_completion(&mut a, &body).await;
    assert_eq!(running.status(), 200);
    eventually(|| async {
        let blocks = server
            .metric("turbine_router_worker_active_blocks", &[])
            .await;
        match blocks {
            Some(b) if b >= 61.0 => Ok(()),
            other => Err(format!("active blocks: {other:?}")),
        }
    })
    .await;

    let short = json!({"model": server.model, "prompt": [1, 2, 3], "max_tokens": 2});
    let queued = {
        let mut b = server.connect().await;
        let short = short.clone();
        tokio::spawn(async move { b.post_json("/v1/completions", &short).await })
    };
    eventually(|| async {
        match server.metric("turbine_router_queue_depth", &[]).await {
            Some(d) if d >= 1.0 => Ok(()),
            other => Err(format!("queue depth: {other:?}")),
        }
    })
    .await;
    let mut c = server.connect().await;
    let refused = c
        .post_json("/v1/completions", &short)
        .await
        .expect("request");
    assert_eq!(refused.status, 503);
    assert!(refused.headers.contains_key("retry-after"));

    // The long request goes away: its blocks free up and the queued one is served.
    drop(running);
    drop(a);
    let served = tokio::time::timeout(Duration::from_secs(20), queued)
        .await
        .expect("queued request served in time")
        .expect("task")
        .expect("request");
    assert_eq!(served.status, 200);
    assert_eq!(
        server.metric("turbine_router_rejected_total", &[]).await,
        Some(1.0)
    );
}
