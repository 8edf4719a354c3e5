//! The request plane between processes: HTTP/2 over TCP (cleartext, prior knowledge), one
//! multiplexed connection per worker endpoint.
//!
//! Wire contract (an instance record's `endpoint` is the worker's `http://HOST:PORT`):
//! - `POST /v1/instances/{id}/generate`, body a JSON `PreprocessedRequest`. The answer is 200 with
//!   `application/x-ndjson`: one JSON line per item of the engine stream, each `{"Ok": output}` or
//!   `{"Err": runtime error}`. 404: no such instance here; 400: a malformed body.
//! - `POST /v1/instances/{id}/kv_catch_up?after=N`: a JSON `KvReplay`, or a JSON runtime error
//!   (`Unsupported` for a worker that publishes no KV events) with a non-200 status.
//! - `GET /health`: 200.
//!
//! What HTTP/2 gives: many requests over one connection, flow control (a slow reader slows the
//! worker's sends, not the other streams), and cancellation: a frontend that drops a stream resets
//! it, the worker's response body is dropped, and with it the engine stream, which cancels the
//! request (see `EmbeddedRequestPlane::start`). Failures: a dead worker's connection breaks at
//! once (its sockets close with the process), and HTTP/2 pings every 500 ms find a silent peer
//! within about a second; both end the stream with `RuntimeError::Disconnected`, which the
//! frontend answers by migrating the request. A malformed or truncated frame is the same kind of
//! error; neither side panics on what the other sends.

mod client;
mod server;

pub use client::TcpRequestPlane;
pub use server::serve_request_plane;
