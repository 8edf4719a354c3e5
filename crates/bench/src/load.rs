//! Replays planned requests against a server: each at its arrival time (open loop) or as soon as
//! one of `concurrency` slots is free (closed loop), multi-turn follow-ups once their parent has
//! completed plus think time. Connections are kept alive and reused.
//!
//! Invariants: every request is sent exactly once and yields exactly one record; at most
//! `concurrency` are in flight; each is bounded by `request_timeout`, so a run ends.

use crate::client::Connection;
use crate::exchange::exchange;
use crate::progress::Progress;
use crate::record::{RequestError, RequestRecord};
use crate::request::Planned;
use crate::workload::Arrival;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub address: SocketAddr,
    pub api_key: Option<String>,
    pub path: &'static str,
    /// Most requests in flight; `None`: no limit.
    pub concurrency: Option<usize>,
    pub request_timeout: Duration,
    pub progress: bool,
}

/// The records of a run, in completion order, and its wall time: from the start to the last
/// completion.
pub struct Run {
    pub records: Vec<RequestRecord>,
    pub wall: Duration,
}

/// Idle keep-alive connections.
struct Pool {
    config: LoadConfig,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    async fn take(&self) -> Result<Connection, RequestError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(connection) = idle {
            return Ok(connection);
        }
        let connection = Connection::open(self.config.address)
            .await
            .map_err(|e| RequestError::Connect(format!("{e:#}")))?;
        Ok(match &self.config.api_key {
            Some(key) => connection.with_header("authorization", &format!("Bearer {key}")),
            None => connection,
        })
    }

    fn give_back(&self, connection: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
    }
}

pub async fn run(config: &LoadConfig, requests: &[Planned]) -> Run {
    let pool = Arc::new(Pool {
        config: config.clone(),
        idle: Mutex::new(Vec::new()),
    });
    // Open the closed loop's connections up front so that set-up is not measured.
    for _ in 0..config.concurrency.unwrap_or(0).min(requests.len()) {
        if let Ok(connection) = pool.take().await {
            pool.give_back(connection);
        }
    }
    let limit = config.concurrency.unwrap_or(usize::MAX).max(1);
    let start = Instant::now();
    let mut children = vec![Vec::new(); requests.len()];
    // Due later, by time; due now, by id (so a closed loop continues conversations first).
    let mut waiting = BinaryHeap::new();
    let mut ready = BinaryHeap::new();
    for (id, request) in requests.iter().enumerate() {
        match (request.after, request.arrival) {
            (Some((parent, think)), _) => children[parent].push((id, think)),
            (None, Arrival::Closed) => ready.push(Reverse((id, None))),
            (None, Arrival::At(at)) => waiting.push(Reverse((start + at, id))),
        }
    }
    let progress = Progress::start(requests.len(), config.progress);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut records = Vec::with_capacity(requests.len());
    let mut in_flight = 0;
    while records.len() < requests.len() {
        let now = Instant::now();
        while let Some(&Reverse((due, id))) = waiting.peek() {
            if due > now {
                break;
            }
            waiting.pop();
            ready.push(Reverse((id, Some(due))));
        }
        while in_flight < limit {
            let Some(Reverse((id, due))) = ready.pop() else {
                break;
            };
            in_flight += 1;
            let (pool, done_tx) = (pool.clone(), done_tx.clone());
            let body = requests[id].body.clone();
            let timeout = config.request_timeout;
            tokio::spawn(async move {
                let sent = Instant::now();
                let mut record = send(&pool, body, sent, timeout).await;
                record.id = id;
                record.sent = sent - start;
                record.lag = due.map(|due| sent.saturating_duration_since(due));
                let _ = done_tx.send(record);
            });
        }
        let next_due = waiting.peek().map(|Reverse((due, _))| *due);
        tokio::select! {
            Some(record) = done_rx.recv() => {
                in_flight -= 1;
                progress.completed(record.error.is_some());
                let now = Instant::now();
                for &(child, think) in &children[record.id] {
                    waiting.push(Reverse((now + think, child)));
                }
                records.push(record);
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or(now).into()), if next_due.is_some() => {}
        }
    }
    progress.finish();
    Run {
        records,
        wall: start.elapsed(),
    }
}

/// One request with a pooled connection, bounded by `timeout`.
async fn send(pool: &Pool, body: bytes::Bytes, sent: Instant, timeout: Duration) -> RequestRecord {
    let attempt = async {
        let mut connection = pool.take().await?;
        let record = exchange(&mut connection, pool.config.path, body, sent).await?;
        pool.give_back(connection);
        Ok(record)
    };
    let error = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(record)) => return record,
        Ok(Err(error)) => error,
        Err(_) => RequestError::Timeout,
    };
    RequestRecord {
        e2e: sent.elapsed(),
        error: Some(error),
        ..Default::default()
    }
}
