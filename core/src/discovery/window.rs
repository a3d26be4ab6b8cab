//! Relay de-duplication: per (origin, topic) a high-water mark and a bitmap
//! window of the sequence numbers below it (boringtun's replay window).

use crate::id::{NodeId, Topic};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// What the window says of a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// First time: deliver. `skipped` numbers left the window unseen (lost).
    New { skipped: u64 },
    /// Already delivered.
    Duplicate,
    /// Below the window: it may have been delivered; dropped.
    TooOld,
}

/// The window of one (origin, topic).
#[derive(Clone, Debug)]
pub(crate) struct Window {
    epoch: u32,
    /// Highest sequence number seen (0: none).
    top: u64,
    /// A ring of bits indexed by `seq % size`: set if `seq` arrived.
    bits: Vec<u64>,
}

impl Window {
    pub(crate) fn new(size: u32, epoch: u32) -> Self {
        Window { epoch, top: 0, bits: vec![0; (size / 64).max(1) as usize] }
    }

    fn size(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn bit(&self, seq: u64) -> bool {
        let i = seq % self.size();
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64, on: bool) {
        let i = seq % self.size();
        let w = &mut self.bits[(i / 64) as usize];
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// Checks and records `seq` of `epoch`. A new epoch (the origin
    /// restarted) starts the window again.
    pub(crate) fn check(&mut self, epoch: u32, seq: u64) -> Verdict {
        if epoch != self.epoch {
            *self = Window::new(self.size() as u32, epoch);
        }
        let size = self.size();
        if seq == 0 {
            return Verdict::TooOld;
        }
        if self.top == 0 || seq > self.top {
            let mut skipped = 0;
            if self.top == 0 {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                // The new window is [lo_new, seq]. Numbers of the old one
                // that leave it unseen were lost; so were numbers jumped
                // over that never enter it. Each loop runs at most `size` times.
                let lo_new = seq.saturating_sub(size - 1).max(1);
                let lo_old = self.top.saturating_sub(size - 1).max(1);
                for s in lo_old..=self.top.min(lo_new.saturating_sub(1)) {
                    if !self.bit(s) {
                        skipped += 1;
                    }
                }
                if lo_new > self.top + 1 {
                    skipped += lo_new - (self.top + 1);
                }
                // Slots of the jumped numbers inside the new window held
                // numbers one window older: clear them.
                for s in (self.top + 1).max(lo_new)..seq {
                    self.set(s, false);
                }
            }
            self.top = seq;
            self.set(seq, true);
            return Verdict::New { skipped };
        }
        if self.top - seq >= size {
            return Verdict::TooOld;
        }
        if self.bit(seq) {
            return Verdict::Duplicate;
        }
        self.set(seq, true);
        Verdict::New { skipped: 0 }
    }
}

/// The windows of every (origin, topic) seen, at most `max` of them (the
/// least recently used goes first). A relay checks one per message, mostly
/// the same as the last: that one is found without a search.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    /// Each window with its key and last use. A slot is reused, never
    /// moved, so the index and the last-used hint stay valid.
    slots: Vec<((NodeId, Topic), Window, Timestamp)>,
    index: BTreeMap<(NodeId, Topic), usize>,
    /// The slot of the last check.
    last: Option<usize>,
}

impl Windows {
    /// Checks and records `seq` of `epoch` from `origin` on `topic` at
    /// `now`; a new (origin, topic) takes a window of `size` bits,
    /// evicting the least recently used beyond `max` (`evicted` is then true).
    pub(crate) fn check(
        &mut self,
        (origin, topic): (NodeId, &Topic),
        (epoch, seq): (u32, u64),
        now: Timestamp,
        (size, max): (u32, usize),
    ) -> (Verdict, bool) {
        let hit = self.last.filter(|&i| {
            let ((o, t), _, _) = &self.slots[i];
            *o == origin && t.same(topic)
        });
        let (slot, evicted) = match hit.or_else(|| self.index.get(&(origin, topic.clone())).copied()) {
            Some(i) => (i, false),
            None => self.insert(origin, topic, epoch, now, (size, max)),
        };
        self.last = Some(slot);
        let (_, w, at) = &mut self.slots[slot];
        *at = now;
        (w.check(epoch, seq), evicted)
    }

    /// A window for a new (origin, topic): a new slot, or the least
    /// recently used one's when `max` are kept (true).
    fn insert(
        &mut self,
        origin: NodeId,
        topic: &Topic,
        epoch: u32,
        now: Timestamp,
        (size, max): (u32, usize),
    ) -> (usize, bool) {
        let key = (origin, topic.clone());
        let fresh = (key.clone(), Window::new(size, epoch), now);
        if self.slots.len() < max.max(1) {
            self.index.insert(key, self.slots.len());
            self.slots.push(fresh);
            return (self.slots.len() - 1, false);
        }
        let oldest = (0..self.slots.len()).min_by_key(|&i| self.slots[i].2).expect("at least one slot");
        self.index.remove(&self.slots[oldest].0);
        self.index.insert(key, oldest);
        self.slots[oldest] = fresh;
        (oldest, true)
    }

