//! The event plane: workers publish KV events and load reports; routers and planners subscribe.
//!
//! Delivery is best effort, as on any real bus: a slow subscriber loses the oldest events (it sees
//! `Lagged`), and the per-worker `event_id` sequence lets it notice and recover.

use tokio::sync::broadcast;
use turbine_protocols::{KvEvent, LoadReport};

pub trait EventPlane: Send + Sync {
    fn publish_kv(&self, event: KvEvent);
    fn publish_load(&self, report: LoadReport);
    fn subscribe_kv(&self) -> broadcast::Receiver<KvEvent>;
    fn subscribe_load(&self) -> broadcast::Receiver<LoadReport>;
}

/// The event plane inside one process.
pub struct EmbeddedEventPlane {
    kv: broadcast::Sender<KvEvent>,
    load: broadcast::Sender<LoadReport>,
}

impl EmbeddedEventPlane {
    /// `capacity`: events buffered per subscriber before the oldest are dropped.
    pub fn new(capacity: usize) -> Self {
        Self {
            kv: broadcast::Sender::new(capacity.max(1)),
            load: broadcast::Sender::new(capacity.max(1)),
        }
    }
}

impl Default for EmbeddedEventPlane {
    fn default() -> Self {
        Self::new(65_536)
    }
}

impl EventPlane for EmbeddedEventPlane {
    fn publish_kv(&self, event: KvEvent) {
        // No subscriber is not an error: nobody is routing on KV yet.
        let _ = self.kv.send(event);
    }

    fn publish_load(&self, report: LoadReport) {
        let _ = self.load.send(report);
    }

    fn subscribe_kv(&self) -> broadcast::Receiver<KvEvent> {
        self.kv.subscribe()
    }

    fn subscribe_load(&self) -> broadcast::Receiver<LoadReport> {
        self.load.subscribe()
    }
}
