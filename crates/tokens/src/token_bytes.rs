//! The per-token byte table behind [`crate::Tokenizer::token_bytes`], built once per tokenizer.
//!
//! Invariants:
//! - `offsets.len() == special.len() + 1` and `offsets` is non-decreasing, so every id below
//!   `special.len()` has a (possibly empty) byte range.
//! - The bytes follow the tokenizer's decoder: ByteLevel tokens map back through GPT-2's
//!   byte-to-unicode table; SentencePiece-style tokens turn `▁` into a space and, when the decoder
//!   has ByteFallback, `<0xNN>` into byte `NN`; added tokens (special or not) are their content; any
//!   other decoder falls back to decoding the single token.

use std::collections::HashMap;

use crate::error::TokensError;

pub(crate) struct TokenBytes {
    pub special: Vec<bool>,
    pub bytes: Vec<u8>,
    pub offsets: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecoderKind {
    ByteLevel,
    SentencePiece { byte_fallback: bool },
    Other,
}

impl TokenBytes {
    pub fn build(inner: &tokenizers::Tokenizer) -> Result<TokenBytes, TokensError> {
        let kind = decoder_kind(inner);
        let added: HashMap<u32, (String, bool)> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (id, (t.content, t.special)))
            .collect();
        let mut by_id: Vec<(u32, String)> = inner
            .get_vocab(true)
            .into_iter()
            .map(|(t, id)| (id, t))
            .collect();
        by_id.sort_unstable_by_key(|&(id, _)| id);
        let len = by_id.last().map_or(0, |&(id, _)| id as usize + 1);

        let inverse = byte_level_inverse();
        let mut special = vec![false; len];
        let mut bytes = Vec::with_capacity(len * 6);
        let mut offsets = Vec::with_capacity(len + 1);
        let mut next_id = 0usize;
        let offset = |bytes: &Vec<u8>| {
            u32::try_from(bytes.len())
                .map_err(|_| TokensError::Tokenizer("vocabulary text exceeds 4 GiB".into()))
        };
        for (id, token) in &by_id {
            let id = *id as usize;
            while next_id <= id {
                offsets.push(offset(&bytes)?);
                next_id += 1;
            }
            // `offsets[id]` is pushed; this token's bytes go after it.
            if let Some((content, is_special)) = added.get(&(id as u32)) {
                special[id] = *is_special;
                bytes.extend_from_slice(content.as_bytes());
                continue;
            }
            match kind {
                DecoderKind::ByteLevel => {
                    let start = bytes.len();
                    let mapped = token.chars().try_for_each(|c| {
                        let b = inverse.get(c as usize).copied().flatten()?;
                        bytes.push(b);
                        Some(())
                    });
                    if mapped.is_none() {
                        // Not spelled in the byte alphabet: the decoder passes it through.
                        bytes.truncate(start);
                        bytes.extend_from_slice(token.as_bytes());
                    }
                }
                DecoderKind::SentencePiece { byte_fallback } => {
                    match byte_fallback.then(|| byte_token(token)).flatten() {
                        Some(b) => bytes.push(b),
                        None => bytes.extend_from_slice(token.replace('▁', " ").as_bytes()),
                    }
                }
                DecoderKind::Other => {
                    let text = inner.decode(&[id as u32], false).unwrap_or_default();
                    bytes.extend_from_slice(text.as_bytes());
                }
            }
        }
        offsets.push(offset(&bytes)?);
        bytes.shrink_to_fit();
        Ok(TokenBytes {
            special,
            bytes,
            offsets,
        })
    }
}

/// What the decoder does to a token, read from its serialized form (the `tokenizer.json` shape).
fn decoder_kind(inner: &tokenizers::Tokenizer) -> DecoderKind {
    let Ok(json) = serde_json::to_value(inner.get_decoder()) else {
        return DecoderKind::Other;
    };
    let mut steps = Vec::new();
    collect_decoders(&json, &mut steps);
    let has = |ty: &str| {
        steps
            .iter()
            .any(|d| d.get("type").and_then(|t| t.as_str()) == Some(ty))
    };
    let replaces_metaspace = steps.iter().any(|d| {
        d.get("type").and_then(|t| t.as_str()) == Some("Replace")
            && d.pointer("/pattern/String").and_then(|p| p.as_str()) == Some("▁")
    });
    if has("ByteLevel") {
        DecoderKind::ByteLevel
    } else if has("Metaspace") || replaces_metaspace {
        DecoderKind::SentencePiece {
            byte_fallback: has("ByteFallback"),
        }
    } else {
        DecoderKind::Other
    }
}

fn collect_decoders<'a>(json: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match json.get("decoders").and_then(|d| d.as_array()) {
        Some(list) => list.iter().for_each(|d| collect_decoders(d, out)),
        None => out.push(json),
    }
}

/// `<0xNN>` → `NN`.
fn byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-to-unicode map, inverted: index by the char's code point, get the byte.
fn byte_level_inverse() -> Vec<Option<u8>> {
    let mut inverse = vec![None; 512];
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(b)
        } else {
            shifted += 1;
            255 + shifted
        };
        inverse[code as usize] = Some(b);
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_inverse_matches_gpt2() {
        let inv = byte_level_inverse();
        assert_eq!(inv['Ġ' as usize], Some(b' '));
        assert_eq!(inv['Ċ' as usize], Some(b'\n'));
        assert_eq!(inv['a' as usize], Some(b'a'));
        assert_eq!(inv[0x100], Some(0));
        assert_eq!(inv.iter().flatten().count(), 256);
    }

    #[test]
    fn byte_tokens() {
        assert_eq!(byte_token("<0x0A>"), Some(10));
        assert_eq!(byte_token("<0xE4>"), Some(0xE4));
        assert_eq!(byte_token("<0x0A"), None);
        assert_eq!(byte_token("<0x0AB>"), None);
    }
}
