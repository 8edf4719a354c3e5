//! One streamed request over a connection, timed: TTFT at the first chunk that carries text, a gap
//! for each later one, end-to-end at `[DONE]`.

use crate::client::Connection;
use crate::record::{RequestError, RequestRecord};
use crate::sse::SseParser;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;
use std::time::Instant;

/// Longest error body kept in a record.
const MAX_ERROR_BODY: usize = 300;

/// Sends `body` to `path` and reads the stream to its end. `start` is when the request was due,
/// so time spent waiting for a connection counts. On `Err`, the connection is unusable.
pub async fn exchange(
    connection: &mut Connection,
    path: &str,
    body: Bytes,
    start: Instant,
) -> Result<RequestRecord, RequestError> {
    let response = connection
        .send(Method::POST, path, body)
        .await
        .map_err(|e| RequestError::Connect(format!("{e:#}")))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map_err(|e| RequestError::Stream(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY)]);
        return Ok(RequestRecord {
            e2e: start.elapsed(),
            error: Some(RequestError::Http {
                status: status.as_u16(),
                body: text.into_owned(),
            }),
            ..Default::default()
        });
    }
    let mut parser = SseParser::default();
    let mut record = RequestRecord::default();
    let mut chunks = 0;
    let mut last_chunk: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RequestError::Stream(e.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for event in parser.push(data) {
            if event == "[DONE]" {
                record.e2e = start.elapsed();
                if record.output_tokens == 0 {
                    record.output_tokens = chunks;
                }
                return Ok(record);
            }
            let value: Value = serde_json::from_str(&event)
                .map_err(|_| RequestError::Stream(format!("bad event: {event}")))?;
            if let Some(error) = value.get("error") {
                return Err(RequestError::Stream(error.to_string()));
            }
            if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
                record.prompt_tokens = usage.get("prompt_tokens").and_then(Value::as_u64);
                if let Some(tokens) = usage.get("completion_tokens").and_then(Value::as_u64) {
                    record.output_tokens = tokens;
                }
            }
            if has_text(&value) {
                let now = Instant::now();
                match last_chunk {
                    None => record.ttft = Some(now - start),
                    Some(previous) => record.itl.push(now - previous),
                }
                last_chunk = Some(now);
                chunks += 1;
            }
        }
    }
    Err(RequestError::Stream(
        "the stream ended without [DONE]".into(),
    ))
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
