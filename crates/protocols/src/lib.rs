//! Wire types shared by every Turbine part: the OpenAI API, the internal engine request and output
//! stream, model cards and instance records. Pure data, no I/O.

pub mod engine;
pub mod instance;
pub mod kv;
pub mod openai;

pub use engine::{
    EngineOutput, FinishReason, PreprocessedRequest, SamplingOptions, StopConditions,
};
pub use instance::{InstanceId, InstanceRecord, ModelCard, WorkerRole};
pub use kv::{KvEvent, KvEventData, KvReplay, LoadReport, StorageTier, StoredBlock};
