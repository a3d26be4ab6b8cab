//! Deadlines: a small ordered timer set per plane, and the reason the node
//! reports for its next deadline.

use crate::event::TargetId;
use crate::id::ConnId;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Why the node asked to be woken at its next deadline
/// ([`Node::next_timer`](crate::Node::next_timer)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerReason {
    /// `close` stops waiting for queues to flush.
    Close,
    /// A connection's handshake must have completed.
    Handshake(ConnId),
    /// A connection's peer must have been heard from.
    Liveness(ConnId),
    /// A connection may be idle and owe a heartbeat.
    Heartbeat(ConnId),
    /// A dial must have connected (`DialerConfig::dial_timeout`).
    DialTimeout(ConnId),
    /// A connection's close wait is over: its goodbye is out, the peer has
    /// not closed (`SessionConfig::close_timeout`).
    CloseWait(ConnId),
    /// A dial target is redialed.
    Redial(TargetId),
    /// A stream's deadline passes, or a stream heartbeat is due.
    Streams,
    /// A membership deadline: a settle period, a member timeout, a renewal
    /// or a lease end.
    Membership,
    /// The discovery plane re-evaluates pairing or asks for unpaired topics.
    Discovery,
    /// A transfer whose peer is away gives up (`TransferConfig::peer_timeout`).
    Transfer,
    /// An ack is due (`SessionConfig::ack_delay`), or a suspended session's
    /// resume window passes.
    Session,
}

impl TimerReason {
    /// The earlier of two deadlines with their reasons (str0m's `soonest`).
    pub(crate) fn soonest(a: Option<(Timestamp, Self)>, b: Option<(Timestamp, Self)>) -> Option<(Timestamp, Self)> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
            (x, y) => x.or(y),
        }
    }
}

/// Deadlines keyed by `K`, at most one per key, soonest first. Setting a
/// key again moves its deadline; nothing ever scans all keys.
#[derive(Debug)]
pub(crate) struct Timers<K: Ord + Copy> {
    order: BTreeSet<(Timestamp, K)>,
    at: BTreeMap<K, Timestamp>,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Timers { order: BTreeSet::new(), at: BTreeMap::new() }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Arms `key` at `t`, replacing its earlier deadline.
    pub(crate) fn set(&mut self, key: K, t: Timestamp) {
        if let Some(old) = self.at.insert(key, t) {
            if old == t {
                return;
            }
            self.order.remove(&(old, key));
        }
        self.order.insert((t, key));
    }

    /// Disarms `key`.
    pub(crate) fn cancel(&mut self, key: K) {
        if let Some(old) = self.at.remove(&key) {
            self.order.remove(&(old, key));
        }
    }

    /// The soonest deadline.
    pub(crate) fn next(&self) -> Option<(Timestamp, K)> {
        self.order.first().copied()
    }

    /// Removes and returns a key whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<K> {
        let &(t, key) = self.order.first()?;
        if t > now {
            return None;
        }
        self.order.pop_first();
        self.at.remove(&key);
        Some(key)
    }

    /// How many keys are armed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_keep_one_deadline_per_key_soonest_first() {
        let mut t: Timers<u32> = Timers::default();
        let at = Timestamp::from_micros;
        t.set(1, at(50));
        t.set(2, at(20));
        t.set(1, at(10));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some((at(10), 1)));
        assert_eq!(t.pop_due(at(5)), None);
        assert_eq!(t.pop_due(at(30)), Some(1));
        assert_eq!(t.pop_due(at(30)), Some(2));
        assert_eq!(t.pop_due(at(30)), None);
        t.set(3, at(7));
        t.cancel(3);
        assert_eq!(t.next(), None);
    }
}
