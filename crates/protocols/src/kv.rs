//! What workers tell routers about their KV caches and their load, over the event plane.
//!
//! KV events carry a per-worker `event_id` that increases by one per event, so a subscriber that
//! sees a gap knows it missed some and asks the worker for a replay or a full dump.

use crate::InstanceId;
use serde::{Deserialize, Serialize};

/// A block's identity: its sequence hash (covers the whole prefix) and its local hash (its own
/// tokens only). See DESIGN.md, "Block hashing".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredBlock {
    pub seq_hash: u64,
    pub local_hash: u64,
}

/// Where a block lives; the engine's own cache is `Device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageTier {
    Device,
    Host,
    Disk,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KvEventData {
    /// Blocks now cached, in prefix order; the first one's parent is `parent` (none for a prompt's
    /// first block), each later one's parent is the block before it.
    Stored {
        parent: Option<u64>,
        blocks: Vec<StoredBlock>,
        tier: StorageTier,
    },
    /// Blocks no longer cached (by sequence hash).
    Removed {
        seq_hashes: Vec<u64>,
        tier: StorageTier,
    },
    /// Everything the worker had cached is gone.
    Cleared,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEvent {
    pub worker_id: InstanceId,
    /// Starts at 1 and increases by one per event of this worker.
    pub event_id: u64,
    pub data: KvEventData,
}

/// A worker's load, published when it changes and periodically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    pub worker_id: Option<InstanceId>,
    /// KV blocks held by running requests.
    pub active_blocks: u64,
    /// All KV blocks of the worker.
    pub total_blocks: u64,
    pub waiting_requests: u64,
    pub running_requests: u64,
    /// Prompt tokens still to be computed for waiting and running requests.
    pub queued_prefill_tokens: u64,
    /// The id of the last KV event the worker published (0 before any): lets a subscriber
    /// notice lost events even when the worker has gone quiet.
    #[serde(default)]
    pub kv_event_id: u64,
}

/// A worker's answer to "what happened to your cache after event `after`?", how a subscriber
/// that missed events (or just arrived) catches up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KvReplay {
    /// The events after `after`, in order (none if nothing happened since).
    Events { events: Vec<KvEvent> },
    /// The events are gone from the worker's replay buffer: here is its whole cache instead, as
    /// `Stored` data parent-first, as of event `event_id`.
    Snapshot {
        event_id: u64,
        stored: Vec<KvEventData>,
    },
}
