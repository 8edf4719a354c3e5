//! Numbers a worker's KV events and keeps the most recent ones, so a subscriber that missed some
//! can ask for a replay; older gaps need a full dump from the block manager instead.

use std::collections::VecDeque;
use turbine_protocols::{InstanceId, KvEvent, KvEventData};

pub struct EventLog {
    worker_id: InstanceId,
    next_id: u64,
    recent: VecDeque<KvEvent>,
    capacity: usize,
    /// Events not yet handed to the event plane.
    pending: Vec<KvEvent>,
}

impl EventLog {
    pub fn new(worker_id: InstanceId, capacity: usize) -> Self {
        Self {
            worker_id,
            next_id: 1,
            recent: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            pending: Vec::new(),
        }
    }

    pub fn record(&mut self, data: KvEventData) {
        let event = KvEvent {
            worker_id: self.worker_id,
            event_id: self.next_id,
            data,
        };
        self.next_id += 1;
        if self.capacity > 0 {
            if self.recent.len() == self.capacity {
                self.recent.pop_front();
            }
            self.recent.push_back(event.clone());
        }
        self.pending.push(event);
    }

    /// The events recorded since the last call, in order.
    pub fn take_pending(&mut self) -> Vec<KvEvent> {
        std::mem::take(&mut self.pending)
    }

    /// The id the last recorded event got (0 before any).
    pub fn last_event_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Every event after `after_id`, if the buffer still holds all of them.
    pub fn replay(&self, after_id: u64) -> Option<Vec<KvEvent>> {
        if after_id >= self.last_event_id() {
            return Some(Vec::new());
        }
        let oldest = self.recent.front()?.event_id;
        if after_id + 1 < oldest {
            return None;
        }
        Some(
            self.recent
                .iter()
                .filter(|e| e.event_id > after_id)
                .cloned()
                .collect(),
        )
    }
}
