//! The sending side: one queue per subscription of each peer, with the
//! credit the peer granted, and the data source the scheduler pulls from:
//! round-robin across topics with credit, each turn at most one quantum.

use super::{Payload, PeerState, PubSubEvent, PubSubState};
use crate::discovery::RelayTag;
use crate::event::{Event, Events};
use crate::id::{ConnId, NodeId, Topic};
use crate::wire::encoded_len_hint;
use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;

/// Bytes a queued message counts against the queue limits.
pub(crate) fn data_cost(topic: &str, payload: &Payload) -> usize {
    encoded_len_hint(topic.len(), payload.len())
}

/// Messages for one peer on one topic, and the credit it granted.
#[derive(Debug, Default)]
pub(crate) struct SendQ {
    /// Each message, and whether it carries a relay identity (then it is
    /// the front of `tags`): local messages pay no more than a flag, and a
    /// relayed copy no allocation of its own.
    msgs: VecDeque<(Payload, bool)>,
    /// The relay identities of the tagged messages in `msgs`, in order.
    tags: VecDeque<RelayTag>,
    bytes: usize,
    /// Messages the peer still accepts.
    credit_msgs: u64,
    /// Payload bytes it still accepts (a message may overshoot by its size).
    credit_bytes: i64,
    /// Granted in all this session (messages, bytes): absolute grants count
    /// only their increase over these.
    granted: (u64, u64),
    /// Messages overwritten here (`FullQueuePolicy::DropOldest`) whose
    /// marker has not left yet: it leaves before the next message.
    overwritten: u64,
}

impl SendQ {
    /// Empties the queue (the credit stays); returns (messages, bytes) removed.
    pub(crate) fn clear(&mut self) -> (usize, usize) {
        let n = (self.msgs.len(), self.bytes);
        self.msgs.clear();
        self.tags.clear();
        self.bytes = 0;
        n
    }

    /// The upstream peers (and payload sizes) of the forwarded copies queued.
    pub(crate) fn relay_upstreams(&self) -> Vec<(NodeId, u64)> {
        let tagged = self.msgs.iter().filter(|(_, t)| *t).map(|(p, _)| p.len() as u64);
        tagged.zip(&self.tags).filter_map(|(len, t)| Some((t.upstream?, len))).collect()
    }

    /// Messages overwritten here whose marker has not left yet.
    pub(crate) fn overwritten_count(&self) -> u64 {
        self.overwritten
    }

    /// Takes the count of overwritten messages not reported yet.
    pub(crate) fn take_overwritten(&mut self) -> u64 {
        std::mem::take(&mut self.overwritten)
    }

    /// True if the head of the queue may be sent now.
    fn data_ready(&self) -> bool {
        !self.msgs.is_empty() && self.credit_msgs > 0 && self.credit_bytes > 0
    }

    /// True if something may be written now: a marker (it spends no
    /// credit) or the head of the queue.
    fn sendable(&self) -> bool {
        self.overwritten > 0 || self.data_ready()
    }

    /// True if one more message costing `cost` fits the subscription's
    /// limits (a message over the byte limit fits an empty queue).
    fn fits(&self, cost: usize, cfg: &crate::config::PubSubConfig) -> bool {
        self.msgs.len() < cfg.max_queued_frames_per_subscription
            && (self.bytes == 0 || self.bytes + cost <= cfg.max_queued_bytes_per_subscription)
    }

    /// True if one more message would still be within the credit: round-robin
    /// picks only such subscribers.
    pub(crate) fn spare_credit(&self) -> bool {
        self.credit_msgs > self.msgs.len() as u64 && self.credit_bytes > 0
    }
}

/// Messages among `entries` entries of the log of which `others` carried a
/// kind mark (markers, stream frames). Every entry past the acknowledged
/// point has its mark until it leaves, so `others` never exceeds `entries`.
fn messages_among(entries: usize, others: usize) -> u64 {
    debug_assert!(others <= entries, "{others} kind marks among {entries} entries");
    entries.saturating_sub(others) as u64
}

