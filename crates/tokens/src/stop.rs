//! Stop strings over streamed text.
//!
//! Invariants:
//! - Text returned by `push` is final: it contains no stop string, and no stop string can start
//!   inside it and end in text not yet seen.
//! - The held-back text is always shorter than the longest stop string: it is the longest suffix
//!   of what was seen that is a proper prefix of some stop string.
//! - On a match, output ends right before the earliest-starting stop string; the stop string and
//!   everything after it (in this push and all later ones) are dropped.
//! - With no stop strings, `push` passes text straight through and `flush` returns nothing.

/// What `push` produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopMatch {
    /// Text that is safe to emit now.
    pub text: String,
    /// A stop string was reached; the stream should end.
    pub stopped: bool,
}

/// Finds stop strings in text that arrives in pieces.
#[derive(Debug, Clone)]
pub struct StopStringMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopStringMatcher {
    /// Empty stop strings are ignored.
    pub fn new(stops: Vec<String>) -> StopStringMatcher {
        StopStringMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has been reached.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn push(&mut self, text: &str) -> StopMatch {
        if self.stopped {
            return StopMatch {
                text: String::new(),
                stopped: true,
            };
        }
        if self.stops.is_empty() {
            return StopMatch {
                text: text.to_owned(),
                stopped: false,
            };
        }
        self.held.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = earliest {
            self.held.truncate(at);
            self.stopped = true;
            return StopMatch {
                text: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep_from = self.partial_match_start();
        let tail = self.held.split_off(keep_from);
        StopMatch {
            text: std::mem::replace(&mut self.held, tail),
            stopped: false,
        }
    }

    /// Ends the stream without a stop: returns the held-back text.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Start of the longest suffix of `held` that is a proper prefix of some stop string
    /// (`held.len()` if none).
    fn partial_match_start(&self) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let window = self.held.len().saturating_sub(longest.saturating_sub(1));
        self.held
            .char_indices()
            .map(|(i, _)| i)
            .filter(|&i| i >= window)
            .find(|&i| {
                let suffix = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(suffix))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopStringMatcher {
        StopStringMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    fn emitted(m: &StopMatch) -> (&str, bool) {
        (m.text.as_str(), m.stopped)
    }

    #[test]
    fn no_stops_passes_through() {
        let mut m = matcher(&["", ""]);
        assert_eq!(emitted(&m.push("hello ")), ("hello ", false));
        assert_eq!(emitted(&m.push("world")), ("world", false));
        assert_eq!(m.flush(), "");
    }

    #[test]
    fn stop_inside_one_push() {
        let mut m = matcher(&["STOP"]);
        assert_eq!(emitted(&m.push("hello STOP world")), ("hello ", true));
        assert_eq!(emitted(&m.push("more")), ("", true));
        assert_eq!(m.flush(), "");
    }

    #[test]
    fn stop_split_over_three_pushes() {
        let mut m = matcher(&["</answer>"]);
        assert_eq!(emitted(&m.push("42 </an")), ("42 ", false));
        assert_eq!(emitted(&m.push("swe")), ("", false));
        assert_eq!(emitted(&m.push("r> trailing")), ("", true));
        assert!(m.is_stopped());
    }

    #[test]
    fn partial_prefix_that_does_not_match_is_emitted() {
        let mut m = matcher(&["\n\nUser:"]);
        assert_eq!(emitted(&m.push("line\n")), ("line", false));
        assert_eq!(emitted(&m.push("\nUs")), ("", false));
        assert_eq!(emitted(&m.push("ually")), ("\n\nUsually", false));
        assert_eq!(emitted(&m.push(" fine\n")), (" fine", false));
        assert_eq!(m.flush(), "\n");
    }

    #[test]
    fn overlapping_candidates_pick_the_earliest_start() {
        // "abcd" is still possible after "abc", but "bc" has already matched.
        let mut m = matcher(&["abcd", "bc"]);
        assert_eq!(emitted(&m.push("xa")), ("x", false));
        assert_eq!(emitted(&m.push("bc")), ("a", true));

        // A partial match of one stop string that turns into a full match of another.
        let mut m = matcher(&["aab", "ac"]);
        assert_eq!(emitted(&m.push("aa")), ("", false));
        assert_eq!(emitted(&m.push("c")), ("a", true));
    }

    #[test]
    fn self_overlapping_stop_string() {
        let mut m = matcher(&["abab"]);
        assert_eq!(emitted(&m.push("ab")), ("", false));
        assert_eq!(emitted(&m.push("aab")), ("aba", false));
        assert_eq!(emitted(&m.push("ab!")), ("", true));
    }

    #[test]
    fn multibyte_stop_strings() {
        let mut m = matcher(&["。终"]);
        assert_eq!(emitted(&m.push("你好。")), ("你好", false));
        assert_eq!(emitted(&m.push("终了")), ("", true));
    }

    #[test]
    fn flush_returns_a_held_prefix() {
        let mut m = matcher(&["<|end|>"]);
        assert_eq!(emitted(&m.push("done <|en")), ("done ", false));
        assert_eq!(m.flush(), "<|en");
    }
}
