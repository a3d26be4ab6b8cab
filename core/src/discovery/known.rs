//! Peers learnt of from their requests, per topic, for referrals: bounded
//! in topics and in peers per topic, with expiry.

use crate::id::{NodeId, PeerAddr, Topic};
use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Known {
    max_topics: usize,
    per_topic: usize,
    expiry: Duration,
    /// Per topic, most recent last.
    by_topic: BTreeMap<Topic, VecDeque<(NodeId, PeerAddr, Timestamp)>>,
}

impl Known {
    pub(crate) fn new(max_topics: usize, per_topic: usize, expiry: Duration) -> Self {
        Known { max_topics, per_topic, expiry, by_topic: BTreeMap::new() }
    }

    /// `id` listening at `addr` asked for `topic` at `now`.
    pub(crate) fn record(&mut self, topic: &Topic, id: NodeId, addr: &PeerAddr, now: Timestamp) {
        if self.per_topic == 0 || (!self.by_topic.contains_key(topic) && self.by_topic.len() >= self.max_topics) {
            return;
        }
        let q = self.by_topic.entry(topic.clone()).or_default();
        q.retain(|(i, _, _)| *i != id);
        if q.len() >= self.per_topic {
            q.pop_front();
        }
        q.push_back((id, addr.clone(), now));
    }

    /// Forgets `id` (it is gone, or the dial to it failed).
    pub(crate) fn forget(&mut self, id: NodeId) {
        self.by_topic.retain(|_, q| {
            q.retain(|(i, _, _)| *i != id);
            !q.is_empty()
        });
    }

    /// A dial to `id` failed: it is tried after every other peer known
    /// for the same topics (and still expires when its record does).
    pub(crate) fn demote(&mut self, id: NodeId) {
        for q in self.by_topic.values_mut() {
            if let Some(i) = q.iter().position(|(p, _, _)| *p == id) {
                let e = q.remove(i).expect("found");
                q.push_front(e);
            }
        }
    }

    /// Peers recorded for `topic`, most recent first, not expired.
    pub(crate) fn peers(&mut self, topic: &str, now: Timestamp) -> Vec<(NodeId, PeerAddr)> {
        let expiry = self.expiry;
        let Some(q) = self.by_topic.get_mut(topic) else { return Vec::new() };
        q.retain(|(_, _, at)| now < *at + expiry);
        q.iter().rev().map(|(i, a, _)| (*i, a.clone())).collect()
    }
}
