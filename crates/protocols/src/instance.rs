//! What a worker announces through discovery: who it is, where to reach it, and the model it serves.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Unique per worker process for the life of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerRole {
    /// Prefill and decode on one worker.
    Aggregated,
    Prefill,
    Decode,
}

/// The model a worker serves, as the frontend needs it to preprocess requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The name clients put in `model`.
    pub name: String,
    /// Where the tokenizer and chat template come from: a GGUF file or an HF model directory.
    pub source: String,
    /// Longest prompt plus output the model accepts, in tokens.
    pub context_length: u32,
    /// Tokens per KV block; the router hashes prompts with it.
    pub block_size: u32,
}

/// One worker as discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: InstanceId,
    pub role: WorkerRole,
    /// How the request plane reaches it, e.g. `local` in one process or `tcp://10.0.0.5:9100`.
    pub endpoint: String,
    pub model: ModelCard,
}
