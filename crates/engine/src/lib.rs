//! Turbine's engines: what runs behind a worker's request-plane endpoint. For now the echo engine,
//! which streams the prompt back and is used for tests and for measuring the frontend's overhead.

pub mod echo;
pub mod metrics;

pub use echo::EchoEngine;
pub use metrics::WorkerMetrics;
