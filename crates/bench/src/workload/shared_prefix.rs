//! `groups` system prompts, each shared by `users` requests that append their own question: the
//! prefix-caching workload. Requests go round-robin over the groups.

use super::{Arrival, Length, Vocabulary, Workload, WorkloadRequest};
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct SharedPrefix {
    pub groups: usize,
    pub users: usize,
    /// Tokens of each group's shared prefix.
    pub prefix: u32,
    /// Tokens each user appends.
    pub input: Length,
    pub output: Length,
    pub seed: u64,
}

impl SharedPrefix {
    pub fn build(&self, vocabulary: &Vocabulary) -> Workload {
        let mut rng = Rng::new(self.seed);
        let prefixes: Vec<Vec<u32>> = (0..self.groups)
            .map(|_| {
                let mut prefix = Vec::new();
                vocabulary.draw(&mut rng, self.prefix as usize, &mut prefix);
                prefix
            })
            .collect();
        let requests = (0..self.groups * self.users)
            .map(|id| {
                let mut prompt = prefixes[id % self.groups].clone();
                let own = self.input.sample(&mut rng) as usize;
                vocabulary.draw(
                    &mut rng,
                    own.max(usize::from(prompt.is_empty())),
                    &mut prompt,
                );
                vocabulary.start(&mut prompt);
                WorkloadRequest {
                    id,
                    arrival: Arrival::Closed,
                    prompt,
                    max_tokens: self.output.sample(&mut rng).max(1),
                    after: None,
                }
            })
            .collect();
        Workload {
            requests,
            description: format!(
                "shared prefix: {} groups x {} users, prefix {} tokens + input {} tokens, \
                 output {} tokens, seed {}",
                self.groups, self.users, self.prefix, self.input, self.output, self.seed
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_share_exactly_their_prefix() {
        let vocabulary = Vocabulary::from_ids((0..1000).collect(), None);
        let workload = SharedPrefix {
            groups: 3,
            users: 4,
            prefix: 32,
            input: Length::Fixed(8),
            output: Length::Fixed(2),
            seed: 1,
        }
        .build(&vocabulary);
        let requests = &workload.requests;
        assert_eq!(requests.len(), 12);
        for request in requests {
            assert_eq!(request.prompt.len(), 40);
            let same_group = &requests[request.id % 3].prompt;
            assert_eq!(request.prompt[..32], same_group[..32]);
        }
        assert_ne!(requests[0].prompt[..32], requests[1].prompt[..32]);
        assert_ne!(requests[0].prompt[32..], requests[3].prompt[32..]);
    }
}
