//! Publishing in the three send modes.

use super::Node;
use crate::error::PublishError;
use crate::event::DropReason;
use crate::id::{ConnId, PeerRef, Topic};
use crate::outbound::data_cost;
use crate::FullQueuePolicy;
use bytes::Bytes;

/// Who receives a publish.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendMode {
    /// Every connected subscriber of the topic.
    All,
    /// One subscriber, taking turns; a subscriber whose queue is full is skipped.
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

impl Node {
    /// Queues `payload` on `topic` for the peers `mode` selects.
    ///
    /// On error nothing was queued for anyone. `Full` means wait for
    /// [`Event::Writable`](crate::Event::Writable) and retry.
    pub fn publish(&mut self, topic: &str, payload: Bytes, mode: SendMode) -> Result<Published, PublishError> {
        if self.closing {
            return Err(PublishError::Closed);
        }
        self.check_topic(topic).map_err(PublishError::BadTopic)?;
        let size = crate::wire::encoded_len_hint(topic.len(), payload.len());
        if size > self.cfg.max_frame_size {
            return Err(PublishError::TooLarge { size, max: self.cfg.max_frame_size });
        }
        match mode {
            SendMode::All => self.publish_all(topic, payload),
            SendMode::RoundRobin => self.publish_round_robin(topic, payload),
            SendMode::To(peer) => self.publish_to(topic, payload, peer),
        }
    }

    fn has_room(&self, conn: ConnId, cost: usize) -> bool {
        room(&self.conns, &self.cfg, conn, cost)
    }

    fn enqueue(&mut self, conn: ConnId, topic: &Topic, payload: &Bytes) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.push_data(topic.clone(), payload.clone());
        }
    }

    fn mark_want_writable(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.want_writable = true;
        }
    }

    // The two fan-out modes below walk the subscriber set in place: no
    // allocation per publish beyond the queue slots.

    fn publish_all(&mut self, topic: &str, payload: Bytes) -> Result<Published, PublishError> {
        let Some((topic, subs)) = self.topics.get_key_value(topic).filter(|(_, s)| !s.is_empty()) else {
            return Err(PublishError::NoSubscribers(Topic::from(topic)));
        };
        let cost = data_cost(topic, &payload);
        let full = subs.iter().filter(|c| !room(&self.conns, &self.cfg, **c, cost)).count();
        if full > 0 && self.cfg.full_queue_policy == FullQueuePolicy::Backpressure {
            // Every subscriber without room (full or closing) reports Writable
            // when that changes, so the caller's wait always ends.
            for c in subs {
                if !room(&self.conns, &self.cfg, *c, cost) {
                    if let Some(conn) = self.conns.get_mut(c) {
                        conn.want_writable = true;
                    }
                }
            }
            return Err(PublishError::Full(topic.clone()));
        }
        let mut queued = 0;
        let mut dropped_for = Vec::new();
        for c in subs {
            let fits = room(&self.conns, &self.cfg, *c, cost);
            let Some(conn) = self.conns.get_mut(c) else { continue };
            if fits {
                conn.out.push_data(topic.clone(), payload.clone());
                queued += 1;
            } else {
                // Only with DropForFullPeers; rare, so the Vec is fine here.
                dropped_for.push(conn.peer.clone());
            }
        }
        let dropped = dropped_for.len();
        for peer in dropped_for {
            self.report_drop(peer, 1, DropReason::QueueFull);
        }
        Ok(Published { queued, dropped })
    }

    fn publish_round_robin(&mut self, topic: &str, payload: Bytes) -> Result<Published, PublishError> {
        let Some((topic, subs)) = self.topics.get_key_value(topic).filter(|(_, s)| !s.is_empty()) else {
            return Err(PublishError::NoSubscribers(Topic::from(topic)));
        };
        let cost = data_cost(topic, &payload);
        let last = self.rr_cursor.get(topic).copied();
        // The subscribers after the last one chosen, then from the start.
        let after = last.map_or(ConnId(0), |l| ConnId(l.0 + 1));
        let pick =
            subs.range(after..).chain(subs.range(..after)).copied().find(|c| room(&self.conns, &self.cfg, *c, cost));
        let topic = topic.clone();
        match pick {
            Some(c) => {
                self.enqueue(c, &topic, &payload);
                self.rr_cursor.insert(topic, c);
                Ok(Published { queued: 1, dropped: 0 })
            }
            None => {
                if let Some(subs) = self.topics.get(&topic) {
                    for c in subs {
                        if let Some(conn) = self.conns.get_mut(c) {
                            conn.want_writable = true;
                        }
                    }
                }
                Err(PublishError::Full(topic))
            }
        }
    }

    fn publish_to(&mut self, topic: &str, payload: Bytes, peer: PeerRef) -> Result<Published, PublishError> {
        let entry = match &peer {
            PeerRef::Id(id) => self.peers.get(id),
            PeerRef::Name(name) => {
                let mut it = self.peers.values().filter(|p| &*p.info.name == name.as_str());
                let first = it.next();
                if it.next().is_some() {
                    return Err(PublishError::AmbiguousPeer(name.clone()));
                }
                first
            }
        };
        let Some(entry) = entry else {
            return Err(PublishError::UnknownPeer(peer));
        };
        let conn = entry.primary;
        let subscribed = self.conns.get(&conn).and_then(|c| c.peer_subs.get(topic).cloned());
        let Some(topic) = subscribed else {
            return Err(PublishError::NotSubscribed { peer, topic: Topic::from(topic) });
        };
        if !self.has_room(conn, data_cost(&topic, &payload)) {
            self.mark_want_writable(conn);
            return Err(PublishError::Full(topic));
        }
        self.enqueue(conn, &topic, &payload);
        Ok(super::Published { queued: 1, dropped: 0 })
    }
}

/// True if `conn` is open for new data and its queue has room for `cost` more bytes.
fn room(
    conns: &std::collections::BTreeMap<ConnId, crate::conn::Conn>,
    cfg: &crate::Config,
    conn: ConnId,
    cost: usize,
) -> bool {
    conns.get(&conn).is_some_and(|c| {
        c.closing.is_none() && c.out.has_room(cost, cfg.max_queued_bytes_per_peer, cfg.max_queued_frames_per_peer)
    })
}
