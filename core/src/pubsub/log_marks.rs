//! What the pub/sub send log keeps beside its entries, by sequence number:
//! the topic of each run of messages on one topic, the identity of each
//! relayed copy, and the kind of each entry that is not a message. Logging
//! a message then clones no topic (an atomic increment, and a decrement at
//! its ack) and an entry is a payload and its cost, nothing more.

use std::collections::VecDeque;

/// Values marked at sequence numbers of the log, in sequence order (frames
/// of other kinds take numbers between them).
#[derive(Debug)]
pub(crate) struct Marks<T> {
    marks: VecDeque<(u64, T)>,
}

impl<T> Default for Marks<T> {
    fn default() -> Self {
        Marks { marks: VecDeque::new() }
    }
}

impl<T> Marks<T> {
    /// Marks `seq` (above every number marked before) with `value`.
    #[inline]
    pub(crate) fn push(&mut self, seq: u64, value: T) {
        debug_assert!(self.marks.back().is_none_or(|(s, _)| *s < seq), "marked in sequence order");
        self.marks.push_back((seq, value));
    }

    /// The value of the last mark.
    #[inline]
    pub(crate) fn last(&self) -> Option<&T> {
        self.marks.back().map(|(_, v)| v)
    }

    /// The value of the last mark at or below `seq` (the run `seq` is in).
    pub(crate) fn covering(&self, seq: u64) -> Option<&T> {
        let i = self.marks.partition_point(|(s, _)| *s <= seq);
        i.checked_sub(1).map(|i| &self.marks[i].1)
    }

    /// The value marked at exactly `seq`.
    pub(crate) fn at(&self, seq: u64) -> Option<&T> {
        let i = self.marks.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        Some(&self.marks[i].1)
    }

    /// Everything below `base` was acknowledged: marks below it go.
    /// Returns how many went.
    pub(crate) fn trim(&mut self, base: u64) -> usize {
        let n = self.marks.partition_point(|(s, _)| *s < base);
        self.marks.drain(..n);
        n
    }

    /// Everything below `base` was acknowledged: runs that end below it
    /// go (the run `base` is in stays).
    pub(crate) fn trim_runs(&mut self, base: u64) {
        while self.marks.get(1).is_some_and(|(s, _)| *s <= base) {
            self.marks.pop_front();
        }
    }

    /// The session ended (its log expired): nothing is held.
    pub(crate) fn clear(&mut self) {
        self.marks.clear();
    }

    /// Marks held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.marks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Topic;

    #[test]
    fn a_run_covers_its_messages_until_the_next_run_is_acknowledged() {
        let mut runs = Marks::default();
        for (seq, t) in [(0, "a"), (4, "b"), (6, "a")] {
            runs.push(seq, Topic::from(t));
        }
        // 3 is a frame of another kind (a stream frame): not marked.
        let topic = |runs: &Marks<Topic>, seq| runs.covering(seq).map(|t| t.as_str().to_owned());
        let all: Vec<_> = [0, 2, 3, 4, 5, 6, 9].iter().map(|&s| topic(&runs, s).unwrap()).collect();
        assert_eq!(all, ["a", "a", "a", "b", "b", "a", "a"]);
        runs.trim_runs(4);
        assert_eq!(runs.len(), 2, "the run of 0..3 is acknowledged");
        assert_eq!(topic(&runs, 3), None, "below every run held");
        runs.trim_runs(5);
        assert_eq!(runs.len(), 2, "message 5 is still in the run of b");
        runs.trim_runs(7);
        assert_eq!((runs.len(), topic(&runs, 7).as_deref()), (1, Some("a")));
        runs.clear();
        assert_eq!(topic(&runs, 7), None);
    }

    #[test]
    fn an_exact_mark_is_found_only_at_its_number_and_goes_when_acknowledged() {
        let mut tags = Marks::default();
        tags.push(2, 'x');
        tags.push(5, 'y');
        assert_eq!([1, 2, 3, 5, 6].map(|s| tags.at(s).copied()), [None, Some('x'), None, Some('y'), None]);
        assert_eq!(tags.trim(5), 1, "the mark at 2 went");
        assert_eq!((tags.len(), tags.at(5)), (1, Some(&'y')));
        assert_eq!(tags.trim(5), 0, "nothing more below 5");
        assert_eq!(tags.trim(6), 1);
        assert_eq!(tags.len(), 0);
    }
}
