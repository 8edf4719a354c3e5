//! The set of workers holding one block: worker slots in ascending order, inline for the common
//! case of one or two holders, so an indexed block costs one hash-map entry and no allocation.

/// A dense worker number inside one index (see `KvIndexer`), reused after a worker leaves.
pub type Slot = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holders {
    One(Slot),
    Two(Slot, Slot),
    /// Three or more, sorted.
    Many(Box<[Slot]>),
}

impl Holders {
    /// Never empty: an empty set is no entry at all.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        match self {
            Holders::One(_) => 1,
            Holders::Two(..) => 2,
            Holders::Many(s) => s.len(),
        }
    }

    pub fn contains(&self, slot: Slot) -> bool {
        match self {
            Holders::One(a) => *a == slot,
            Holders::Two(a, b) => *a == slot || *b == slot,
            Holders::Many(s) => s.binary_search(&slot).is_ok(),
        }
    }

    /// The slots in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        let (pair, many): ([Option<Slot>; 2], &[Slot]) = match self {
            Holders::One(a) => ([Some(*a), None], &[]),
            Holders::Two(a, b) => ([Some(*a), Some(*b)], &[]),
            Holders::Many(s) => ([None, None], s),
        };
        pair.into_iter().flatten().chain(many.iter().copied())
    }

    /// Adds `slot`; false if it was already there.
    pub fn insert(&mut self, slot: Slot) -> bool {
        match self {
            Holders::One(a) if *a == slot => false,
            Holders::One(a) => {
                let a = *a;
                *self = if a < slot {
                    Holders::Two(a, slot)
                } else {
                    Holders::Two(slot, a)
                };
                true
            }
            Holders::Two(a, b) if *a == slot || *b == slot => false,
            Holders::Two(a, b) => {
                let mut all = vec![*a, *b, slot];
                all.sort_unstable();
                *self = Holders::Many(all.into_boxed_slice());
                true
            }
            Holders::Many(s) => match s.binary_search(&slot) {
                Ok(_) => false,
                Err(at) => {
                    let mut all = Vec::with_capacity(s.len() + 1);
                    all.extend_from_slice(&s[..at]);
                    all.push(slot);
                    all.extend_from_slice(&s[at..]);
                    *s = all.into_boxed_slice();
                    true
                }
            },
        }
    }

    /// Removes `slot`. Returns whether it was there, and whether the set is now empty (`None`
    /// stands for the empty set, which a `Holders` cannot be).
    pub fn remove(self, slot: Slot) -> (bool, Option<Holders>) {
        match self {
            Holders::One(a) if a == slot => (true, None),
            Holders::Two(a, b) if a == slot => (true, Some(Holders::One(b))),
            Holders::Two(a, b) if b == slot => (true, Some(Holders::One(a))),
            Holders::Many(s) => match s.binary_search(&slot) {
                Err(_) => (false, Some(Holders::Many(s))),
                Ok(at) => {
                    let mut rest = s.into_vec();
                    rest.remove(at);
                    (true, Some(Holders::from_sorted(rest)))
                }
            },
            other => (false, Some(other)),
        }
    }

    fn from_sorted(slots: Vec<Slot>) -> Holders {
        match slots.as_slice() {
            [a] => Holders::One(*a),
            [a, b] => Holders::Two(*a, *b),
            _ => Holders::Many(slots.into_boxed_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_remove_keep_the_set_sorted_and_exact() {
        let mut model = std::collections::BTreeSet::new();
        let mut holders: Option<Holders> = None;
        let mut state = 12345u64;
        for _ in 0..5000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let slot = ((state >> 33) % 7) as Slot;
            if state & 1 == 0 {
                let added = model.insert(slot);
                match &mut holders {
                    Some(h) => assert_eq!(h.insert(slot), added),
                    None => holders = Some(Holders::One(slot)),
                }
            } else if let Some(h) = holders.take() {
                let (was, rest) = h.remove(slot);
                assert_eq!(was, model.remove(&slot));
                holders = rest;
            }
            let got: Vec<Slot> = holders.iter().flat_map(|h| h.iter()).collect();
            let want: Vec<Slot> = model.iter().copied().collect();
            assert_eq!(got, want);
            if let Some(h) = &holders {
                assert_eq!(h.len(), model.len());
                for s in 0..7 {
                    assert_eq!(h.contains(s), model.contains(&s));
                }
            }
        }
    }
}
