//! Turbine's engine: what runs behind a worker's request-plane endpoint.
//!
//! Follow a request from [`worker::Worker`] (the `Generate` endpoint and the engine thread) to
//! [`core::EngineCore::step`], which asks the [`scheduler::Scheduler`] what to run (it owns the
//! [`kv::BlockManager`]), runs it on an [`executor::Executor`], and samples with
//! [`sampler::SequenceSampler`]. The echo engine is a separate, minimal `Generate` for tests and
//! frontend overhead measurements.

pub mod config;
pub mod core;
pub mod echo;
pub mod executor;
pub mod kv;
pub mod metrics;
pub mod rng;
pub mod sampler;
pub mod scheduler;
pub mod worker;

pub use config::{EngineConfig, SchedulingPolicy};
pub use echo::EchoEngine;
pub use metrics::WorkerMetrics;
pub use worker::Worker;