impl PeerState {
    /// A publish to this peer was refused for a full queue: it reports
    /// Writable when room frees. If acknowledged room would free it, the
    /// connection is woken so that its next pull asks the peer for an ack.
    pub(super) fn refused(&mut self, wake: &mut BTreeSet<ConnId>) {
        self.want_writable = true;
        if self.may_ask_for_ack() {
            wake.insert(self.conn);
        }
    }

    /// True if an ack from the peer would free something in this node's
    /// log (written, not just waiting to be re-sent) and none was asked for
    /// since the last one came.
    pub(super) fn may_ask_for_ack(&self) -> bool {
        self.resumable && !self.ack_asked && self.log.unacked() > self.log.pending_resend()
    }

    /// True if a message costing `cost` fits the peer's and the subscription's limits.
    pub(crate) fn has_room(&self, topic: &str, cost: usize, cfg: &crate::config::PubSubConfig) -> bool {
        let peer_ok = !self.closing && self.log.has_room(cost);
        let sub_ok =
            self.out.get(topic).is_none_or(|q| q.fits(cost, cfg)) && cfg.max_queued_frames_per_subscription > 0;
        peer_ok && sub_ok
    }

    /// Messages overwritten in the queues whose marker has not left yet
    /// (lost with the session if it ends first).
    pub(crate) fn overwritten(&self) -> u64 {
        self.out.values().map(SendQ::overwritten_count).sum()
    }

    /// [`FullQueuePolicy::DropOldest`](crate::FullQueuePolicy::DropOldest):
    /// makes room for a message costing `cost` on `topic` by overwriting the
    /// oldest messages queued on it, if the peer can be told and emptying
    /// that queue would be enough. Returns the upstream peers and payload
    /// sizes of overwritten relayed copies (their hold is released), or
    /// `None` (nothing changed) if no room can be made this way.
    pub(crate) fn overwrite_for(
        &mut self,
        topic: &Topic,
        cost: usize,
        cfg: &crate::config::PubSubConfig,
    ) -> Option<Vec<(NodeId, u64)>> {
        if !self.overwrite || self.closing {
            return None;
        }
        let q = self.out.get(topic.as_str()).filter(|q| !q.msgs.is_empty())?;
        let sub_ok = cfg.max_queued_frames_per_subscription > 0;
        if !sub_ok || !self.log.has_room_without(q.msgs.len(), q.bytes, cost) {
            return None;
        }
        let mut released = Vec::new();
        while !self.has_room(topic, cost, cfg) {
            let q = self.out.get_mut(topic.as_str()).expect("checked above");
            let Some((payload, tagged)) = q.msgs.pop_front() else { break };
            let tag = if tagged { q.tags.pop_front() } else { None };
            let c = data_cost(topic, &payload);
            q.bytes -= c;
            q.overwritten += 1;
            self.log.unadmit(1, c);
            if let Some(up) = tag.and_then(|t| t.upstream) {
                released.push((up, payload.len() as u64));
            }
        }
        Some(released)
    }

    /// Queues `payload` on `topic` (room was checked). Returns true if it can
    /// leave now (credit is there).
    pub(crate) fn push(&mut self, topic: &Topic, payload: Payload) -> bool {
        self.push_tagged(topic, payload, None)
    }

    /// [`PeerState::push_tagged`] if a message costing `cost` fits
    /// ([`PeerState::has_room`]), looking the topic's queue up once; `None`
    /// if it does not fit.
    pub(crate) fn try_push_tagged(
        &mut self,
        topic: &Topic,
        payload: Payload,
        tag: Option<RelayTag>,
        cost: usize,
        cfg: &crate::config::PubSubConfig,
    ) -> Option<bool> {
        let peer_ok = !self.closing && self.log.has_room(cost);
        if !peer_ok {
            return None;
        }
        let q = match self.out.get_mut(topic.as_str()) {
            Some(q) => q,
            None => self.out.entry(topic.clone()).or_default(),
        };
        if !q.fits(cost, cfg) {
            return None;
        }
        q.bytes += cost;
        q.msgs.push_back((payload, tag.is_some()));
        if let Some(t) = tag {
            q.tags.push_back(t);
        }
        self.log.admit_unchecked(cost);
        Some(q.credit_msgs > 0 && q.credit_bytes > 0 && !self.suspended)
    }

