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
                match p.push_if_room(topic, payload, cfg) {
                    Ok(now) => {
                        if now {
                            wake.insert(p.conn);
                        }
                        return Ok(super::Published { queued: 1, dropped: 0 });
                    }
                    Err(_) if cfg.full_queue_policy == FullQueuePolicy::Backpressure => {
                        p.refused(wake);
                        return Err(PublishError::Full(topic.clone()));
                    }
                    Err(payload) => {
                        let (id, topic) = (*id, topic.clone());
                        if self.overwrite_push(id, &topic, payload, cost, wake).is_ok() {
                            return Ok(super::Published { queued: 1, dropped: 0 });
                        }
                        let peer = self.peers.get(&id).map(|p| p.info.clone());
                        self.report_drop(events, peer, 1, DropReason::QueueFull);
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
                        p.refused(wake);
                    }
                }
            }
            return Err(PublishError::Full(topic));
        }
        let mut queued = 0;
        let mut dropped_for = Vec::new();
        // Only with a drop policy: rare, so the Vec is fine here.
        let mut overwrite = Vec::new();
        // The last subscriber takes the payload itself, the others a clone.
        let n = subs.peers.len();
        let mut payload = Some(payload);
        for (i, id) in subs.peers.iter().enumerate() {
            let Some(p) = self.peers.get_mut(id) else { continue };
            let body =
                if i + 1 == n { payload.take().unwrap_or_default() } else { payload.clone().unwrap_or_default() };
            // Room was checked above for everyone; only the drop policies
            // need to know again who is full.
            if full == 0 || p.has_room(topic, cost, cfg) {
                if p.push(topic, body) {
                    wake.insert(p.conn);
                }
                queued += 1;
            } else if cfg.full_queue_policy == FullQueuePolicy::DropOldest {
                overwrite.push((*id, body));
            } else {
                dropped_for.push(p.info.clone());
            }
        }
        if !overwrite.is_empty() {
            let topic = topic.clone();
            for (id, body) in overwrite {
                if self.overwrite_push(id, &topic, body, cost, wake).is_ok() {
                    queued += 1;
                } else if let Some(p) = self.peers.get(&id) {
                    dropped_for.push(p.info.clone());
                }
            }
        }
        let dropped = dropped_for.len();
        for peer in dropped_for {
            self.report_drop(events, Some(peer), 1, DropReason::QueueFull);
        }
        Ok(super::Published { queued, dropped })
    }

    /// [`PubSubState::publish_all`] of each payload of `payloads` in turn
    /// until one is refused (see [`crate::PubSub::publish_batch`]); frames
    /// over `max_frame` are refused with `TooLarge`.
    pub(crate) fn publish_all_batch(
        &mut self,
        topic: &str,
        payloads: &mut [Payload],
        max_frame: usize,
        events: &mut Events,
        wake: &mut BTreeSet<ConnId>,
    ) -> (usize, Result<(), PublishError>) {
        let size = |p: &Payload| crate::wire::encoded_len_hint(topic.len(), p.len());
        let too_large =
            |p: &Payload| (size(p) > max_frame).then(|| PublishError::TooLarge { size: size(p), max: max_frame });
        let mut n = 0;
        // One subscriber that refuses when full, the common case: its queue
        // is looked up once, and each payload moves into it.
        if self.cfg.full_queue_policy == FullQueuePolicy::Backpressure {
            let (t, subs) = match subscribers(&self.index, topic) {
                Ok(x) => x,
                Err(e) => return (0, Err(e)),
            };
            if let (1, Some(p)) = (subs.peers.len(), subs.peers.first().and_then(|id| self.peers.get_mut(id))) {
                // Up to the first payload too large for a frame.
                let fit = payloads.iter().position(|p| size(p) > max_frame).unwrap_or(payloads.len());
                let (queued, now) = p.push_batch_if_room(t, &mut payloads[..fit], &self.cfg);
                if now {
                    wake.insert(p.conn);
                }
                if queued < fit {
                    p.refused(wake);
                    return (queued, Err(PublishError::Full(t.clone())));
                }
                return match payloads.get(fit).and_then(too_large) {
                    Some(e) => (fit, Err(e)),
                    None => (fit, Ok(())),
                };
            }
        }
        while n < payloads.len() {
            if let Some(e) = too_large(&payloads[n]) {
                return (n, Err(e));
            }
            if let Err(e) = self.publish_all(topic, payloads[n].clone(), events, wake) {
                return (n, Err(e));
            }
            payloads[n] = Payload::new();
            n += 1;
        }
        (n, Ok(()))
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
                    p.refused(wake);
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
        let cost = data_cost(&topic, &payload);
        if !p.has_room(&topic, cost, &self.cfg) {
            if self.cfg.full_queue_policy == FullQueuePolicy::DropOldest {
                // Overwriting what is queued for it, or Full as without.
                if self.overwrite_push(id, &topic, payload, cost, wake).is_ok() {
                    return Ok(super::Published { queued: 1, dropped: 0 });
                }
            }
            if let Some(p) = self.peers.get_mut(&id) {
                p.refused(wake);
            }
            return Err(PublishError::Full(topic));
        }
        if p.push(&topic, payload) {
            wake.insert(p.conn);
        }
        Ok(super::Published { queued: 1, dropped: 0 })
    }

    /// [`FullQueuePolicy::DropOldest`]: queues `payload` for `id` after
    /// overwriting the oldest messages queued for it on `topic` (see
    /// [`super::PeerState::overwrite_for`]); `Err` if that makes no room.
    fn overwrite_push(
        &mut self,
        id: NodeId,
        topic: &Topic,
        payload: Payload,
        cost: usize,
        wake: &mut BTreeSet<ConnId>,
    ) -> Result<(), Payload> {
        if self.cfg.full_queue_policy != FullQueuePolicy::DropOldest {
            return Err(payload);
        }
        let Some(p) = self.peers.get_mut(&id) else { return Err(payload) };
        let Some(released) = p.overwrite_for(topic, cost, &self.cfg) else { return Err(payload) };
        p.push(topic, payload);
        if !p.suspended {
            // The marker leaves even before credit comes.
            wake.insert(p.conn);
        }
        for (up, len) in released {
            self.relay_release(up, topic, 1, len);
        }
        Ok(())
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