    /// Windows kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_keep_the_most_recently_used_and_never_mix_two_keys() {
        let (a, b, c) = (NodeId::from_u128(1), NodeId::from_u128(2), NodeId::from_u128(3));
        let t = Topic::from("t");
        let at = Timestamp::from_millis;
        let mut ws = Windows::default();
        let limits = (64, 2);
        assert_eq!(ws.check((a, &t), (1, 1), at(1), limits), (Verdict::New { skipped: 0 }, false));
        assert_eq!(ws.check((b, &t), (1, 1), at(2), limits), (Verdict::New { skipped: 0 }, false));
        assert_eq!(ws.check((a, &t), (1, 1), at(3), limits), (Verdict::Duplicate, false), "a's window, not b's");
        // A third key evicts the least recently used: b.
        assert_eq!(ws.check((c, &t), (1, 1), at(4), limits), (Verdict::New { skipped: 0 }, true));
        assert_eq!(ws.len(), 2);
        assert_eq!(ws.check((a, &t), (1, 1), at(5), limits), (Verdict::Duplicate, false), "a kept");
        // b's window was forgotten: its number is new again, and a new
        // slot goes to the least recently used (c).
        assert_eq!(ws.check((b, &t), (1, 1), at(6), limits), (Verdict::New { skipped: 0 }, true));
        assert_eq!(ws.check((c, &t), (1, 1), at(7), limits), (Verdict::New { skipped: 0 }, true), "c forgotten");
        // One window only: the slot the last check used is reused for
        // another key, and the hint must not take it for the old one.
        let mut one = Windows::default();
        assert_eq!(one.check((a, &t), (1, 5), at(1), (64, 1)).0, Verdict::New { skipped: 0 });
        assert_eq!(one.check((b, &t), (1, 5), at(2), (64, 1)), (Verdict::New { skipped: 0 }, true));
        assert_eq!(one.check((a, &t), (1, 5), at(3), (64, 1)), (Verdict::New { skipped: 0 }, true));
        assert_eq!(one.check((a, &Topic::from("u")), (1, 5), at(4), (64, 1)), (Verdict::New { skipped: 0 }, true));
        assert_eq!(one.check((a, &Topic::from("u")), (1, 5), at(5), (64, 1)), (Verdict::Duplicate, false));
    }

    #[test]
    fn each_number_is_new_once_inside_the_window() {
        let mut w = Window::new(64, 1);
        assert_eq!(w.check(1, 1), Verdict::New { skipped: 0 });
        assert_eq!(w.check(1, 3), Verdict::New { skipped: 0 });
        assert_eq!(w.check(1, 3), Verdict::Duplicate);
        assert_eq!(w.check(1, 2), Verdict::New { skipped: 0 }, "late but inside");
        assert_eq!(w.check(1, 2), Verdict::Duplicate);
        assert_eq!(w.check(1, 1), Verdict::Duplicate);
    }

    #[test]
    fn numbers_that_slide_out_unseen_count_as_skipped_and_old_ones_are_refused() {
        let mut w = Window::new(64, 1);
        assert_eq!(w.check(1, 1), Verdict::New { skipped: 0 });
        assert_eq!(w.check(1, 3), Verdict::New { skipped: 0 });
        // 2 is missing; jumping to 66 pushes 1..=2 out of [3, 66].
        assert_eq!(w.check(1, 66), Verdict::New { skipped: 1 });
        assert_eq!(w.check(1, 2), Verdict::TooOld);
        assert_eq!(w.check(1, 3), Verdict::Duplicate, "still inside");
        // A long jump: everything between was lost.
        assert_eq!(w.check(1, 1000), Verdict::New { skipped: 62 + (1000 - 64 - 66) });
        assert_eq!(w.check(1, 999), Verdict::New { skipped: 0 });
    }

    #[test]
    fn every_number_counts_once_as_delivered_or_skipped() {
        // Deliver 1..=5000 with every 7th missing, in order: delivered +
        // skipped covers all but the last window.
        let mut w = Window::new(128, 9);
        let (mut new, mut skipped) = (0u64, 0u64);
        for s in 1..=5000u64 {
            if s % 7 == 0 {
                continue;
            }
            match w.check(9, s) {
                Verdict::New { skipped: k } => {
                    new += 1;
                    skipped += k;
                }
                v => panic!("{s}: {v:?}"),
            }
        }
        let missing_out = (1..=5000 - 128).filter(|s| s % 7 == 0).count() as u64;
        assert_eq!((new, skipped), (5000 - 5000 / 7, missing_out));
    }

    #[test]
    fn a_new_epoch_starts_again() {
        let mut w = Window::new(64, 1);
        assert_eq!(w.check(1, 500), Verdict::New { skipped: 0 });
        assert_eq!(w.check(2, 1), Verdict::New { skipped: 0 });
        assert_eq!(w.check(2, 1), Verdict::Duplicate);
    }
}