    /// [`PeerState::push`] of a message that may carry a relay identity
    /// (sent as a discovery Relay frame, spending the same credit).
    pub(crate) fn push_tagged(&mut self, topic: &Topic, payload: Payload, tag: Option<RelayTag>) -> bool {
        let cost = data_cost(topic, &payload);
        self.log.admit_unchecked(cost);
        let q = match self.out.get_mut(topic.as_str()) {
            Some(q) => q,
            None => self.out.entry(topic.clone()).or_default(),
        };
        q.bytes += cost;
        q.msgs.push_back((payload, tag.is_some()));
        if let Some(t) = tag {
            q.tags.push_back(t);
        }
        q.credit_msgs > 0 && q.credit_bytes > 0 && !self.suspended
    }

    /// [`PeerState::push_batch_if_room`] of one message: `Ok` with whether
    /// the connection must be woken, `Err` with the payload if there is no
    /// room.
    pub(crate) fn push_if_room(
        &mut self,
        topic: &Topic,
        payload: Payload,
        cfg: &crate::config::PubSubConfig,
    ) -> Result<bool, Payload> {
        let mut one = [payload];
        match self.push_batch_if_room(topic, &mut one, cfg) {
            (1, wake) => Ok(wake),
            _ => Err(std::mem::take(&mut one[0])),
        }
    }

    /// [`PeerState::has_room`] and [`PeerState::push`] of each plain
    /// message of `payloads` in turn while there is room, the topic's queue
    /// looked up once: each queued payload moves out of the slice. Returns
    /// how many were queued, and whether the connection must be woken (the
    /// queue was empty and has credit; a queue that already held sendable
    /// messages woke it then).
    pub(crate) fn push_batch_if_room(
        &mut self,
        topic: &Topic,
        payloads: &mut [Payload],
        cfg: &crate::config::PubSubConfig,
    ) -> (usize, bool) {
        if self.closing {
            return (0, false);
        }
        let q = match self.out.get_mut(topic.as_str()) {
            Some(q) => q,
            None => self.out.entry(topic.clone()).or_default(),
        };
        let was_empty = q.msgs.is_empty();
        let mut n = 0;
        for slot in payloads.iter_mut() {
            let cost = data_cost(topic, slot);
            if !self.log.has_room(cost) || !q.fits(cost, cfg) {
                break;
            }
            q.bytes += cost;
            q.msgs.push_back((std::mem::take(slot), false));
            self.log.admit_unchecked(cost);
            n += 1;
        }
        let wake = n > 0 && was_empty && q.credit_msgs > 0 && q.credit_bytes > 0 && !self.suspended;
        (n, wake)
    }

    /// The peer took responsibility for every entry below `next`: the log
    /// lets go of them, and so do its marks. Returns (entries, messages)
    /// released (the other entries are markers and stream frames, each
    /// with a kind mark).
    pub(crate) fn release(&mut self, next: u64) -> Result<(usize, u64), crate::resume::LogError> {
        let n = self.log.ack(next, |_, _| {})?;
        let base = self.log.acked();
        self.topics.trim_runs(base);
        self.tags.trim(base);
        Ok((n, messages_among(n, self.kinds.trim(base))))
    }

    /// The session ended: every entry of the log is lost, and its marks
    /// go. Returns the entries' sequence numbers and how many of them were
    /// messages.
    pub(crate) fn expire_log(&mut self) -> (std::ops::Range<u64>, u64) {
        let (range, _) = self.log.expire(|_| {});
        let others = self.kinds.trim(range.end);
        self.topics.clear();
        self.tags.clear();
        let n = (range.end - range.start) as usize;
        (range, messages_among(n, others))
    }

