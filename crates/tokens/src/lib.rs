//! Preprocessing shared by the frontend, the engine and the router: tokenizers (HF `tokenizer.json`
//! and GGUF metadata), chat templates, incremental detokenization, stop strings, and block hashing.

pub mod block_hash;
pub mod chat_template;
pub mod detokenizer;
pub mod error;
pub mod gguf;
mod gguf_tokenizer;
pub mod gguf_writer;
pub mod model;
pub mod stop;
mod token_bytes;
pub mod tokenizer;

pub use block_hash::{BLOCK_HASH_SEED, BlockHash, compute_block_hashes, hash_block};
pub use chat_template::{ChatTemplate, ChatTemplateInput};
pub use detokenizer::IncrementalDetokenizer;
pub use error::TokensError;
pub use gguf::{GgufArray, GgufFile, GgufValue, TensorInfo};
pub use gguf_writer::GgufWriter;
pub use model::{ModelTokenizer, cache_dir};
pub use stop::{StopMatch, StopStringMatcher};
pub use tokenizer::Tokenizer;
