//! Streaming detokenization: token ids in, text out, one token at a time.
//!
//! Invariants:
//! - Output is only ever whole UTF-8 characters: a character whose bytes are split across tokens
//!   (byte-fallback `<0xNN>` tokens, byte-level pieces) is held back until its last byte arrives.
//! - After each `push`, at most 3 bytes are pending (the start of one incomplete character); bytes
//!   that can never form a character are emitted as U+FFFD, like a lossy decode.
//! - The concatenation of all `push` results and `finish` equals a lossy UTF-8 decode of the
//!   concatenated `token_bytes` of the (non-skipped) ids.
//! - Work per token is proportional to its byte length; nothing re-decodes earlier tokens.

use std::sync::Arc;

use crate::tokenizer::Tokenizer;

/// Turns a stream of token ids into a stream of text deltas.
#[derive(Debug, Clone)]
pub struct IncrementalDetokenizer {
    tokenizer: Arc<Tokenizer>,
    skip_special_tokens: bool,
    pending: Vec<u8>,
}

impl IncrementalDetokenizer {
    pub fn new(tokenizer: Arc<Tokenizer>, skip_special_tokens: bool) -> IncrementalDetokenizer {
        IncrementalDetokenizer {
            tokenizer,
            skip_special_tokens,
            pending: Vec::with_capacity(8),
        }
    }

    /// Adds one token; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let mut out = String::new();
        self.append(id, &mut out);
        out
    }

    /// Adds several tokens; returns the text they complete.
    pub fn push_many(&mut self, ids: &[u32]) -> String {
        let mut out = String::new();
        for &id in ids {
            self.append(id, &mut out);
        }
        out
    }

    /// Ends the stream: returns what is still pending, invalid bytes replaced by U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    fn append(&mut self, id: u32, out: &mut String) {
        if self.skip_special_tokens && self.tokenizer.is_special(id) {
            return;
        }
        let bytes = self.tokenizer.token_bytes(id);
        if self.pending.is_empty()
            && let Ok(text) = std::str::from_utf8(bytes)
        {
            out.push_str(text);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let consumed = emit_complete(&self.pending, out);
        self.pending.drain(..consumed);
    }
}

/// Appends the longest prefix of `buf` that is complete text (invalid bytes as U+FFFD) to `out`;
/// returns how many bytes it consumed. What is left is the start of one incomplete character.
fn emit_complete(buf: &[u8], out: &mut String) -> usize {
    let mut start = 0;
    while start < buf.len() {
        match std::str::from_utf8(&buf[start..]) {
            Ok(text) => {
                out.push_str(text);
                return buf.len();
            }
            Err(e) => {
                let valid_end = start + e.valid_up_to();
                if let Ok(text) = std::str::from_utf8(&buf[start..valid_end]) {
                    out.push_str(text);
                }
                match e.error_len() {
                    Some(invalid) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        start = valid_end + invalid;
                    }
                    None => return valid_end,
                }
            }
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-fallback SentencePiece vocabulary: `▁hello`, `▁world` and the 256 byte tokens.
    fn byte_fallback_tokenizer() -> Arc<Tokenizer> {
        let mut vocab = serde_json::Map::new();
        vocab.insert("<unk>".into(), 0.into());
        vocab.insert("<s>".into(), 1.into());
        vocab.insert("▁hello".into(), 2.into());
        vocab.insert("▁world".into(), 3.into());
        for b in 0..=255u32 {
            vocab.insert(format!("<0x{b:02X}>"), (4 + b).into());
        }
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [{"id": 1, "content": "<s>", "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true}],
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocab, "merges": []},
        });
        Arc::new(Tokenizer::from_json_bytes(json.to_string().as_bytes()).expect("tokenizer"))
    }

    fn byte_ids(text: &str) -> Vec<u32> {
        text.bytes().map(|b| 4 + u32::from(b)).collect()
    }

    #[test]
    fn emoji_split_across_byte_tokens_is_held_back() {
        let mut d = IncrementalDetokenizer::new(byte_fallback_tokenizer(), false);
        let ids = byte_ids("😀");
        assert_eq!(ids.len(), 4);
        for &id in &ids[..3] {
            assert_eq!(d.push(id), "");
        }
        assert_eq!(d.push(ids[3]), "😀");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn cjk_between_words() {
        let mut d = IncrementalDetokenizer::new(byte_fallback_tokenizer(), false);
        let mut out = d.push(2);
        let cjk = byte_ids("你好");
        let mut deltas = Vec::new();
        for &id in &cjk {
            deltas.push(d.push(id));
        }
        assert_eq!(deltas, ["", "", "你", "", "", "好"]);
        out.extend(deltas);
        out.push_str(&d.push(3));
        assert_eq!(out, " hello你好 world");
    }

    #[test]
    fn push_many_matches_push() {
        let tok = byte_fallback_tokenizer();
        let mut ids = vec![2];
        ids.extend(byte_ids("é😀"));
        ids.push(3);
        let mut one = IncrementalDetokenizer::new(tok.clone(), false);
        let joined: String = ids.iter().map(|&id| one.push(id)).collect();
        let mut many = IncrementalDetokenizer::new(tok, false);
        assert_eq!(many.push_many(&ids), joined);
        assert_eq!(joined, " helloé😀 world");
    }

    #[test]
    fn broken_sequences_become_replacement_characters() {
        let mut d = IncrementalDetokenizer::new(byte_fallback_tokenizer(), false);
        // A lead byte of a 3-byte character followed by ASCII: the character can never complete.
        assert_eq!(d.push(4 + 0xE4), "");
        assert_eq!(d.push(4 + u32::from(b'a')), "\u{FFFD}a");
        // A lone continuation byte is invalid on its own.
        assert_eq!(d.push(4 + 0x80), "\u{FFFD}");
        // An unfinished character at the end is flushed lossily.
        assert_eq!(d.push(4 + 0xF0), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn special_tokens_are_skipped_on_request() {
        let tok = byte_fallback_tokenizer();
        let mut keep = IncrementalDetokenizer::new(tok.clone(), false);
        assert_eq!(keep.push_many(&[1, 2]), "<s> hello");
        let mut skip = IncrementalDetokenizer::new(tok, true);
        // A skipped token in the middle of a split character does not break it.
        let e_acute = byte_ids("é");
        assert_eq!(
            skip.push_many(&[1, 2, e_acute[0], 1, e_acute[1]]),
            " helloé"
        );
    }
}
