//! Closed-loop load: `concurrency` clients, each with its own keep-alive connection, send streaming
//! requests back to back until `requests` have been sent.

use crate::client::Connection;
use crate::report::{Report, RequestRecord};
use crate::sse::SseParser;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub address: SocketAddr,
    pub model: String,
    /// `chat` or `completions`.
    pub chat: bool,
    pub prompt: String,
    pub max_tokens: u32,
    pub concurrency: usize,
    pub requests: usize,
    /// Requests sent first and left out of the report (connection set-up, the initial burst of
    /// `concurrency` simultaneous arrivals).
    pub warmup: usize,
    pub api_key: Option<String>,
}

pub async fn run_closed_loop(config: LoadConfig) -> anyhow::Result<Report> {
    let config = Arc::new(config);
    let next = Arc::new(AtomicUsize::new(0));
    // The measured wall clock starts when the first request after the warm-up is sent.
    let measured_from = Arc::new(OnceLock::new());
    let mut tasks = Vec::new();
    for _ in 0..config.concurrency.max(1) {
        let config = config.clone();
        let next = next.clone();
        let measured_from = measured_from.clone();
        tasks.push(tokio::spawn(async move {
            let mut records = Vec::new();
            let mut connection = connect(&config).await?;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= config.warmup + config.requests {
                    break;
                }
                if index == config.warmup {
                    let _ = measured_from.set(Instant::now());
                }
                let record = match one_request(&mut connection, &config).await {
                    Ok(record) => record,
                    Err(err) => {
                        connection = connect(&config).await?;
                        RequestRecord::failed(err.to_string())
                    }
                };
                if index >= config.warmup {
                    records.push(record);
                }
            }
            anyhow::Ok(records)
        }));
    }
    let mut records = Vec::new();
    for task in tasks {
        records.extend(task.await.context("client task panicked")??);
    }
    let wall = measured_from.get().map_or(Duration::ZERO, Instant::elapsed);
    Ok(Report::new(records, wall))
}

async fn connect(config: &LoadConfig) -> anyhow::Result<Connection> {
    let connection = Connection::open(config.address).await?;
    Ok(match &config.api_key {
        Some(key) => connection.with_header("authorization", &format!("Bearer {key}")),
        None => connection,
    })
}

fn request_body(config: &LoadConfig) -> Value {
    let mut body = json!({
        "model": config.model,
        "max_tokens": config.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
        "ignore_eos": true,
    });
    if config.chat {
        body["messages"] = json!([{"role": "user", "content": config.prompt}]);
    } else {
        body["prompt"] = json!(config.prompt);
    }
    body
}

async fn one_request(
    connection: &mut Connection,
    config: &LoadConfig,
) -> anyhow::Result<RequestRecord> {
    let path = if config.chat {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    let body = Bytes::from(serde_json::to_vec(&request_body(config))?);
    let start = Instant::now();
    let response = connection.send(Method::POST, path, body).await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    let mut body = response.into_body();
    let mut parser = SseParser::default();
    let mut record = RequestRecord::default();
    let mut last_chunk: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for event in parser.push(data) {
            if event == "[DONE]" {
                record.e2e = start.elapsed();
                return Ok(record);
            }
            let value: Value =
                serde_json::from_str(&event).with_context(|| format!("bad event: {event}"))?;
            if let Some(error) = value.get("error") {
                bail!("stream error: {error}");
            }
            if let Some(tokens) = value
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
            {
                record.output_tokens = tokens;
            }
            if has_text(&value) {
                let now = Instant::now();
                match last_chunk {
                    None => record.ttft = Some(now - start),
                    Some(previous) => record.chunk_gaps.push(now - previous),
                }
                last_chunk = Some(now);
            }
        }
    }
    bail!("the stream ended without [DONE]")
}

fn has_text(chunk: &Value) -> bool {
    let Some(choice) = chunk.pointer("/choices/0") else {
        return false;
    };
    let text = choice
        .get("text")
        .or_else(|| choice.pointer("/delta/content"));
    text.and_then(Value::as_str).is_some_and(|t| !t.is_empty())
}
