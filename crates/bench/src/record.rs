//! What one request measured: the input of a [`crate::Report`], from a live run or a simulation.

use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct RequestRecord {
    /// The workload request's id.
    pub id: usize,
    /// When it was sent, from the start of the run.
    pub sent: Duration,
    /// How much later than its schedule it was sent (open loop and multi-turn follow-ups; `None`
    /// in a closed loop, where requests have no schedule).
    pub lag: Option<Duration>,
    pub ttft: Option<Duration>,
    pub e2e: Duration,
    /// Gaps between successive chunks that carried text (inter-token latency when, as usual,
    /// each chunk carries one token).
    pub itl: Vec<Duration>,
    /// The server's count, from `usage`, when it sends one.
    pub prompt_tokens: Option<u64>,
    /// From `usage` when the server sends it, else the number of chunks that carried text.
    pub output_tokens: u64,
    pub error: Option<RequestError>,
}

impl RequestRecord {
    /// Time per output token after the first: `(e2e - ttft) / (output_tokens - 1)`.
    pub fn tpot(&self) -> Option<Duration> {
        let ttft = self.ttft?;
        (self.output_tokens > 1)
            .then(|| (self.e2e.saturating_sub(ttft)).div_f64((self.output_tokens - 1) as f64))
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("stream: {0}")]
    Stream(String),
}

impl RequestError {
    /// The key errors are counted under: `http_404`, `connect`, `timeout`, `stream`.
    pub fn kind(&self) -> String {
        match self {
            RequestError::Http { status, .. } => format!("http_{status}"),
            RequestError::Connect(_) => "connect".into(),
            RequestError::Timeout => "timeout".into(),
            RequestError::Stream(_) => "stream".into(),
        }
    }
}
