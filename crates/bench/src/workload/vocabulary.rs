//! The token ids prompts are drawn from.

use super::WorkloadError;
use crate::rng::Rng;
use turbine_tokens::Tokenizer;

/// Fewest single-token words that make varied enough text.
const MIN_WORDS: usize = 256;

#[derive(Debug, Clone)]
pub struct Vocabulary {
    ids: Vec<u32>,
    bos: Option<u32>,
}

impl Vocabulary {
    /// Any ids (a simulator needs no tokenizer); `bos`, if given, starts every prompt.
    pub fn from_ids(ids: Vec<u32>, bos: Option<u32>) -> Self {
        assert!(!ids.is_empty(), "a vocabulary needs at least one id");
        Self { ids, bos }
    }

    /// The tokenizer's single-token words: ids whose bytes are a space and ASCII letters and that
    /// encode back to themselves alone. With a pre-tokenizer that splits before spaces (GPT-2,
    /// Llama 3, Qwen), text made of such words encodes to exactly the ids it was decoded from; the
    /// text prompt format still checks every prompt. Where the tokenizer has too few such words
    /// and `need_text` is false, every non-special id is used instead. Prompts start with bos when
    /// the tokenizer adds it to text.
    pub fn for_tokenizer(tokenizer: &Tokenizer, need_text: bool) -> Result<Self, WorkloadError> {
        let non_special =
            (0..tokenizer.vocab_size() as u32).filter(|&id| !tokenizer.is_special(id));
        let mut words = Vec::new();
        for id in non_special.clone() {
            let bytes = tokenizer.token_bytes(id);
            let is_word = bytes.len() >= 2
                && bytes[0] == b' '
                && bytes[1..].iter().all(u8::is_ascii_alphabetic);
            if is_word && tokenizer.encode(&String::from_utf8_lossy(bytes), false)? == [id] {
                words.push(id);
            }
        }
        let bos = tokenizer
            .adds_bos_token()
            .then(|| tokenizer.bos_token_id())
            .flatten();
        if words.len() >= MIN_WORDS {
            Ok(Self::from_ids(words, bos))
        } else if need_text {
            Err(WorkloadError::FewWords(words.len()))
        } else {
            Ok(Self::from_ids(non_special.collect(), bos))
        }
    }

    /// The id every prompt starts with, if any.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Appends `n` ids drawn uniformly.
    pub(crate) fn draw(&self, rng: &mut Rng, n: usize, out: &mut Vec<u32>) {
        out.extend((0..n).map(|_| self.ids[rng.below(self.ids.len() as u64) as usize]));
    }

    /// Puts bos first, keeping the length.
    pub(crate) fn start(&self, prompt: &mut [u32]) {
        if let (Some(bos), Some(first)) = (self.bos, prompt.first_mut()) {
            *first = bos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turbine_tokens::{ModelTokenizer, cache_dir};

    #[test]
    fn words_round_trip_through_the_default_tokenizer() {
        let path = cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let model = ModelTokenizer::load(&path)
            .unwrap_or_else(|e| panic!("{e} (fetch it with scripts/fixtures.sh model)"));
        let tokenizer = &model.tokenizer;
        let vocabulary = Vocabulary::for_tokenizer(tokenizer, true).unwrap();
        assert!(
            vocabulary.ids.len() > 5000,
            "{} words",
            vocabulary.ids.len()
        );
        let mut rng = Rng::new(0);
        let mut ids = Vec::new();
        vocabulary.draw(&mut rng, 2000, &mut ids);
        let text = tokenizer.decode(&ids, false).unwrap();
        assert_eq!(tokenizer.encode(&text, false).unwrap(), ids);
    }
}