    /// Tells whoever got `Full` for this peer that there is room again,
    /// once its queue fell to the low-water mark.
    pub(crate) fn report_writable(&mut self, cfg: &crate::config::PubSubConfig, events: &mut Events) {
        if self.want_writable && self.below_low_water(cfg) {
            self.want_writable = false;
            events.push(Event::PubSub(PubSubEvent::Writable));
        }
    }

    /// True once the queue fell to half its limits (the "writable again" mark).
    pub(crate) fn below_low_water(&self, cfg: &crate::config::PubSubConfig) -> bool {
        self.log.frames() <= cfg.max_queued_frames_per_peer / 2 && self.log.bytes() <= cfg.max_queued_bytes_per_peer / 2
    }
}

impl PubSubState {
    /// Credit from `peer` for `topic`. Returns the connection to wake if
    /// messages can now leave.
    pub(crate) fn on_credit(
        &mut self,
        peer: NodeId,
        topic: &str,
        msgs: u64,
        bytes: u64,
        events: &mut Events,
    ) -> Option<ConnId> {
        let t = self.intern(topic);
        let p = self.peers.get_mut(&peer)?;
        let q = p.out.entry(t).or_default();
        let had_none = q.credit_msgs == 0 || q.credit_bytes <= 0;
        q.granted = (q.granted.0.saturating_add(msgs), q.granted.1.saturating_add(bytes));
        q.credit_msgs = q.credit_msgs.saturating_add(msgs);
        q.credit_bytes = q.credit_bytes.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        let wake = (q.sendable() && !p.suspended).then_some(p.conn);
        // A subscription that could take nothing can take messages again (or
        // for the first time): whoever waits for room or for ready
        // subscribers looks again.
        let opened = had_none && q.credit_msgs > 0 && q.credit_bytes > 0;
        if p.want_writable || self.rr_waiting || opened {
            p.want_writable = false;
            self.rr_waiting = false;
            events.push(Event::PubSub(PubSubEvent::Writable));
        }
        wake
    }

