//! Relay de-duplication: per (origin, topic) a high-water mark and a bitmap
//! window of the sequence numbers below it (boringtun's replay window).

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

#[cfg(test)]
mod tests {
    use super::*;

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
