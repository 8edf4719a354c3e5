//! `turbine bench`: a load generator for any OpenAI-compatible server. It measures what users feel
//! (time to first token, inter-token latency, end-to-end latency) and what operators pay for
//! (tokens/s, requests/s).

pub mod client;
pub mod load;
pub mod report;
pub mod sse;

pub use client::{Connection, HttpResponse};
pub use load::{LoadConfig, run_closed_loop};
pub use report::Report;
