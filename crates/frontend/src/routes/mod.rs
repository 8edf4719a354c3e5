//! HTTP handlers, one file per route family.

pub mod chat;
pub mod completions;
pub mod generation;
pub mod health;
pub mod models;
