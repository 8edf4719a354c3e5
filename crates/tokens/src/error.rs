use std::path::PathBuf;

/// Every failure of this crate. Messages name the file, key or token involved.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid GGUF file {path}: {reason}")]
    Gguf { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("invalid model directory {path}: {reason}")]
    ModelFiles { path: PathBuf, reason: String },
}
