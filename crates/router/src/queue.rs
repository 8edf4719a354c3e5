//! The router's waiting room: when every worker is busy, requests wait here (bounded) in FCFS or
//! shortest-prefill-first order, and one is let through each time capacity may have freed up.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueuePolicy {
    /// First come, first served.
    #[default]
    Fcfs,
    /// The request with the fewest prompt tokens to compute goes first (best mean TTFT; a long
    /// prompt waits while shorter ones keep arriving).
    ShortestPrefillFirst,
}

impl FromStr for QueuePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fcfs" => Ok(Self::Fcfs),
            "shortest-prefill-first" | "spf" => Ok(Self::ShortestPrefillFirst),
            other => Err(format!(
                "unknown queue policy `{other}` (fcfs, shortest-prefill-first)"
            )),
        }
    }
}

impl fmt::Display for QueuePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fcfs => "fcfs",
            Self::ShortestPrefillFirst => "shortest-prefill-first",
        })
    }
}

/// The queue is full.
#[derive(Debug)]
pub struct QueueFull;

pub struct WaitQueue {
    policy: QueuePolicy,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Keyed by (priority, arrival): the first entry goes first.
    waiting: BTreeMap<(u64, u64), oneshot::Sender<()>>,
}

impl WaitQueue {
    pub fn new(policy: QueuePolicy, capacity: usize) -> Self {
        Self {
            policy,
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Joins the queue; the receiver fires when it is this request's turn. A dropped receiver
    /// (the client left) gives its turn to the next.
    pub fn join(&self, prefill_tokens: u64) -> Result<oneshot::Receiver<()>, QueueFull> {
        let mut state = self.state.lock();
        if state.waiting.len() >= self.capacity {
            state.waiting.retain(|_, tx| !tx.is_closed());
            if state.waiting.len() >= self.capacity {
                return Err(QueueFull);
            }
        }
        let key = match self.policy {
            QueuePolicy::Fcfs => 0,
            QueuePolicy::ShortestPrefillFirst => prefill_tokens,
        };
        let arrival = state.next;
        state.next += 1;
        let (tx, rx) = oneshot::channel();
        state.waiting.insert((key, arrival), tx);
        Ok(rx)
    }

    /// Lets the first live waiter through; false if nobody was waiting.
    pub fn release_one(&self) -> bool {
        let mut state = self.state.lock();
        while let Some((_, tx)) = state.waiting.pop_first() {
            if tx.send(()).is_ok() {
                return true;
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.state.lock().waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_capacity_and_departed_waiters() {
        let queue = WaitQueue::new(QueuePolicy::ShortestPrefillFirst, 3);
        let mut long = queue.join(900).unwrap();
        let short = queue.join(10).unwrap();
        let mut middle = queue.join(100).unwrap();
        assert!(queue.join(1).is_err());
        drop(short);
        // The departed waiter's place is reclaimed when the queue is full.
        let mut tiny = queue.join(1).unwrap();
        assert!(queue.release_one());
        assert!(tiny.try_recv().is_ok());
        assert!(queue.release_one());
        assert!(middle.try_recv().is_ok());
        assert!(long.try_recv().is_err());
        assert!(queue.release_one());
        assert!(long.try_recv().is_ok());
        assert!(!queue.release_one());

        let fcfs = WaitQueue::new(QueuePolicy::Fcfs, 8);
        let mut first = fcfs.join(900).unwrap();
        let mut second = fcfs.join(1).unwrap();
        fcfs.release_one();
        assert!(first.try_recv().is_ok() && second.try_recv().is_err());
    }
}
