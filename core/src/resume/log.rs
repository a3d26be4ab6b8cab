//! The per-peer send log: what was admitted and not yet written (counted
//! only: the messages wait in the pub/sub plane's per-topic queues, where
//! credit decides their order), and what was written and not yet
//! acknowledged, kept in sequence order to be re-sent after a resume.
//!
//! Sequence numbers are given when a message is written for the first time
//! (0, 1, 2, … per session and direction), never on the wire: the receiver
//! counts message frames. Both parts together are bounded by the peer's
//! queue limits, so resumption adds no memory beyond today's bound.

use std::collections::VecDeque;
use std::ops::Range;

/// A request the log cannot honour: the peer claims something it cannot
/// (a protocol error on the wire).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// An ack or a resume point past the last sequence number written.
    #[error("sequence number {got} is past the last one sent ({next} is next)")]
    Ahead {
        /// What the peer said.
        got: u64,
        /// The next sequence number this side would give.
        next: u64,
    },
    /// A resume point below what the peer acknowledged before: those
    /// messages are gone from the log.
    #[error("resume from {got}, but everything below {acked} was acknowledged")]
    Behind {
        /// What the peer said.
        got: u64,
        /// The lowest sequence number still held.
        acked: u64,
    },
}

/// Marks the cost of an entry outside the bound (the top bit; a real cost
/// never reaches it).
const OUTSIDE: usize = 1 << (usize::BITS - 1);

/// A written entry and its cost, the item first: an entry is built on the
/// stack and copied into the log in 16-byte moves, and an item whose bytes
/// start on the entry's first byte is copied as it was stored (a small
/// field first makes each move straddle two stores, which stalls the CPU
/// on every message written).
#[repr(C)]
#[derive(Debug)]
struct Entry<T> {
    item: T,
    /// With [`OUTSIDE`] set: outside the bound.
    cost: usize,
}

// A pub/sub log entry is a payload and its cost: 40 bytes (with the topic
// and relay tag inline it was 144, with a kind beside the payload 56).
const _: () = assert!(std::mem::size_of::<Entry<bytes::Bytes>>() == 40);

/// One peer's send log. `T` is a message as the log keeps it (for pub/sub,
/// its shared payload, never a copy; its topic and kind are marked beside).
///
/// ```
/// use estafeta_core::resume::SendLog;
/// let mut log: SendLog<&str> = SendLog::new(4, 1 << 20);
/// assert!(log.admit(10));
/// assert_eq!(log.pull("a", 10), 0); // written: sequence number 0
/// log.disconnect();
/// assert_eq!(log.resume(0, |_, _| {}), Ok(1)); // one message to send again
/// assert_eq!(log.next_resend(), Some((0, &"a")));
/// assert_eq!(log.ack(1, |_, _| {}), Ok(1));
/// assert!(log.is_empty());
/// ```
#[derive(Debug)]
pub struct SendLog<T> {
    max_frames: usize,
    max_bytes: usize,
    /// Admitted, not written yet.
    unsent_frames: usize,
    unsent_bytes: usize,
    /// Sequence number of `entries[0]`: everything below was acknowledged.
    base: u64,
    /// Written, not acknowledged: each with its cost (with [`OUTSIDE`] set:
    /// outside the bound, see [`SendLog::push_unbounded`]).
    entries: VecDeque<Entry<T>>,
    logged_bytes: usize,
    /// Entries outside the bound, and their bytes.
    outside: usize,
    outside_bytes: usize,
    /// A writer outside the bound stopped at its limit and waits for room.
    outside_waits: bool,
    /// An ack freed room for that writer since it was last told.
    outside_freed: bool,
    /// `entries[cursor..]` are to be written again (after a resume).
    cursor: usize,
}

