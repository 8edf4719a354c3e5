//! `turbine bench`: a load generator for any OpenAI-compatible server. It measures what users feel
//! (time to first token, inter-token latency, end-to-end latency) and what operators pay for
//! (tokens/s, requests/s, goodput under SLOs), replaying [`workload`]s that a simulator can replay
//! too: a [`Workload`] is [`request::prepare`]d into bodies, [`load::run`] sends them and yields
//! [`RequestRecord`]s, and a [`Report`] summarizes those.

pub mod client;
mod exchange;
pub mod load;
pub mod plot;
mod progress;
pub mod record;
pub mod report;
pub mod request;
mod rng;
pub mod sim;
pub mod sse;
pub mod workload;

pub use client::{Connection, HttpResponse};
pub use load::{LoadConfig, Run, run};
pub use record::{RequestError, RequestRecord};
pub use report::{Report, Slo};
pub use workload::{Arrival, Workload, WorkloadRequest};
