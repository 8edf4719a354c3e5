//! The event plane on NATS: KV events as JSON on `turbine.kv.{worker}`, load reports on
//! `turbine.load.{worker}`. Subscribers get the same tokio broadcast receivers as in process.
//!
//! Invariants:
//! - Publishing never blocks the caller (often the engine thread): messages go through a bounded
//!   queue to a task that hands them to the client; when the queue is full they are dropped, as a
//!   bus drops them, and subscribers recover through `event_id` gaps.
//! - While the client is disconnected, messages are dropped too. The client would otherwise hold
//!   them and send them after reconnecting, late and in a burst, or lose them anyway if the
//!   subscribers reconnect after it; dropping them makes an outage always a gap, which routers
//!   repair with one catch-up from each worker's current state.
//! - The subscription to a subject starts with the first `subscribe_*` call and lasts as long as
//!   the event plane; a message that does not decode is logged and skipped.
//! - async-nats reconnects on its own (and resubscribes); the `kv_event_id` in load reports lets
//!   routers notice events lost at the end of an outage, which no later event would reveal.

use crate::RuntimeError;
use crate::connect::host_ports;
use crate::event_plane::EventPlane;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use turbine_protocols::{KvEvent, LoadReport};

const KV_SUBJECTS: &str = "turbine.kv.*";
const LOAD_SUBJECTS: &str = "turbine.load.*";
/// Messages waiting to be handed to the NATS client, and per subscriber, as in process.
const CAPACITY: usize = 65_536;
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);

pub struct NatsEventPlane {
    client: async_nats::Client,
    runtime: tokio::runtime::Handle,
    outbox: mpsc::Sender<(String, Bytes)>,
    publisher: JoinHandle<()>,
    kv: Subscription<KvEvent>,
    load: Subscription<LoadReport>,
}

/// Received messages of one subject pattern, fanned out to subscribers.
struct Subscription<T> {
    subjects: &'static str,
    sender: broadcast::Sender<T>,
    task: OnceLock<JoinHandle<()>>,
}

impl NatsEventPlane {
    /// Connects to `nats://HOST:PORT[,HOST:PORT…]`; fails if no server answers within 5 s.
    pub async fn connect(url: &str) -> Result<Self, RuntimeError> {
        let servers: Vec<String> = host_ports(url, "nats")?
            .into_iter()
            .map(|host| format!("nats://{host}"))
            .collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            // Notice a dead connection that sends no reset within seconds.
            .ping_interval(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                Duration::from_millis(100)
                    .saturating_mul(attempts)
                    .min(RECONNECT_DELAY_MAX)
            })
            .event_callback(|event| async move {
                tracing::info!(%event, "NATS connection");
            })
            .connect(servers.as_slice())
            .await
            .map_err(|error| RuntimeError::Nats(format!("connecting to {url}: {error}")))?;
        let (outbox, queued) = mpsc::channel(CAPACITY);
        Ok(Self {
            publisher: tokio::spawn(publish_queued(client.clone(), queued)),
            client,
            runtime: tokio::runtime::Handle::current(),
            outbox,
            kv: Subscription::new(KV_SUBJECTS),
            load: Subscription::new(LOAD_SUBJECTS),
        })
    }

    fn enqueue(&self, subject: String, message: &impl Serialize) {
        let payload = match serde_json::to_vec(message) {
            Ok(payload) => Bytes::from(payload),
            Err(error) => {
                tracing::error!(%subject, %error, "event not serializable");
                return;
            }
        };
        if self.outbox.try_send((subject, payload)).is_err() {
            tracing::debug!("NATS outbox full or closed; event dropped");
        }
    }
}

impl Drop for NatsEventPlane {
    fn drop(&mut self) {
        self.publisher.abort();
        self.kv.stop();
        self.load.stop();
    }
}

impl EventPlane for NatsEventPlane {
    fn publish_kv(&self, event: KvEvent) {
        self.enqueue(format!("turbine.kv.{}", event.worker_id), &event);
    }

    fn publish_load(&self, report: LoadReport) {
        let worker = report
            .worker_id
            .map_or_else(|| "unknown".to_string(), |id| id.to_string());
        self.enqueue(format!("turbine.load.{worker}"), &report);
    }

    fn subscribe_kv(&self) -> broadcast::Receiver<KvEvent> {
        self.kv.subscribe(&self.client, &self.runtime)
    }

    fn subscribe_load(&self) -> broadcast::Receiver<LoadReport> {
        self.load.subscribe(&self.client, &self.runtime)
    }
}

async fn publish_queued(client: async_nats::Client, mut queued: mpsc::Receiver<(String, Bytes)>) {
    while let Some((subject, payload)) = queued.recv().await {
        if client.connection_state() != async_nats::connection::State::Connected {
            tracing::debug!(%subject, "NATS disconnected; event dropped");
            continue;
        }
        if let Err(error) = client.publish(subject, payload).await {
            tracing::warn!(%error, "NATS publish failed; event dropped");
        }
    }
}

impl<T: DeserializeOwned + Clone + Send + 'static> Subscription<T> {
    fn new(subjects: &'static str) -> Self {
        Self {
            subjects,
            sender: broadcast::Sender::new(CAPACITY),
            task: OnceLock::new(),
        }
    }

    fn subscribe(
        &self,
        client: &async_nats::Client,
        runtime: &tokio::runtime::Handle,
    ) -> broadcast::Receiver<T> {
        let receiver = self.sender.subscribe();
        self.task.get_or_init(|| {
            runtime.spawn(forward(client.clone(), self.subjects, self.sender.clone()))
        });
        receiver
    }

    fn stop(&self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

/// Decodes every message on `subjects` into `sender`. A failed subscription (only when the client
/// is closed) ends the task: subscribers then see no more events.
async fn forward<T: DeserializeOwned>(
    client: async_nats::Client,
    subjects: &'static str,
    sender: broadcast::Sender<T>,
) {
    let mut messages = match client.subscribe(subjects).await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::error!(subjects, %error, "NATS subscription failed");
            return;
        }
    };
    while let Some(message) = messages.next().await {
        match serde_json::from_slice(&message.payload) {
            Ok(event) => {
                // No subscriber left is not an error: one may subscribe again.
                let _ = sender.send(event);
            }
            Err(error) => {
                tracing::warn!(subject = %message.subject, %error, "malformed event skipped");
            }
        }
    }
}
