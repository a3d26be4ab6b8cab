//! Publishing in the three send modes.

use super::queue::data_cost;
use super::{DropReason, Payload, PubSubState, TopicSubs};
use crate::config::FullQueuePolicy;
use crate::error::PublishError;
use crate::event::Events;
use crate::id::{ConnId, NodeId, PeerRef, Topic};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Who receives a publish.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendMode {
    /// Every connected subscriber of the topic.
    All,
    /// One subscriber, taking turns among those with spare credit and room
    /// (load-aware: a subscriber that is behind is skipped).
    RoundRobin,
    /// One named peer, which must subscribe to the topic.
    To(PeerRef),
}

/// What a successful publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// Peers the message was queued for.
    pub queued: usize,
    /// Peers it was dropped for by [`FullQueuePolicy::DropForFullPeers`] (counted and reported).
    pub dropped: usize,
}

impl PubSubState {
    /// Queues `payload` for every subscriber of `topic`; `wake` collects the
    /// connections that can send now.
    pub(crate) fn publish_all(
        &mut self,
        topic: &str,
        payload: Payload,
        events: &mut Events,
        wake: &mut BTreeSet<ConnId>,
    ) -> Result<super::Published, PublishError> {
        let (topic, subs) = subscribers(&self.index, topic)?;
        let cost = data_cost(topic, &payload);
        let cfg = &self.cfg;
        if let (1, Some(id)) = (subs.peers.len(), subs.peers.first()) {
            // One subscriber, the common case: its queue is looked up once.
            if let Some(p) = self.peers.get_mut(id) {
                match p.push_if_room(topic, payload, cost, cfg) {
                    Ok(now) => {
                        if now {
                            wake.insert(p.conn);
                        }
                        return Ok(super::Published { queued: 1, dropped: 0 });
                    }
                    Err(_) if cfg.full_queue_policy == FullQueuePolicy::Backpressure => {
                        p.want_writable = true;
                        return Err(PublishError::Full(topic.clone()));
                    }
                    Err(_) => {
                        let peer = p.info.clone();
                        self.report_drop(events, Some(peer), 1, DropReason::QueueFull);
                        return Ok(super::Published { queued: 0, dropped: 1 });
                    }
                }
            }
        }
        let fits = |id: &NodeId| self.peers.get(id).is_some_and(|p| p.has_room(topic, cost, cfg));
        let full = subs.peers.iter().filter(|id| !fits(id)).count();
        if full > 0 && cfg.full_queue_policy == FullQueuePolicy::Backpressure {
            // Every subscriber without room reports Writable when that
            // changes, so the caller's wait always ends.
            let topic = topic.clone();
            let ids: Vec<NodeId> = subs.peers.iter().copied().collect();
            for id in ids {
                if let Some(p) = self.peers.get_mut(&id) {
                    if !p.has_room(&topic, cost, &self.cfg) {
                        p.want_writable = true;
                    }
                }
            }
            return Err(PublishError::Full(topic));
        }
        let mut queued = 0;
        let mut dropped_for = Vec::new();
        // The last subscriber takes the payload itself, the others a clone.
        let n = subs.peers.len();
        let mut payload = Some(payload);
        for (i, id) in subs.peers.iter().enumerate() {
            let Some(p) = self.peers.get_mut(id) else { continue };
            // Room was checked above for everyone; only the drop policy
            // needs to know again who is full.
            if full == 0 || p.has_room(topic, cost, cfg) {
                let body =
                    if i + 1 == n { payload.take().unwrap_or_default() } else { payload.clone().unwrap_or_default() };
                if p.push(topic, body) {
                    wake.insert(p.conn);
                }
                queued += 1;
            } else {
                // Only with DropForFullPeers; rare, so the Vec is fine here.
                dropped_for.push(p.info.clone());
            }
        }
        let dropped = dropped_for.len();
        for peer in dropped_for {
            self.report_drop(events, Some(peer), 1, DropReason::QueueFull);
        }
        Ok(super::Published { queued, dropped })
    }

    /// Queues `payload` for one subscriber with spare credit and room, taking turns.
    pub(crate) fn publish_round_robin(
        &mut self,
        topic: &str,
        payload: Payload,
        wake: &mut BTreeSet<ConnId>,
    ) -> Result<super::Published, PublishError> {
        let (topic, subs) = subscribers(&self.index, topic)?;
        let cost = data_cost(topic, &payload);
        let cfg = &self.cfg;
        // Subscribers after the last one chosen, then from the start; only
        // those whose queued messages do not already use up their credit.
        let ok = |id: &NodeId| {
            self.peers.get(id).is_some_and(|p| {
                !p.suspended
                    && p.has_room(topic, cost, cfg)
                    && p.out.get(topic.as_str()).is_some_and(|q| q.spare_credit())
            })
        };
        let pick = match subs.rr {
            Some(last) => subs
                .peers
                .range((Bound::Excluded(last), Bound::Unbounded))
                .chain(subs.peers.range(..=last))
                .copied()
                .find(ok),
            None => subs.peers.iter().copied().find(ok),
        };
        let topic = topic.clone();
        let Some(id) = pick else {
            for id in subs.peers.clone() {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.want_writable = true;
                }
            }
            self.rr_waiting = true;
            return Err(PublishError::Full(topic));
        };
        if let Some(s) = self.index.get_mut(&topic) {
            s.rr = Some(id);
        }
        let p = self.peers.get_mut(&id).expect("picked from the index");
        if p.push(&topic, payload) {
            wake.insert(p.conn);
        }
        Ok(super::Published { queued: 1, dropped: 0 })
    }

    /// Queues `payload` for the peer `id`, which must subscribe to `topic`.
    pub(crate) fn publish_to(
        &mut self,
        topic: &str,
        payload: Payload,
        id: NodeId,
        peer: PeerRef,
        wake: &mut BTreeSet<ConnId>,
    ) -> Result<super::Published, PublishError> {
        let Some(p) = self.peers.get_mut(&id) else {
            return Err(PublishError::UnknownPeer(peer));
        };
        let Some(topic) = p.subs.get(topic).cloned() else {
            return Err(PublishError::NotSubscribed { peer, topic: Topic::from(topic) });
        };
        if !p.has_room(&topic, data_cost(&topic, &payload), &self.cfg) {
            p.want_writable = true;
            return Err(PublishError::Full(topic));
        }
        if p.push(&topic, payload) {
            wake.insert(p.conn);
        }
        Ok(super::Published { queued: 1, dropped: 0 })
    }
}

/// The remote subscribers of `topic`, or `NoSubscribers`.
fn subscribers<'a>(
    index: &'a BTreeMap<Topic, TopicSubs>,
    topic: &str,
) -> Result<(&'a Topic, &'a TopicSubs), PublishError> {
    index
        .get_key_value(topic)
        .filter(|(_, s)| !s.peers.is_empty())
        .ok_or_else(|| PublishError::NoSubscribers(Topic::from(topic)))
}