    /// The data source of `conn`: writes queued messages that have credit,
    /// round-robin across topics, at most `quantum` bytes per topic per
    /// turn, until `buf` grew by `limit` bytes or nothing can leave.
    /// Returns (bytes, messages) written.
    pub(crate) fn produce(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        buf: &mut Vec<u8>,
        limit: usize,
        quantum: usize,
        events: &mut Events,
    ) -> (usize, u64) {
        let start = buf.len();
        let mut sent = 0u64;
        // Holds released by the copies written: (topic, upstream, copies, bytes),
        // consecutive copies of one upstream on one topic added up.
        let mut released: Vec<(Topic, NodeId, u64, u64)> = Vec::new();
        let cfg = &self.cfg;
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.conn == conn) else { return (0, 0) };
        if p.suspended || p.log.unsent() == 0 && p.log.pending_resend() == 0 && p.overwritten() == 0 {
            return (0, 0);
        }
        // After a resume, what the peer did not acknowledge goes first.
        while p.log.pending_resend() > 0 && buf.len() - start < limit {
            let Some((seq, payload)) = p.log.next_resend() else { break };
            let kind = p.kinds.at(seq);
            super::session::encode_logged(buf, payload, kind, p.topics.covering(seq), p.tags.at(seq));
            self.stats.resent += kind.is_none() as u64;
        }
        while buf.len() - start < limit {
            // The next topic after the cursor that can send, wrapping around.
            let next = match p.cursor.as_ref() {
                Some(c) => p
                    .out
                    .range::<Topic, _>((Bound::Excluded(c), Bound::Unbounded))
                    .chain(p.out.range::<Topic, _>(..=c))
                    .find(|(_, q)| q.sendable())
                    .map(|(t, _)| t.clone()),
                None => p.out.iter().find(|(_, q)| q.sendable()).map(|(t, _)| t.clone()),
            };
            let Some(topic) = next else { break };
            let q = p.out.get_mut(&topic).expect("found above");
            let turn = buf.len();
            if q.overwritten > 0 {
                // The gap goes first, where the overwritten messages were.
                let count = q.take_overwritten();
                if !self.planted_overwrite_bug {
                    super::session::encode_overwritten(buf, &topic, count);
                }
                let seq = (p.resumable && !self.planted_overwrite_bug).then(|| {
                    let cost = data_cost(&topic, &Payload::new());
                    p.log.admit_unchecked(cost);
                    let seq = p.log.pull(Payload::new(), cost);
                    p.kinds.push(seq, super::session::Kind::Overwritten(Box::new((topic.clone(), count))));
                    seq
                });
                self.stats.overwritten += count;
                self.stats.dropped += count;
                let (peer, topic) = (p.info.clone(), topic.clone());
                events.push(Event::PubSub(PubSubEvent::Overwritten { peer, topic, count, seq }));
            }
            let q = p.out.get_mut(&topic).expect("found above");
            while q.data_ready() && buf.len() - turn < quantum && buf.len() - start < limit {
                let (payload, tagged) = q.msgs.pop_front().expect("sendable");
                let tag = if tagged { q.tags.pop_front() } else { None };
                let cost = data_cost(&topic, &payload);
                q.bytes -= cost;
                q.credit_msgs -= 1;
                q.credit_bytes -= payload.len() as i64;
                if let Some(up) = tag.as_ref().and_then(|t| t.upstream) {
                    let len = payload.len() as u64;
                    match released.last_mut() {
                        Some((rt, ru, n, b)) if *ru == up && *rt == topic => {
                            *n += 1;
                            *b += len;
                        }
                        _ => released.push((topic.clone(), up, 1, len)),
                    }
                }
                super::session::encode_data(buf, &topic, &payload, tag.as_ref());
                if p.resumable {
                    // Kept until the peer acknowledges it (counted as sent then).
                    let seq = p.log.pull(payload, cost);
                    if !p.topics.last().is_some_and(|t| t.same(&topic)) {
                        p.topics.push(seq, topic.clone());
                    }
                    if let Some(tag) = tag {
                        p.tags.push(seq, tag);
                    }
                } else {
                    p.log.unadmit(1, cost);
                    sent += 1;
                }
            }
            p.cursor = Some(topic);
        }
        p.report_writable(cfg, events);
        self.stats.sent += sent;
        for (t, up, n, bytes) in released {
            self.relay_release(up, &t, n, bytes);
        }
        (buf.len() - start, sent)
    }

    /// True if messages queued for the peer whose primary is `conn` may leave now.
    pub(crate) fn has_sendable(&self, conn: ConnId, peer: Option<NodeId>) -> bool {
        let p = peer.and_then(|id| self.peers.get(&id)).filter(|p| p.conn == conn);
        p.is_some_and(|p| {
            !p.suspended
                && (p.log.pending_resend() > 0
                    || p.out.values().any(|q| q.overwritten > 0 || p.log.unsent() > 0 && q.data_ready()))
        })
    }

    /// What `peer` granted in all this session on `topic` (messages, bytes).
    pub(crate) fn granted_totals(&self, peer: NodeId, topic: &str) -> (u64, u64) {
        self.peers.get(&peer).and_then(|p| p.out.get(topic)).map_or((0, 0), |q| q.granted)
    }

    /// What this node may still send `peer` on `topic` (messages, bytes),
    /// for tests and the simulator: never negative in messages.
    pub(crate) fn send_credit(&self, peer: NodeId, topic: &str) -> Option<(u64, i64)> {
        let q = self.peers.get(&peer)?.out.get(topic)?;
        Some((q.credit_msgs, q.credit_bytes))
    }
}
