//! An intrusive doubly linked list of block ids with O(1) push, pop and removal from the middle.
//! The head is the next block to reuse (least recently released); the tail the most recent.
//!
//! Invariant: a block id is in the list at most once; `contains` is exact.

const NONE: u32 = u32::MAX;

pub struct FreeList {
    prev: Vec<u32>,
    next: Vec<u32>,
    in_list: Vec<bool>,
    head: u32,
    tail: u32,
    len: usize,
}

impl FreeList {
    /// A list holding `0..capacity` in order.
    pub fn full(capacity: usize) -> Self {
        let n = capacity as u32;
        let mut list = Self {
            prev: vec![NONE; capacity],
            next: vec![NONE; capacity],
            in_list: vec![false; capacity],
            head: NONE,
            tail: NONE,
            len: 0,
        };
        for id in 0..n {
            list.push_back(id);
        }
        list
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn contains(&self, id: u32) -> bool {
        self.in_list[id as usize]
    }

    pub fn push_back(&mut self, id: u32) {
        debug_assert!(!self.contains(id));
        self.prev[id as usize] = self.tail;
        self.next[id as usize] = NONE;
        if self.tail == NONE {
            self.head = id;
        } else {
            self.next[self.tail as usize] = id;
        }
        self.tail = id;
        self.in_list[id as usize] = true;
        self.len += 1;
    }

    pub fn push_front(&mut self, id: u32) {
        debug_assert!(!self.contains(id));
        self.next[id as usize] = self.head;
        self.prev[id as usize] = NONE;
        if self.head == NONE {
            self.tail = id;
        } else {
            self.prev[self.head as usize] = id;
        }
        self.head = id;
        self.in_list[id as usize] = true;
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<u32> {
        let id = self.head;
        if id == NONE {
            return None;
        }
        self.remove(id);
        Some(id)
    }

    /// Removes `id` if present.
    pub fn remove(&mut self, id: u32) {
        if !self.contains(id) {
            return;
        }
        let (p, n) = (self.prev[id as usize], self.next[id as usize]);
        if p == NONE {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NONE {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.in_list[id as usize] = false;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_removal() {
        let mut list = FreeList::full(4);
        assert_eq!(list.len(), 4);
        list.remove(1);
        list.remove(1);
        assert_eq!(list.pop_front(), Some(0));
        list.push_back(1);
        list.push_front(0);
        let drained: Vec<u32> = std::iter::from_fn(|| list.pop_front()).collect();
        assert_eq!(drained, vec![0, 2, 3, 1]);
        assert_eq!(list.len(), 0);
    }
}
