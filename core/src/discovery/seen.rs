//! The set of request keys a node already handled: bounded, with expiry.

use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Peers remembered per key (a node's discovery peers are few; past this
/// a late duplicate copy may still be sent, which is only traffic).
const MAX_FROM: usize = 32;

/// A request's key: its origin and the origin's request id.
pub(crate) type RequestKey = (u128, u64);

/// Keys handled recently, oldest first. At most `max` keys; a key is
/// forgotten after `expiry` or when room is needed (counted).
#[derive(Debug)]
pub(crate) struct Seen {
    max: usize,
    expiry: Duration,
    at: BTreeMap<RequestKey, Timestamp>,
    order: VecDeque<(Timestamp, RequestKey)>,
    /// Peers each remembered key arrived from (at most `MAX_FROM` each):
    /// a copy still queued for one of them is not sent.
    from: BTreeMap<RequestKey, Vec<u128>>,
    /// Keys forgotten before their expiry for want of room.
    pub(crate) evicted: u64,
}

impl Seen {
    pub(crate) fn new(max: usize, expiry: Duration) -> Self {
        Seen { max, expiry, at: BTreeMap::new(), order: VecDeque::new(), from: BTreeMap::new(), evicted: 0 }
    }

    /// `key` arrived from `peer` (a remembered key; called after `insert`).
    pub(crate) fn arrived_from(&mut self, key: RequestKey, peer: u128) {
        if !self.at.contains_key(&key) {
            return;
        }
        let v = self.from.entry(key).or_default();
        if v.len() < MAX_FROM && !v.contains(&peer) {
            v.push(peer);
        }
    }

    /// True if `key` arrived from `peer` (as far as remembered).
    pub(crate) fn came_from(&self, key: RequestKey, peer: u128) -> bool {
        self.from.get(&key).is_some_and(|v| v.contains(&peer))
    }

    /// Records `key` at `now`; false if it was already there (handled).
    pub(crate) fn insert(&mut self, key: RequestKey, now: Timestamp) -> bool {
        self.expire(now);
        if self.at.contains_key(&key) {
            return false;
        }
        while self.at.len() >= self.max {
            let Some((_, old)) = self.order.pop_front() else { break };
            if self.at.remove(&old).is_some() {
                self.from.remove(&old);
                self.evicted += 1;
            }
        }
        self.at.insert(key, now);
        self.order.push_back((now, key));
        true
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some(&(t, key)) = self.order.front() {
            if now < t + self.expiry {
                break;
            }
            self.order.pop_front();
            self.at.remove(&key);
            self.from.remove(&key);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_new_once_until_it_expires_and_the_set_stays_bounded() {
        let t = Timestamp::from_millis;
        let mut s = Seen::new(2, Duration::from_secs(1));
        assert!(s.insert((1, 1), t(0)));
        assert!(!s.insert((1, 1), t(10)));
        assert!(s.insert((1, 2), t(20)));
        assert!(s.insert((1, 3), t(30)), "the oldest makes room");
        assert_eq!((s.len(), s.evicted), (2, 1));
        assert!(s.insert((1, 2), t(1_100)), "expired");
    }
}
