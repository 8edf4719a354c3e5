//! Rebuilds, as a HF `tokenizers::Tokenizer`, the tokenizer a GGUF file describes under llama.cpp's
//! `tokenizer.ggml.*` keys.
//!
//! Invariants:
//! - Token ids are the indices of `tokenizer.ggml.tokens`; every id the metadata names (bos, eos,
//!   eot, eom, unknown, padding) is checked to be inside the vocabulary.
//! - `gpt2` (byte-level BPE): merges come from the file; the split regex is chosen from
//!   `tokenizer.ggml.pre` exactly as llama.cpp does (an unknown pre-tokenizer is an error, as there).
//! - `llama` (SentencePiece BPE): merges are derived from the scores the way HF's SentencePiece
//!   converter does (best merged-piece score first), with byte fallback and `▁` for spaces.
//! - Control and unknown tokens (token_type 3 and 2) become special added tokens; user-defined
//!   tokens (4) become non-special added tokens, matched whole in the text and never skipped when
//!   decoding, as llama.cpp and transformers treat them.
//! - bos/eos are added by `encode(.., true)` per `tokenizer.ggml.add_bos_token` /
//!   `add_eos_token`, defaulting as llama.cpp does (bos for SentencePiece and llama3-style BPE).

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{NFC, Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
};

use crate::error::TokensError;
use crate::gguf::GgufFile;
use crate::tokenizer::template_processor;

const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// llama.cpp's split regexes in HF's spelling (GPT-2's is ByteLevel's built-in `use_regex`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a byte-level vocabulary splits text before BPE, by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizer {
    /// GPT-2's regex (ByteLevel with `use_regex`).
    Gpt2,
    /// Each digit alone, then GPT-2's regex (SmolLM, StarCoder).
    DigitsThenGpt2,
    Llama3,
    /// Qwen2's regex, plus the NFC normalizer its `tokenizer.json` has.
    Qwen2,
    /// Qwen3.5's regex (letters include marks); no normalizer, as llama.cpp's reference ids show.
    Qwen35,
    Gpt4o,
}

impl PreTokenizer {
    fn from_name(name: &str) -> Option<PreTokenizer> {
        Some(match name {
            "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => PreTokenizer::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" => {
                PreTokenizer::DigitsThenGpt2
            }
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" => {
                PreTokenizer::Llama3
            }
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" => PreTokenizer::Qwen2,
            "qwen35" => PreTokenizer::Qwen35,
            "gpt-4o" | "llama4" => PreTokenizer::Gpt4o,
            _ => return None,
        })
    }

    fn build(self) -> Result<PreTokenizerWrapper, TokensError> {
        let byte_level =
            |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, false, use_regex));
        let split_then_bytes = |regex: &str| -> Result<PreTokenizerWrapper, TokensError> {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokensError::Tokenizer(format!("split regex: {e}")))?;
            Ok(PreTokenizerSequence::new(vec![split.into(), byte_level(false)]).into())
        };
        Ok(match self {
            PreTokenizer::Gpt2 => byte_level(true),
            PreTokenizer::DigitsThenGpt2 => {
                PreTokenizerSequence::new(vec![Digits::new(true).into(), byte_level(true)]).into()
            }
            PreTokenizer::Llama3 => split_then_bytes(LLAMA3_SPLIT)?,
            PreTokenizer::Qwen2 => split_then_bytes(QWEN2_SPLIT)?,
            PreTokenizer::Qwen35 => split_then_bytes(QWEN35_SPLIT)?,
            PreTokenizer::Gpt4o => split_then_bytes(GPT4O_SPLIT)?,
        })
    }
}

/// The tokenizer and the special ids the file names.
pub(crate) struct GgufTokenizer {
    pub tokenizer: tokenizers::Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// End-of-turn / end-of-message ids (`eot_token_id`, `eom_token_id`).
    pub end_of_generation_ids: Vec<u32>,
}

