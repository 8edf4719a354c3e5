//! Conversations whose history grows: turn k's prompt is turn k-1's prompt, then a stand-in for the
//! answer (`output` tokens), then the user's next message. The stand-in is not the server's actual
//! answer (an OpenAI API returns text, not ids), so a server's prefix cache can reuse the previous
//! prompt but not the previous answer — as in the Mooncake conversation trace.

use super::{Arrival, Length, Vocabulary, Workload, WorkloadRequest};
use crate::rng::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct MultiTurn {
    pub conversations: usize,
    pub turns: usize,
    /// Tokens of each user message.
    pub input: Length,
    /// Tokens of each answer.
    pub output: Length,
    /// Between an answer and the next user message.
    pub think_time: Duration,
    pub seed: u64,
}

impl MultiTurn {
    /// Ids run conversation by conversation, so a closed loop prefers continuing a conversation
    /// over starting a new one.
    pub fn build(&self, vocabulary: &Vocabulary) -> Workload {
        let mut rng = Rng::new(self.seed);
        let mut requests: Vec<WorkloadRequest> = Vec::new();
        for _ in 0..self.conversations {
            let mut history: Vec<u32> = Vec::new();
            let mut previous: Option<(usize, u32)> = None;
            for _ in 0..self.turns {
                if let Some((_, answer)) = previous {
                    vocabulary.draw(&mut rng, answer as usize, &mut history);
                }
                let length = self.input.sample(&mut rng).max(1) as usize;
                vocabulary.draw(&mut rng, length, &mut history);
                vocabulary.start(&mut history);
                let id = requests.len();
                let max_tokens = self.output.sample(&mut rng).max(1);
                requests.push(WorkloadRequest {
                    id,
                    arrival: Arrival::Closed,
                    prompt: history.clone(),
                    max_tokens,
                    after: previous.map(|(parent, _)| (parent, self.think_time)),
                });
                previous = Some((id, max_tokens));
            }
        }
        Workload {
            requests,
            description: format!(
                "multi-turn: {} conversations x {} turns, {} tokens per message, {} per answer, \
                 think time {} ms, seed {}",
                self.conversations,
                self.turns,
                self.input,
                self.output,
                self.think_time.as_millis(),
                self.seed
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_grows_and_turns_chain() {
        let vocabulary = Vocabulary::from_ids((0..1000).collect(), None);
        let workload = MultiTurn {
            conversations: 2,
            turns: 3,
            input: Length::Fixed(5),
            output: Length::Fixed(4),
            think_time: Duration::from_millis(10),
            seed: 0,
        }
        .build(&vocabulary);
        let requests = &workload.requests;
        assert_eq!(requests.len(), 6);
        let lengths: Vec<usize> = requests.iter().map(|r| r.prompt.len()).collect();
        assert_eq!(lengths, [5, 14, 23, 5, 14, 23]);
        assert_eq!(requests[0].after, None);
        assert_eq!(requests[2].after, Some((1, Duration::from_millis(10))));
        assert_eq!(requests[3].after, None);
        assert_eq!(requests[1].prompt[..5], requests[0].prompt[..]);
        assert_eq!(requests[2].prompt[..14], requests[1].prompt[..]);
    }
}
