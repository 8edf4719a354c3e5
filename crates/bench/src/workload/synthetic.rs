//! Independent requests with input and output lengths drawn from distributions.

use super::{Length, SharedPrefix, Vocabulary, Workload};

#[derive(Debug, Clone)]
pub struct Synthetic {
    pub requests: usize,
    pub input: Length,
    pub output: Length,
    pub seed: u64,
}

impl Synthetic {
    /// A [`SharedPrefix`] workload of one group with an empty prefix.
    pub fn build(&self, vocabulary: &Vocabulary) -> Workload {
        let mut workload = SharedPrefix {
            groups: 1,
            users: self.requests,
            prefix: 0,
            input: self.input,
            output: self.output,
            seed: self.seed,
        }
        .build(vocabulary);
        workload.description = format!(
            "synthetic: {} requests, input {} tokens, output {} tokens, seed {}",
            self.requests, self.input, self.output, self.seed
        );
        workload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_lengths_and_bos_first() {
        let vocabulary = Vocabulary::from_ids((10..20).collect(), Some(1));
        let workload = Synthetic {
            requests: 50,
            input: "3..9".parse().unwrap(),
            output: Length::Fixed(7),
            seed: 5,
        }
        .build(&vocabulary);
        assert_eq!(workload.requests.len(), 50);
        for (i, request) in workload.requests.iter().enumerate() {
            assert_eq!(request.id, i);
            assert!((3..=9).contains(&request.prompt.len()));
            assert_eq!(request.prompt[0], 1);
            assert!(request.prompt[1..].iter().all(|t| (10..20).contains(t)));
            assert_eq!(request.max_tokens, 7);
        }
    }
}