pub(crate) fn build(gguf: &GgufFile) -> Result<GgufTokenizer, TokensError> {
    let err = |reason: String| TokensError::Gguf {
        path: gguf.path().to_path_buf(),
        reason,
    };
    let model = gguf
        .get_str("tokenizer.ggml.model")
        .ok_or_else(|| err("no tokenizer.ggml.model".into()))?;
    let tokens = gguf
        .get_str_array("tokenizer.ggml.tokens")
        .ok_or_else(|| err("no tokenizer.ggml.tokens string array".into()))?;
    let token_types = match gguf.get_i32_array("tokenizer.ggml.token_type") {
        Some(types) if types.len() != tokens.len() => {
            return Err(err(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        types => types.unwrap_or(&[]),
    };
    let id = |name: &str| -> Result<Option<u32>, TokensError> {
        let key = format!("tokenizer.ggml.{name}");
        match gguf.get_u32(&key) {
            Some(id) if id as usize >= tokens.len() => Err(err(format!(
                "{key} = {id} is outside the vocabulary of {} tokens",
                tokens.len()
            ))),
            id => Ok(id),
        }
    };
    let bos_id = id("bos_token_id")?;
    let eos_id = id("eos_token_id")?;
    let unk_id = id("unknown_token_id")?;
    let end_of_generation_ids = [id("eot_token_id")?, id("eom_token_id")?]
        .into_iter()
        .flatten()
        .collect();

    let (mut tokenizer, default_add_bos) = match model {
        "gpt2" => {
            let pre_name = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
            let pre = PreTokenizer::from_name(pre_name).ok_or_else(|| {
                TokensError::Unsupported(format!("GGUF pre-tokenizer {pre_name:?}"))
            })?;
            let merges = gguf
                .get_str_array("tokenizer.ggml.merges")
                .ok_or_else(|| err("gpt2 tokenizer without tokenizer.ggml.merges".into()))?;
            (
                byte_level_bpe(tokens, merges, pre)?,
                pre == PreTokenizer::Llama3,
            )
        }
        "llama" => {
            let scores = gguf
                .get_f32_array("tokenizer.ggml.scores")
                .filter(|s| s.len() == tokens.len())
                .ok_or_else(|| {
                    err("llama tokenizer needs one tokenizer.ggml.scores entry per token".into())
                })?;
            let add_space_prefix = gguf
                .get_bool("tokenizer.ggml.add_space_prefix")
                .unwrap_or(true);
            let unk = unk_id.map(|id| tokens[id as usize].clone());
            (
                sentencepiece_bpe(tokens, scores, unk, add_space_prefix)?,
                true,
            )
        }
        other => {
            return Err(TokensError::Unsupported(format!(
                "GGUF tokenizer model {other:?} (supported: gpt2, llama)"
            )));
        }
    };

    let added = |wanted: &[i32], special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(token_types)
            .filter(|(_, ty)| wanted.contains(ty))
            .map(|(t, _)| AddedToken::from(t.clone(), special).normalized(false))
            .collect()
    };
    tokenizer.add_special_tokens(&added(&[TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_CONTROL], true));
    tokenizer.add_tokens(&added(&[TOKEN_TYPE_USER_DEFINED], false));

    let add_bos = gguf
        .get_bool("tokenizer.ggml.add_bos_token")
        .unwrap_or(default_add_bos);
    let add_eos = gguf
        .get_bool("tokenizer.ggml.add_eos_token")
        .unwrap_or(false);
    let with_token = |wanted: bool, id: Option<u32>, what: &str| match (wanted, id) {
        (false, _) => Ok(None),
        (true, Some(id)) => Ok(Some((tokens[id as usize].clone(), id))),
        (true, None) => Err(err(format!(
            "tokenizer.ggml.add_{what}_token is set but there is no {what}_token_id"
        ))),
    };
    let bos = with_token(add_bos, bos_id, "bos")?;
    let eos = with_token(add_eos, eos_id, "eos")?;
    tokenizer.with_post_processor(template_processor(bos.as_ref(), eos.as_ref())?);

    Ok(GgufTokenizer {
        tokenizer,
        bos_id,
        eos_id,
        end_of_generation_ids,
    })
}

/// token → id, keeping the first id of a token listed twice.
fn vocab_of(tokens: &[String]) -> Vocab {
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        vocab.entry(token.clone()).or_insert(id as u32);
    }
    vocab
}

fn bpe_error(e: impl std::fmt::Display) -> TokensError {
    TokensError::Tokenizer(format!("building BPE from GGUF metadata: {e}"))
}

fn byte_level_bpe(
    tokens: &[String],
    merges: &[String],
    pre: PreTokenizer,
) -> Result<tokenizers::Tokenizer, TokensError> {
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| TokensError::Tokenizer(format!("GGUF merge {m:?} has no space")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_of(tokens), merges)
        .ignore_merges(pre == PreTokenizer::Llama3)
        .build()
        .map_err(bpe_error)?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    if pre == PreTokenizer::Qwen2 {
        tokenizer.with_normalizer(Some(NFC));
    }
    tokenizer.with_pre_tokenizer(Some(pre.build()?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

fn sentencepiece_bpe(
    tokens: &[String],
    scores: &[f32],
    unk: Option<String>,
    add_space_prefix: bool,
) -> Result<tokenizers::Tokenizer, TokensError> {
    let vocab = vocab_of(tokens);
    let merges = merges_from_scores(tokens, scores, &vocab);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let mut tokenizer = tokenizers::Tokenizer::new(builder.build().map_err(bpe_error)?);

    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| TokensError::Tokenizer(format!("replace {from:?}: {e}")))
    };
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new("▁".into()).into());
    }
    normalizers.push(replace(" ", "▁")?.into());
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));

    let mut decoders: Vec<DecoderWrapper> = vec![
        replace("▁", " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// SentencePiece BPE merges recovered from the vocabulary, as HF's converter does: every split of
/// a token into two vocabulary pieces is a merge, ranked by the merged token's score (best first),
/// then longer left piece, then longer right piece; ties keep token order, then (left id, right id).
fn merges_from_scores(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    struct Merge<'a> {
        left: &'a str,
        right: &'a str,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut merges = Vec::new();
    for (id, (token, &score)) in tokens.iter().zip(scores).enumerate() {
        if vocab.get(token) != Some(&(id as u32)) {
            continue; // a duplicate spelling; the first one stands for it
        }
        let start = merges.len();
        let total_chars = token.chars().count();
        for (left_chars, (split, _)) in token.char_indices().enumerate().skip(1) {
            let (left, right) = token.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                merges.push(Merge {
                    left,
                    right,
                    score,
                    left_chars,
                    right_chars: total_chars - left_chars,
                });
            }
        }
        merges[start..].sort_by_key(|m| (vocab[m.left], vocab[m.right]));
    }
    merges.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    merges
        .into_iter()
        .map(|m| (m.left.to_string(), m.right.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_merged_piece_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].map(String::from).into();
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -0.5];
        let vocab = vocab_of(&tokens);
        let merges = merges_from_scores(&tokens, &scores, &vocab);
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        // abc (-0.5): "ab"+"c" has the longer left piece, so it ranks before "a"+"bc".
        assert_eq!(
            pairs,
            vec![("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]
        );
    }

    #[test]
    fn every_named_pre_tokenizer_builds() {
        for name in [
            "default",
            "gpt2",
            "smollm",
            "llama-bpe",
            "llama3",
            "qwen2",
            "gpt-4o",
        ] {
            let pre = PreTokenizer::from_name(name).expect(name);
            pre.build().expect(name);
        }
        assert_eq!(PreTokenizer::from_name("bloom"), None);
    }
}
