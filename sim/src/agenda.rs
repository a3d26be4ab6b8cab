//! The event queue: ordered by virtual time, then by insertion order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Entry<E> {
    at: u64,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the earliest entry is on top.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-queue of events keyed by `(time, sequence)`: ties run in the order
/// they were scheduled, so the run is deterministic.
pub(crate) struct Agenda<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Agenda<E> {
    pub(crate) fn new() -> Self {
        Agenda { heap: BinaryHeap::new(), seq: 0 }
    }

    /// Schedules `ev` at virtual time `at`.
    pub(crate) fn push(&mut self, at: u64, ev: E) {
        self.seq += 1;
        self.heap.push(Entry { at, seq: self.seq, ev });
    }

    /// The time of the next event.
    pub(crate) fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes the next event.
    pub(crate) fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|e| (e.at, e.ev))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_then_insertion_order() {
        let mut a = Agenda::new();
        a.push(5, "c");
        a.push(1, "a");
        a.push(5, "d");
        a.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| a.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }
}
