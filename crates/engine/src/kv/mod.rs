//! The paged KV cache's bookkeeping: which blocks exist, who holds them, which cached prefixes
//! they contain, and the KV events that tell routers about it. No tensors live here; executors
//! own the memory and address it by block id.

mod block_manager;
mod event_log;
mod free_list;

pub use block_manager::{BlockId, BlockManager};
pub use event_log::EventLog;
