//! The OpenAI-compatible HTTP frontend: parses requests, renders chat templates and tokenizes off
//! the async threads, streams each request to a worker chosen among the model's live instances,
//! and turns token ids back into text (incremental detokenization, stop strings, usage).
//!
//! Follow a request from [`server::router`] to `routes::chat` / `routes::completions`, then
//! `routes::generation::serve`, `preprocess`, and `generate::Choice`.

pub mod admission;
pub mod auth;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod generate;
pub mod kv_events;
pub mod metrics;
pub mod preprocess;
pub mod registry;
pub mod response;
pub mod routes;
pub mod server;

pub use config::FrontendConfig;
pub use server::{AppState, router, serve};
