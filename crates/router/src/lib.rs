//! The KV-aware router: sends each request to the worker that already holds most of its prompt's
//! KV blocks, balanced against load.
//!
//! - [`indexer`]: which worker holds which block (a prefix index over sequence hashes);
//! - [`load`]: blocks and prefill tokens in flight per worker, corrected by load reports;
//! - [`policy`]: the KV cost and the other policies (round-robin, random, least-loaded,
//!   power-of-two);
//! - [`approx`]: approximate mode for workers that publish no KV events;
//! - [`queue`]: the bounded waiting room when every worker is busy;
//! - [`router`]: [`KvRouter`], which ties them together for one model.

pub mod approx;
pub mod indexer;
pub mod load;
pub mod metrics;
pub mod policy;
pub mod queue;
pub mod router;

pub use indexer::{KvIndexer, OverlapScores};
pub use load::Load;
pub use metrics::{RouterHandles, RouterMetrics};
pub use policy::{CostWeights, RoutingPolicy};
pub use queue::QueuePolicy;
pub use router::{CatchUpError, Decision, Ingest, KvRouter, RouteError, RouteGuard, RouterConfig};
