//! The discovery plane's glue in the node: pairing, requests, referrals,
//! relay, and the connection limit every connection is admitted under.

use super::Node;
use crate::discovery::{DiscoveryEvent, DiscoveryState, OutFrame, RelayLoss, RelayTag, Verdict};
use crate::error::{CommandError, PublishError};
use crate::event::{CloseReason, Event, ProtocolError, TargetId};
use crate::id::{ConnId, NodeId, PeerAddr, Topic};
use crate::pubsub::{Deliver, Published, RelayPush, Relayed};
use crate::session::{Closing, Phase};
use crate::time::Timestamp;
use crate::wire::{Capabilities, DiscoveryFrame};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Over-limit connections being refused (sending their goodbye) at once;
/// past this an accepted socket is dropped without one.
const MAX_REFUSING: usize = 64;

impl Node {
    /// The discovery plane: join known peers, relay, publish with a relay identity.
    pub fn discovery(&mut self) -> crate::discovery::Discovery<'_> {
        self.report_consumed();
        crate::discovery::Discovery { node: self }
    }

    /// The discovery plane's queries, from a shared borrow.
    pub fn discovery_ref(&self) -> crate::discovery::DiscoveryRef<'_> {
        crate::discovery::DiscoveryRef { node: self }
    }

    pub(crate) fn discovery_state(&self) -> &DiscoveryState {
        &self.discovery
    }

    pub(crate) fn discovery_state_mut(&mut self) -> &mut DiscoveryState {
        &mut self.discovery
    }

    pub(crate) fn pubsub_ref_check_topic(&self, topic: &str) -> Result<(), CommandError> {
        self.pubsub.check_topic(topic).map_err(CommandError::BadTopic)
    }

    /// The connection limit in force: a root's own, or the session's.
    pub(crate) fn max_connections(&self) -> usize {
        if self.discovery.cfg.root {
            self.discovery.cfg.root_max_connections
        } else {
            self.cfg.session.max_connections
        }
    }

    /// Connections counted against the limit: open, handshaking and
    /// dialing ones, not those being refused.
    pub(crate) fn conn_count(&self) -> usize {
        self.session.conns.values().filter(|c| !is_refusing(c)).count()
    }

    /// Admits an accepted socket, or takes it only to refuse it with a
    /// goodbye saying the limit is reached (`None`: drop it without one).
    pub(super) fn admit_accepted(&mut self) -> Option<ConnId> {
        let count = self.conn_count();
        if count < self.max_connections() {
            return Some(self.session.accept(self.now));
        }
        if self.session.conns.len() - count >= MAX_REFUSING {
            return None;
        }
        let id = self.session.accept(self.now);
        let c = self.session.conns.get_mut(&id).expect("just accepted");
        c.control.hello = false;
        c.control.goodbye = true;
        c.closing = Some(Closing::Goodbye(CloseReason::TooManyConnections));
        self.session_stats.refused_over_limit += 1;
        Some(id)
    }

    /// True if a connected peer other than the roots (with `skip_roots`)
    /// announced `topic`.
    pub(crate) fn is_paired(&self, topic: &str, skip_roots: bool) -> bool {
        if !skip_roots {
            return self.pubsub.subscriber_ids(topic).next().is_some();
        }
        let roots = self.root_peers();
        self.pubsub.subscriber_ids(topic).any(|id| !roots.contains(&id))
    }

    fn root_peers(&self) -> BTreeSet<NodeId> {
        let root = |t: TargetId| self.target_peer(t).map(|p| p.id);
        self.discovery.roots.iter().filter_map(|r| r.target.and_then(root)).collect()
    }

    /// The discovery plane's deadline: now if pairing must be looked at,
    /// else the next request.
    pub(super) fn discovery_timer(&self) -> Option<Timestamp> {
        let d = &self.discovery;
        if d.dirty || d.seen_gen != self.pubsub.local_gen {
            return Some(self.now);
        }
        [d.retry_at, d.refresh_at].into_iter().flatten().min()
    }

    /// Re-evaluates pairing (events, drop or re-join roots) and sends a
    /// request for unpaired topics when one is due.
    pub(super) fn discovery_timeout(&mut self, now: Timestamp) {
        if self.closing {
            self.discovery.dirty = false;
            self.discovery.seen_gen = self.pubsub.local_gen;
            self.discovery.retry_at = None;
            self.discovery.refresh_at = None;
            return;
        }
        if self.discovery.refresh_at.is_some_and(|t| now >= t) {
            self.discovery.refresh_at = None;
            self.join_roots();
        }
        if self.discovery.dirty || self.discovery.seen_gen != self.pubsub.local_gen {
            let peer_up = std::mem::take(&mut self.discovery.dirty);
            self.discovery.seen_gen = self.pubsub.local_gen;
            self.sync_pairing(peer_up);
        }
        if self.discovery.retry_at.is_some_and(|t| now >= t) {
            self.send_requests();
        }
    }

    fn sync_pairing(&mut self, peer_changed: bool) {
        let local: Vec<Topic> = self.pubsub.local_topics().iter().cloned().collect();
        let mut now_paired = BTreeMap::new();
        for t in &local {
            now_paired.insert(t.clone(), self.is_paired(t, false));
        }
        let mut newly_unpaired = false;
        for (t, p) in &now_paired {
            let was = self.discovery.paired.get(t).copied();
            if was != Some(*p) {
                let topic = t.clone();
                let ev = if *p { DiscoveryEvent::Paired { topic } } else { DiscoveryEvent::Unpaired { topic } };
                self.events.push(Event::Discovery(ev));
                newly_unpaired |= !*p;
            }
        }
        self.discovery.paired = now_paired;
        let unpaired = self.discovery.paired.values().any(|p| !p);
        // Only a node that joined through known peers asks for its topics.
        if !unpaired || self.discovery.roots.is_empty() {
            self.discovery.retry_at = None;
            self.discovery.attempt = 0;
        } else if newly_unpaired || peer_changed || self.discovery.retry_at.is_none() {
            // Ask at once: a topic lost its peer, or a peer to ask came up.
            if newly_unpaired {
                self.discovery.attempt = 0;
            }
            let at = self.discovery.retry_at.map_or(self.now, |t| t.min(self.now));
            self.discovery.retry_at = Some(at);
        }
        // Roots: drop them once every topic has another peer; join again
        // when one has none.
        if self.discovery.cfg.drop_root_when_paired && !local.is_empty() {
            let all_paired_elsewhere = local.iter().all(|t| self.is_paired(t, true));
            if all_paired_elsewhere {
                let targets: Vec<TargetId> = self.discovery.roots.iter_mut().filter_map(|r| r.target.take()).collect();
                for t in targets {
                    self.discovery.stats.roots_dropped += 1;
                    self.disconnect(t);
                }
                let every = self.discovery.cfg.root_refresh;
                if self.discovery.refresh_at.is_none() && !every.is_zero() {
                    self.discovery.refresh_at = Some(self.now + self.rng.upper_half(every));
                }
            } else if unpaired {
                self.join_roots();
            }
        }
    }

    /// Connects to every root not connected (its Hello tells the root
    /// this node's topics and address).
    fn join_roots(&mut self) {
        let addrs: Vec<PeerAddr> =
            self.discovery.roots.iter().filter(|r| r.target.is_none()).map(|r| r.addr.clone()).collect();
        for a in addrs {
            if let Ok(t) = self.connect(a.clone()) {
                if let Some(r) = self.discovery.roots.iter_mut().find(|r| r.addr == a) {
                    r.target = Some(t);
                }
            }
        }
    }

    /// Open peers that run discovery, with the connection this node's
    /// frames to them leave on.
    fn discovery_peers(&self) -> Vec<(NodeId, ConnId)> {
        let mut v = Vec::new();
        for (id, p) in &self.session.peers {
            let Some(c) = self.session.conns.get(&p.primary) else { continue };
            if let Phase::Open(o) = &c.phase {
                if o.caps.contains(Capabilities::DISCOVERY) && c.closing.is_none() {
                    v.push((*id, p.primary));
                }
            }
        }
        v
    }

    fn send_requests(&mut self) {
        let max = self.discovery.cfg.max_topics_per_request;
        let topics: Vec<Topic> =
            self.discovery.paired.iter().filter(|(_, p)| !**p).map(|(t, _)| t.clone()).take(max).collect();
        if topics.is_empty() {
            self.discovery.retry_at = None;
            return;
        }
        // Every other round, peers known to share a topic (met through a
        // referral, a request, or a connection that was lost) are dialed
        // directly, one per topic: a peer whose links all broke may be
        // unknown to every node it can still reach (a root that restarted
        // knows nobody; paired nodes stop asking). Not in the rounds that
        // ask: a peer that gets the request dials back, and two dials at
        // once end both connections (docs/protocol.md, "Both ends dial").
        let mut dialed = false;
        if self.discovery.attempt % 2 == 1 {
            for t in &topics {
                for (id, addr) in self.discovery.known.peers(t, self.now) {
                    if self.discovery_dial(id, addr) {
                        dialed = true;
                        break;
                    }
                }
            }
        }
        let peers = if dialed { Vec::new() } else { self.discovery_peers() };
        if !peers.is_empty() {
            let id = self.discovery.next_request;
            self.discovery.next_request += 1;
            let me = self.me.id.as_u128();
            self.discovery.seen.insert((me, id), self.now);
            let frame = OutFrame::Request {
                id,
                origin: me,
                listen: self.me.listen.clone(),
                topics,
                ttl: self.discovery.cfg.request_ttl,
                visited: vec![me],
            };
            for (_, conn) in peers {
                if self.discovery.queue(conn, frame.clone()) {
                    self.session.ready.insert(conn);
                }
            }
        }
        let delay = self.discovery.backoff(&mut self.rng);
        self.discovery.retry_at = Some(self.now + delay);
    }

    /// Dials `id` at `addr` for discovery if it is not connected or being
    /// dialed and there is room. True if a dial started.
    fn discovery_dial(&mut self, id: NodeId, addr: PeerAddr) -> bool {
        let own_addr = self.me.listen.as_ref().is_some_and(|(h, p)| *h == addr.host && *p == addr.port);
        if id == self.me.id
            || own_addr
            || self.session.peers.contains_key(&id)
            || self.discovery.dialed.values().any(|(i, _)| *i == id)
            || self.dialer.find(&addr).is_some()
        {
            return false;
        }
        if self.conn_count() >= self.max_connections() || self.dialer.len() >= self.max_connections() {
            self.discovery.stats.dials_refused_full += 1;
            return false;
        }
        let t = self.dialer.add(addr.clone());
        self.discovery.dialed.insert(t, (id, addr));
        self.discovery.stats.dials += 1;
        self.dial(t);
        true
    }

    /// A peer listening at `addr` announced `topics` in its Hello: it is
    /// known to share those of them this node subscribes to (to dial again
    /// if they go unpaired; to refer), and a root refers it for all of them.
    pub(super) fn discovery_met(&mut self, id: NodeId, addr: PeerAddr, topics: &[&str]) {
        let root = self.discovery.cfg.root;
        for t in topics {
            if let Some(t) = self.pubsub.local_topics().get(*t) {
                self.discovery.known.record(t, id, &addr, self.now);
            } else if root {
                // Checked with the Hello (`check_hello`).
                self.discovery.known.record(&Topic::from(*t), id, &addr, self.now);
            }
        }
    }

    /// A connection dialed by this plane ended: it is not redialed by the
    /// dialer. A peer lost without a word (no answer, a broken socket, a
    /// dial that did not connect) stays known until its record expires, to
    /// be dialed again while a topic it shares is unpaired (after the
    /// other peers known for it, if the dial failed); one that closed on
    /// purpose is forgotten. Returns true if `target` was one of this
    /// plane's.
    pub(super) fn discovery_target_lost(&mut self, target: TargetId, reason: &CloseReason, reached: bool) -> bool {
        let Some((id, addr)) = self.discovery.dialed.remove(&target) else { return false };
        self.dialer.remove(target);
        use CloseReason::{DialTimeout, HandshakeTimeout, Io, LivenessTimeout};
        let silent = matches!(reason, LivenessTimeout | Io(_) | DialTimeout | HandshakeTimeout);
        if !silent {
            self.discovery.known.forget(id);
        } else if !reached {
            self.discovery.known.demote(id);
        }
        self.events.push(Event::Discovery(DiscoveryEvent::DialFailed { addr, reason: reason.clone() }));
        true
    }

    /// A discovery frame from `peer` on `conn`.
    pub(super) fn on_discovery(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        frame: DiscoveryFrame<'_>,
        payload: Bytes,
        local: Option<&Topic>,
    ) -> Result<(), ProtocolError> {
        match frame {
            DiscoveryFrame::Request { id, origin, listen, topics, ttl, visited } => {
                let addr = listen.map(|l| PeerAddr::new(l.host, l.port));
                self.on_request(conn, peer, (origin, id), addr, &topics, ttl, &visited)
            }
            DiscoveryFrame::Referral { peers } => {
                let max = self.discovery.cfg.max_referrals;
                if peers.len() > max {
                    return Err(ProtocolError::Limit(format!("a referral of {} peers > {max}", peers.len())));
                }
                let mut wanted: BTreeSet<Topic> =
                    self.discovery.paired.iter().filter(|(_, p)| !**p).map(|(t, _)| t.clone()).collect();
                for r in peers {
                    let useful: Vec<Topic> = r.topics.iter().filter_map(|t| wanted.get(*t).cloned()).collect();
                    if useful.is_empty() {
                        continue;
                    }
                    let (id, addr) = (NodeId::from_u128(r.id), PeerAddr::new(r.listen.host, r.listen.port));
                    if self.discovery_dial(id, addr.clone()) {
                        // One dial per unpaired topic: the next request asks again if it fails.
                        for t in useful {
                            self.discovery.known.record(&t, id, &addr, self.now);
                            wanted.remove(&t);
                        }
                    }
                }
                Ok(())
            }
            DiscoveryFrame::Relay { topic, origin, epoch, seq, hops } => {
                let r = self.on_relay(peer, (topic, local), RelayTag::new(origin, epoch, seq, hops), payload);
                self.wake_pubsub_conns();
                r
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        conn: ConnId,
        from: NodeId,
        key: (u128, u64),
        addr: Option<PeerAddr>,
        topics: &[&str],
        ttl: u8,
        visited: &[u128],
    ) -> Result<(), ProtocolError> {
        let cfg = &self.discovery.cfg;
        if topics.len() > cfg.max_topics_per_request {
            return Err(ProtocolError::Limit(format!("a request for {} topics", topics.len())));
        }
        if visited.len() > cfg.max_visited {
            return Err(ProtocolError::Limit(format!("a visited set of {} nodes", visited.len())));
        }
        if let Some(t) = topics.iter().find(|t| self.pubsub.check_topic(t).is_err()) {
            return Err(ProtocolError::Limit(format!("bad topic of {} bytes in a request", t.len())));
        }
        let new = self.discovery.seen.insert(key, self.now);
        self.discovery.seen.arrived_from(key, from.as_u128());
        self.discovery.stats.seen_evicted = self.discovery.seen.evicted;
        if !new && !self.discovery.cfg.planted_bug {
            self.discovery.stats.requests_duplicate += 1;
            return Ok(());
        }
        let (origin_raw, _) = key;
        if origin_raw == self.me.id.as_u128() {
            self.discovery.stats.requests_duplicate += 1;
            return Ok(());
        }
        self.discovery.stats.requests_handled += 1;
        let origin = NodeId::from_u128(origin_raw);
        let topics: Vec<Topic> = topics.iter().map(|t| Topic::from(*t)).collect();
        if let Some(a) = &addr {
            for t in &topics {
                self.discovery.known.record(t, origin, a, self.now);
            }
        }
        // Share a topic: dial the origin (the handshake pairs us); forward the rest.
        let shared: Vec<Topic> = topics.iter().filter(|t| self.pubsub.local_topics().contains(*t)).cloned().collect();
        let mut rest = topics.clone();
        if !shared.is_empty() {
            let connected = self.session.peers.contains_key(&origin);
            let dialing = connected || addr.clone().is_some_and(|a| self.discovery_dial(origin, a));
            if dialing {
                rest.retain(|t| !shared.contains(t));
            }
        }
        let mut forwarded_to = Vec::new();
        if ttl > 1 && !rest.is_empty() {
            let me = self.me.id.as_u128();
            let targets: Vec<(NodeId, ConnId)> = self
                .discovery_peers()
                .into_iter()
                .filter(|(id, _)| {
                    let back = *id == from && self.discovery.cfg.planted_send_back;
                    back || (*id != from && *id != origin && !visited.contains(&id.as_u128()))
                })
                .collect();
            let mut seen_by: Vec<u128> = visited.to_vec();
            let max = self.discovery.cfg.max_visited;
            for id in std::iter::once(me).chain(targets.iter().map(|(id, _)| id.as_u128())) {
                if seen_by.len() < max && !seen_by.contains(&id) {
                    seen_by.push(id);
                }
            }
            let frame = OutFrame::Request {
                id: key.1,
                origin: origin_raw,
                listen: addr.map(|a| (a.host, a.port)),
                topics: rest.clone(),
                ttl: ttl - 1,
                visited: seen_by,
            };
            for (id, c) in targets {
                if self.discovery.queue(c, frame.clone()) {
                    self.discovery.stats.requests_forwarded += 1;
                    self.session.ready.insert(c);
                    forwarded_to.push(id);
                }
            }
        }
        // Asked directly: refer the peers learnt of for these topics, but
        // not a peer the request was just forwarded to for them: it dials
        // the origin itself if it shares them, and a referral would make
        // both ends dial at once (which ends both connections).
        if from == origin {
            self.refer(conn, origin, &topics, &forwarded_to, &rest);
        }
        Ok(())
    }

    /// Refers `origin` (on `conn`) to the peers known for `topics`, but
    /// for a topic in `forwarded` not to the peers in `skip`.
    fn refer(&mut self, conn: ConnId, origin: NodeId, topics: &[Topic], skip: &[NodeId], forwarded: &[Topic]) {
        let max = self.discovery.cfg.max_referrals;
        let mut peers: Vec<(u128, PeerAddr, Vec<Topic>)> = Vec::new();
        for t in topics {
            let forwarded = forwarded.contains(t);
            for (id, a) in self.discovery.known.peers(t, self.now) {
                if id == origin || id == self.me.id || forwarded && skip.contains(&id) {
                    continue;
                }
                if let Some(p) = peers.iter_mut().find(|(i, _, _)| *i == id.as_u128()) {
                    p.2.push(t.clone());
                } else if peers.len() < max {
                    peers.push((id.as_u128(), a, vec![t.clone()]));
                }
            }
        }
        if !peers.is_empty() && self.discovery.queue(conn, OutFrame::Referral(peers)) {
            self.discovery.stats.referrals_sent += 1;
            self.session.ready.insert(conn);
        }
    }

    /// A relayed copy on `topic` (`local`: known to be this local
    /// subscription, see [`Node::route`](super::Node)'s shortcut).
    fn on_relay(
        &mut self,
        from: NodeId,
        (topic, local): (&str, Option<&Topic>),
        tag: RelayTag,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        let Some(peer) = self.session.peers.get(&from).map(|p| p.info.clone()) else { return Ok(()) };
        let (topic, local) = match local {
            Some(t) => (t.clone(), true),
            None => {
                self.pubsub.check_topic(topic).map_err(ProtocolError::Limit)?;
                (self.pubsub.topic(topic), false)
            }
        };
        let origin = NodeId::from_u128(tag.origin);
        let permitted = self.cfg.security.permissions.may_publish(from, &topic);
        if !permitted {
            self.secure.stats.publish_denied += 1;
        }
        if origin == self.me.id {
            self.discovery.stats.relay_returned += 1;
            return self
                .pubsub
                .receive(&peer, (&topic, None), payload, Deliver::No, permitted, None, &mut self.events)
                .map(drop);
        }
        let verdict = self.discovery.check_relay(origin, &topic, &tag, self.now);
        match verdict {
            Verdict::Duplicate => {
                self.discovery.stats.relay_duplicates += 1;
                self.pubsub
                    .receive(&peer, (&topic, None), payload, Deliver::No, permitted, None, &mut self.events)
                    .map(drop)
            }
            Verdict::TooOld => {
                self.relay_lost(&topic, origin, 1, RelayLoss::TooOld);
                self.pubsub
                    .receive(&peer, (&topic, None), payload, Deliver::No, permitted, None, &mut self.events)
                    .map(drop)
            }
            Verdict::New { skipped } => {
                if skipped > 0 {
                    self.relay_lost(&topic, origin, skipped, RelayLoss::Skipped);
                }
                let relayed = Relayed { origin, epoch: tag.epoch, seq: tag.seq, hops: tag.hops };
                let deliver = Deliver::Yes(Some(relayed));
                let hops = tag.hops.saturating_add(1);
                let relays = permitted && self.discovery.relay_topics.contains(&topic);
                // The payload is shared with the copies only if there are any.
                let copies = (relays && hops < self.discovery.cfg.relay_hop_limit).then(|| payload.clone());
                let known = local.then_some(&topic);
                self.pubsub.receive(&peer, (&topic, known), payload, deliver, permitted, None, &mut self.events)?;
                if let Some(payload) = copies {
                    self.forward(&topic, payload, RelayTag { hops, ..tag }, &[from, origin]);
                }
                Ok(())
            }
        }
    }

    fn forward(&mut self, topic: &Topic, payload: Bytes, tag: RelayTag, except: &[NodeId]) {
        // Peers without the plane cannot tell copies apart: no forwards to them.
        let upstream = except.first().copied();
        let tag = RelayTag { upstream, ..tag };
        let r = self.pubsub.push_relay(topic, &payload, tag, except, RelayPush::Forward, &mut self.session.ready);
        let Ok((queued, skipped)) = r else { return };
        self.discovery.stats.relay_forwarded += queued as u64;
        if let Some(up) = upstream {
            // The copies hold the upstream's credit until they leave.
            self.pubsub.relay_hold(up, topic, queued as u64, (queued * payload.len()) as u64);
        }
        if !skipped.is_empty() {
            let origin = NodeId::from_u128(tag.origin);
            self.relay_lost(topic, origin, skipped.len() as u64, RelayLoss::QueueFull);
        }
    }

    fn relay_lost(&mut self, topic: &Topic, origin: NodeId, count: u64, reason: RelayLoss) {
        self.discovery.stats.relay_lost += count;
        if let Some(Event::Discovery(DiscoveryEvent::RelayLost { topic: t, origin: o, count: n, reason: r })) =
            self.events.back_mut()
        {
            if t == topic && *o == origin && *r == reason {
                *n += count;
                return;
            }
        }
        let topic = topic.clone();
        self.events.push(Event::Discovery(DiscoveryEvent::RelayLost { topic, origin, count, reason }));
    }

    /// [`Discovery::publish`](crate::Discovery::publish).
    pub(crate) fn relay_publish(&mut self, topic: &str, payload: Bytes) -> Result<Published, PublishError> {
        if self.closing {
            return Err(PublishError::Closed);
        }
        self.pubsub.check_topic(topic).map_err(PublishError::BadTopic)?;
        let size = crate::wire::encoded_len_hint(topic.len(), payload.len()) + 40;
        let max = self.cfg.session.max_frame_size;
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        let d = &mut self.discovery;
        let seq = match d.next_seq.get(topic) {
            Some(s) => *s,
            None if d.next_seq.len() >= d.cfg.max_relay_topics => {
                if self.pubsub.subscriber_ids(topic).next().is_none() {
                    return Err(PublishError::NoSubscribers(Topic::from(topic)));
                }
                return Err(PublishError::BadTopic(format!(
                    "more than discovery.max_relay_topics ({}) topics published with relay",
                    d.cfg.max_relay_topics
                )));
            }
            None => 1,
        };
        let tag = RelayTag::new(self.me.id.as_u128(), d.epoch, seq, 0);
        // Peers without the discovery plane get it as a plain message.
        let (queued, _) =
            self.pubsub.push_relay(topic, &payload, tag, &[], RelayPush::Publish, &mut self.session.ready)?;
        match self.discovery.next_seq.get_mut(topic) {
            Some(s) => *s = seq + 1,
            None => {
                self.discovery.next_seq.insert(Topic::from(topic), seq + 1);
            }
        }
        self.discovery.stats.relay_published += queued as u64;
        Ok(Published { queued, dropped: 0 })
    }

    /// Connections the pub/sub plane has something for (a grant a relay
    /// release made due, an ack, a graceful close's last ack): ready to
    /// send. Called on the receive path, so an empty list costs one check.
    pub(super) fn wake_pubsub_conns(&mut self) {
        if self.pubsub.wake.is_empty() {
            return;
        }
        for c in self.pubsub.wake.drain(..) {
            self.session.ready.insert(c);
        }
    }

    /// A peer came up or went away, or announced a change: look at pairing again.
    pub(super) fn discovery_touch(&mut self) {
        self.discovery.dirty = true;
    }
}

fn is_refusing(c: &crate::session::Conn) -> bool {
    !c.is_open() && matches!(c.closing.as_ref().map(Closing::reason), Some(CloseReason::TooManyConnections))
}
