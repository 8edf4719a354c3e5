//! `turbine bench`: a load generator for any OpenAI-compatible server. It measures what users feel
//! (time to first token, inter-token latency, end-to-end latency) and what operators pay for
//! (tokens/s, requests/s), replaying [`workload`]s that a simulator can replay too.

pub mod client;
pub mod load;
pub mod report;
mod rng;
pub mod sse;
pub mod workload;

pub use client::{Connection, HttpResponse};
pub use load::{LoadConfig, run_closed_loop};
pub use report::Report;
pub use workload::{Arrival, Workload, WorkloadRequest};