impl<T> SendLog<T> {
    /// An empty log bounded to `max_frames` messages and `max_bytes` bytes
    /// (unsent and unacknowledged together; one message is always let in).
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        SendLog {
            max_frames,
            max_bytes,
            unsent_frames: 0,
            unsent_bytes: 0,
            base: 0,
            entries: VecDeque::new(),
            logged_bytes: 0,
            outside: 0,
            outside_bytes: 0,
            outside_waits: false,
            outside_freed: false,
            cursor: 0,
        }
    }

    /// Messages held within the bound: unsent plus unacknowledged.
    pub fn frames(&self) -> usize {
        self.unsent_frames + self.entries.len() - self.outside
    }

    /// Bytes held within the bound: unsent plus unacknowledged.
    pub fn bytes(&self) -> usize {
        self.unsent_bytes + self.logged_bytes
    }

    /// Messages admitted and not written yet.
    pub fn unsent(&self) -> usize {
        self.unsent_frames
    }

    /// Entries written and not acknowledged (within the bound or not).
    pub fn unacked(&self) -> usize {
        self.entries.len()
    }

    /// Bytes written and not acknowledged, within the bound.
    pub fn unacked_bytes(&self) -> usize {
        self.logged_bytes
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.unsent_frames + self.entries.len() == 0
    }

    /// Every sequence number below this one was acknowledged.
    pub fn acked(&self) -> u64 {
        self.base
    }

    /// The sequence number the next message written for the first time gets.
    pub fn next_seq(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// True if a message costing `cost` fits the bound.
    pub fn has_room(&self, cost: usize) -> bool {
        self.frames() < self.max_frames && (self.bytes() == 0 || self.bytes() + cost <= self.max_bytes)
    }

    /// True if a message costing `cost` would fit once `frames` frames of
    /// `bytes` bytes in all left the bound.
    pub fn has_room_without(&self, frames: usize, bytes: usize, cost: usize) -> bool {
        let (f, b) = (self.frames().saturating_sub(frames), self.bytes().saturating_sub(bytes));
        f < self.max_frames && (b == 0 || b + cost <= self.max_bytes)
    }

    /// Admits a message costing `cost` if it fits; false (nothing changed) if not.
    pub fn admit(&mut self, cost: usize) -> bool {
        if !self.has_room(cost) {
            return false;
        }
        self.admit_unchecked(cost);
        true
    }

    /// Admits a message whose room the caller checked.
    pub fn admit_unchecked(&mut self, cost: usize) {
        self.unsent_frames += 1;
        self.unsent_bytes += cost;
    }

    /// Admitted messages left without being written (their subscription
    /// went): they leave the bound and get no sequence number.
    pub fn unadmit(&mut self, frames: usize, bytes: usize) {
        self.unsent_frames = self.unsent_frames.saturating_sub(frames);
        self.unsent_bytes = self.unsent_bytes.saturating_sub(bytes);
    }

    /// An admitted message is written for the first time: it gets the next
    /// sequence number (returned) and stays until acknowledged. Messages
    /// to re-send go first ([`SendLog::next_resend`] until `None`).
    pub fn pull(&mut self, item: T, cost: usize) -> u64 {
        debug_assert_eq!(self.cursor, self.entries.len(), "re-sends go first");
        self.unadmit(1, cost);
        let seq = self.next_seq();
        self.entries.push_back(Entry { item, cost });
        self.logged_bytes += cost;
        self.cursor = self.entries.len();
        seq
    }

    /// An entry bounded elsewhere (a stream frame: the caller stops while
    /// [`SendLog::outside_bytes`] is at its own limit) is written for the
    /// first time: it gets the next sequence number (returned) and stays
    /// until acknowledged, outside this log's bound.
    pub fn push_unbounded(&mut self, item: T, cost: usize) -> u64 {
        debug_assert_eq!(self.cursor, self.entries.len(), "re-sends go first");
        let cost = cost.min(OUTSIDE - 1);
        let seq = self.next_seq();
        self.entries.push_back(Entry { item, cost: cost | OUTSIDE });
        self.outside += 1;
        self.outside_bytes += cost;
        self.cursor = self.entries.len();
        seq
    }

    /// Bytes of the entries outside the bound (written, not acknowledged).
    pub fn outside_bytes(&self) -> usize {
        self.outside_bytes
    }

    /// A writer outside the bound stopped at its own limit: the next ack
    /// that frees such bytes should wake it ([`SendLog::take_outside_wait`]).
    pub fn wait_outside(&mut self) {
        self.outside_waits = true;
    }

    /// True while a writer outside the bound waits for an ack to free room.
    pub fn outside_waiting(&self) -> bool {
        self.outside_waits
    }

    /// True (once) if an ack freed room for a writer outside the bound
    /// that waited for it: wake it.
    pub fn take_outside_wait(&mut self) -> bool {
        std::mem::take(&mut self.outside_freed)
    }

    /// Messages to re-send before any new one.
    pub fn pending_resend(&self) -> usize {
        self.entries.len() - self.cursor
    }

    /// The next message to re-send and its sequence number.
    pub fn next_resend(&mut self) -> Option<(u64, &T)> {
        let seq = self.base + self.cursor as u64;
        let item = &self.entries.get(self.cursor)?.item;
        self.cursor += 1;
        Some((seq, item))
    }

    /// The peer took responsibility for every message below `next`:
    /// `done(item, cost)` sees each one leave (cost 0 outside the bound). Returns how many left. An
    /// old ack (below what is acknowledged) changes nothing.
    pub fn ack(&mut self, next: u64, mut done: impl FnMut(T, usize)) -> Result<usize, LogError> {
        if next > self.next_seq() {
            return Err(LogError::Ahead { got: next, next: self.next_seq() });
        }
        let n = next.saturating_sub(self.base) as usize;
        for Entry { item, cost } in self.entries.drain(..n) {
            if cost & OUTSIDE != 0 {
                self.outside -= 1;
                self.outside_bytes -= cost & !OUTSIDE;
                self.outside_freed |= std::mem::take(&mut self.outside_waits);
                done(item, 0);
            } else {
                self.logged_bytes -= cost;
                done(item, cost);
            }
        }
        self.base += n as u64;
        self.cursor = self.cursor.saturating_sub(n);
        Ok(n)
    }

    /// The connection carrying the session is gone: nothing is in flight.
    /// The log keeps everything; nothing is re-sent before [`SendLog::resume`].
    pub fn disconnect(&mut self) {
        self.cursor = self.entries.len();
    }

    /// The session resumes and the peer expects `from` next: what is below
    /// is acknowledged (`done` sees it), the rest is written again from the
    /// start. Returns how many messages will be re-sent.
    pub fn resume(&mut self, from: u64, done: impl FnMut(T, usize)) -> Result<usize, LogError> {
        if from < self.base {
            return Err(LogError::Behind { got: from, acked: self.base });
        }
        self.ack(from, done)?;
        self.cursor = 0;
        Ok(self.entries.len())
    }

    /// The session ended: every unacknowledged message is lost. `lost` sees
    /// each; returns their sequence numbers (empty if none) and how many
    /// unsent messages left the bound with them (those the caller drops).
    pub fn expire(&mut self, mut lost: impl FnMut(T)) -> (Range<u64>, usize) {
        let range = self.base..self.next_seq();
        for Entry { item, .. } in self.entries.drain(..) {
            lost(item);
        }
        self.base = range.end;
        self.logged_bytes = 0;
        self.outside = 0;
        self.outside_bytes = 0;
        self.cursor = 0;
        let unsent = self.unsent_frames;
        self.unsent_frames = 0;
        self.unsent_bytes = 0;
        (range, unsent)
    }

    /// Starts a new session: sequence numbers count from 0 again. The log
    /// must be empty of written messages (expire it first); admitted
    /// messages stay admitted.
    pub fn restart(&mut self) {
        debug_assert!(self.entries.is_empty());
        self.entries.clear();
        self.logged_bytes = 0;
        self.outside = 0;
        self.outside_bytes = 0;
        self.base = 0;
        self.cursor = 0;
    }
}
