//! [`Tokenizer`]: a HF `tokenizers::Tokenizer` plus what serving needs around it — special
//! tokens, the ids that end generation, and a per-token byte table for streaming detokenization.
//!
//! Invariants:
//! - Encoding never truncates or pads (both are switched off whatever the source file says).
//! - `token_bytes(id)` is computed once at construction; concatenating the bytes of a sequence of
//!   non-special tokens gives exactly the text HF's decoder produces for them, except that a
//!   SentencePiece-style decoder's stripping of the very first leading space is not applied (in a
//!   stream, that space belongs to the text). Special and added tokens contribute their content.
//! - `eos_token_ids()` holds no duplicates; when an eos token is set, its id comes first.

use std::collections::HashSet;
use std::path::Path;

use tokenizers::processors::PostProcessorWrapper;

use crate::error::TokensError;
use crate::gguf::GgufFile;
use crate::gguf_tokenizer;

/// Special tokens that end a turn or a document in common model families. A special token spelled
/// like one of these is treated as an end of generation, as llama.cpp does.
const END_OF_GENERATION_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<end_of_utterance>",
    "<|return|>",
    "<|call|>",
    "<EOT>",
    "<｜end▁of▁sentence｜>",
];

/// A tokenizer ready for serving. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
    eos_ids: Vec<u32>,
    special: Vec<bool>,
    /// `token_bytes(id) = bytes[offsets[id]..offsets[id + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl Tokenizer {
    /// Loads a HF `tokenizer.json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Tokenizer, TokensError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokensError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Tokenizer::from_json_bytes(&bytes).map_err(|e| match e {
            TokensError::Tokenizer(msg) => {
                TokensError::Tokenizer(format!("{}: {msg}", path.display()))
            }
            other => other,
        })
    }

    /// Parses the contents of a HF `tokenizer.json`.
    pub fn from_json_bytes(json: &[u8]) -> Result<Tokenizer, TokensError> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(tokenizer_error)?;
        Tokenizer::new(inner, None, None)
    }

    /// Builds the tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokensError> {
        let parts = gguf_tokenizer::build(gguf)?;
        let mut tokenizer = Tokenizer::new(parts.tokenizer, parts.bos_id, parts.eos_id)?;
        for id in parts.end_of_generation_ids {
            tokenizer.add_eos_token_id(id);
        }
        Ok(tokenizer)
    }

    fn new(
        mut inner: tokenizers::Tokenizer,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
    ) -> Result<Tokenizer, TokensError> {
        inner
            .with_truncation(None)
            .map_err(tokenizer_error)?
            .with_padding(None);
        let table = crate::token_bytes::TokenBytes::build(&inner)?;
        let mut tokenizer = Tokenizer {
            bos: None,
            eos: None,
            eos_ids: Vec::new(),
            special: table.special,
            bytes: table.bytes,
            offsets: table.offsets,
            inner,
        };
        if let Some(id) = bos_id {
            tokenizer.bos = Some((tokenizer.known_token(id)?, id));
        }
        if let Some(id) = eos_id {
            tokenizer.eos = Some((tokenizer.known_token(id)?, id));
            tokenizer.add_eos_token_id(id);
        }
        let end_ids: Vec<u32> = END_OF_GENERATION_TOKENS
            .iter()
            .filter_map(|t| tokenizer.inner.token_to_id(t))
            .filter(|&id| tokenizer.is_special(id))
            .collect();
        for id in end_ids {
            tokenizer.add_eos_token_id(id);
        }
        Ok(tokenizer)
    }

    fn known_token(&self, id: u32) -> Result<String, TokensError> {
        self.inner.id_to_token(id).ok_or_else(|| {
            TokensError::Tokenizer(format!("special token id {id} is not in the vocabulary"))
        })
    }

    fn id_of(&self, token: &str) -> Result<u32, TokensError> {
        self.inner.token_to_id(token).ok_or_else(|| {
            TokensError::Tokenizer(format!("token {token:?} is not in the vocabulary"))
        })
    }

    /// Sets the beginning-of-sequence token (it must be in the vocabulary).
    pub fn set_bos_token(&mut self, token: &str) -> Result<(), TokensError> {
        self.bos = Some((token.to_string(), self.id_of(token)?));
        Ok(())
    }

    /// Sets the end-of-sequence token (it must be in the vocabulary); it becomes the first of
    /// [`Tokenizer::eos_token_ids`].
    pub fn set_eos_token(&mut self, token: &str) -> Result<(), TokensError> {
        let id = self.id_of(token)?;
        self.eos = Some((token.to_string(), id));
        self.eos_ids.retain(|&other| other != id);
        self.eos_ids.insert(0, id);
        Ok(())
    }

    /// Adds an id that ends generation (no-op if already present).
    pub fn add_eos_token_id(&mut self, id: u32) {
        if !self.eos_ids.contains(&id) {
            self.eos_ids.push(id);
        }
    }

    /// Makes `encode(.., add_special_tokens = true)` add the bos token in front and/or the eos
    /// token at the end (and nothing else), replacing the tokenizer's own post-processor.
    pub fn set_added_special_tokens(
        &mut self,
        add_bos: bool,
        add_eos: bool,
    ) -> Result<(), TokensError> {
        let bos = if add_bos {
            Some(self.bos.clone().ok_or_else(|| {
                TokensError::Tokenizer("asked to add a bos token, but none is set".into())
            })?)
        } else {
            None
        };
        let eos = if add_eos {
            Some(self.eos.clone().ok_or_else(|| {
                TokensError::Tokenizer("asked to add an eos token, but none is set".into())
            })?)
        } else {
            None
        };
        let processor = template_processor(bos.as_ref(), eos.as_ref())?;
        self.inner.with_post_processor(processor);
        Ok(())
    }

    /// Whether `encode(.., add_special_tokens = true)` puts the bos token first.
    pub fn adds_bos_token(&self) -> bool {
        let ids = self.encode("", true).unwrap_or_default();
        self.bos_token_id()
            .is_some_and(|bos| ids.first() == Some(&bos))
    }

    /// Whether `encode(.., add_special_tokens = true)` puts the eos token last.
    pub fn adds_eos_token(&self) -> bool {
        let ids = self.encode("", true).unwrap_or_default();
        self.eos_token_id()
            .is_some_and(|eos| ids.last() == Some(&eos))
    }

    /// Token ids of `text`. With `add_special_tokens`, the tokenizer's post-processor runs (e.g.
    /// adds bos). Special tokens spelled out in `text` are always recognised.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokensError> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(tokenizer_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids` as HF's decoder produces it.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokensError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(tokenizer_error)
    }

    /// Number of token ids, added tokens included. Cheap: read off the precomputed byte table
    /// (`tokenizers`' own `get_vocab_size(true)` rebuilds the whole vocabulary map on every call).
    pub fn vocab_size(&self) -> usize {
        self.special.len()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token's string as the vocabulary spells it (e.g. `Ġthe`, `▁the`, `<|im_end|>`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|(t, _)| t.as_str())
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|&(_, id)| id)
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_ref().map(|(t, _)| t.as_str())
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos.as_ref().map(|&(_, id)| id)
    }

    /// Every id that ends generation: eos, end-of-turn tokens, and any added by the model's files.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` is a special token (skipped by `skip_special_tokens`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// The exact bytes `id` contributes to decoded text (empty for an unknown id).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.bytes[start as usize..end as usize],
            _ => &[],
        }
    }

    /// The wrapped HF tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

fn tokenizer_error(e: impl std::fmt::Display) -> TokensError {
    TokensError::Tokenizer(e.to_string())
}

/// A `TemplateProcessing` that puts `bos` before and `eos` after each sequence; `None` if neither.
pub(crate) fn template_processor(
    bos: Option<&(String, u32)>,
    eos: Option<&(String, u32)>,
) -> Result<Option<PostProcessorWrapper>, TokensError> {
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let special =
        |(t, _): &(String, u32)| serde_json::json!({"SpecialToken": {"id": t, "type_id": 0}});
    let sequence = |s: &str| serde_json::json!({"Sequence": {"id": s, "type_id": 0}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    single.extend(bos.map(special));
    single.push(sequence("A"));
    single.extend(eos.map(special));
    pair.extend(single.iter().cloned());
    pair.extend(bos.map(special));
    pair.push(sequence("B"));
    pair.extend(eos.map(special));
    let mut special_tokens = serde_json::Map::new();
    let mut seen = HashSet::new();
    for (token, id) in bos.into_iter().chain(eos) {
        if seen.insert(token) {
            special_tokens.insert(
                token.clone(),
                serde_json::json!({"id": token, "ids": [id], "tokens": [token]}),
            );
        }
    }
    let json = serde_json::json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": special_tokens,
    });
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| TokensError::Tokenizer(format!("building the bos/eos post-processor: {e}")))
}
