//! The discovery plane: nodes find the peers that share their topics
//! through the peers they know, and may relay a topic's messages to peers
//! not directly connected.
//!
//! **Requests.** For each local topic without a connected peer that shares
//! it (unpaired), a node that joined known peers ([`Discovery::join`]) asks
//! its discovery peers with a
//! [`DiscoveryFrame::Request`](crate::wire::DiscoveryFrame::Request): the
//! origin's id and listen address, the topics, a TTL and a bounded visited
//! set. A node handles each request (origin, id) at most once (a bounded
//! seen set with expiry). If it shares a topic and has room under its
//! connection limit it dials the origin through the dialer, and the normal
//! handshake confirms the pairing; the rest of the topics (or all of them,
//! if it could not dial) are forwarded to its peers not yet visited, with
//! TTL − 1. A node asked directly also answers with a referral: peers it
//! learnt of from their own requests for those topics. The origin asks
//! again with capped exponential backoff while a topic is unpaired and
//! stops once every topic is paired: a timeout never pairs a topic.
//!
//! **Paired** means at least one connected peer announced the topic; it is
//! state ([`DiscoveryRef::is_paired`]) and events
//! ([`DiscoveryEvent::Paired`], [`DiscoveryEvent::Unpaired`]).
//!
//! **Relay** (opt-in per topic): messages published with
//! [`Discovery::publish`] carry (origin, epoch, seq); a node relaying the
//! topic forwards each new one to its other subscribers of the topic (never
//! back to the sender or to the origin) within a hop limit. Every receiver
//! de-duplicates per (origin, topic) with a high-water mark and a bitmap
//! window, so each message is delivered at most once per node; relayed
//! frames go through the pub/sub queues and spend the receiver's pub/sub
//! credit like any message.

mod api;
mod config;
mod event;
mod known;
mod seen;
mod window;

pub use api::{Discovery, DiscoveryRef};
pub use config::DiscoveryConfig;
pub use event::{DiscoveryEvent, RelayLoss};

pub(crate) use known::Known;
pub(crate) use seen::Seen;
pub(crate) use window::{Verdict, Windows};

use crate::event::TargetId;
use crate::id::{ConnId, NodeId, PeerAddr, Topic};
use crate::stats::DiscoveryStats;
use crate::time::Timestamp;
use crate::wire::{encode_frame, DiscoveryFrame, Header, ListenAddr, Referred};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The identity a relayed message carries, assigned by its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RelayTag {
    pub(crate) origin: u128,
    pub(crate) epoch: u32,
    pub(crate) seq: u64,
    pub(crate) hops: u8,
    /// The peer a forwarded copy came from (not on the wire): its credit
    /// is held until the copy leaves (`PubSubState::relay_release`).
    pub(crate) upstream: Option<NodeId>,
}

/// A discovery frame waiting to leave, owned.
#[derive(Clone, Debug)]
pub(crate) enum OutFrame {
    Request { id: u64, origin: u128, listen: Option<(String, u16)>, topics: Vec<Topic>, ttl: u8, visited: Vec<u128> },
    Referral(Vec<(u128, PeerAddr, Vec<Topic>)>),
}

impl OutFrame {
    fn encode(&self, buf: &mut Vec<u8>) {
        let frame = match self {
            OutFrame::Request { id, origin, listen, topics, ttl, visited } => DiscoveryFrame::Request {
                id: *id,
                origin: *origin,
                listen: listen.as_ref().map(|(host, port)| ListenAddr { host, port: *port }),
                topics: topics.iter().map(|t| t.as_str()).collect(),
                ttl: *ttl,
                visited: visited.clone(),
            },
            OutFrame::Referral(peers) => DiscoveryFrame::Referral {
                peers: peers
                    .iter()
                    .map(|(id, a, topics)| Referred {
                        id: *id,
                        listen: ListenAddr { host: &a.host, port: a.port },
                        topics: topics.iter().map(|t| t.as_str()).collect(),
                    })
                    .collect(),
            },
        };
        encode_frame(buf, &Header::Discovery(frame), &[]);
    }
}

/// A known peer given with `join`: its address and current target.
#[derive(Debug)]
pub(crate) struct Root {
    pub(crate) addr: PeerAddr,
    pub(crate) target: Option<TargetId>,
}

#[derive(Debug)]
pub(crate) struct DiscoveryState {
    pub(crate) cfg: DiscoveryConfig,
    /// Known peers to join through (roots).
    pub(crate) roots: Vec<Root>,
    /// Dial targets this plane made (not redialed; removed when they end).
    pub(crate) dialed: BTreeMap<TargetId, (NodeId, PeerAddr)>,
    /// Each local topic's paired state as last reported.
    pub(crate) paired: BTreeMap<Topic, bool>,
    /// Something that decides pairing changed: re-evaluate.
    pub(crate) dirty: bool,
    /// The pub/sub plane's local-subscriptions generation last looked at.
    pub(crate) seen_gen: u64,
    pub(crate) seen: Seen,
    pub(crate) next_request: u64,
    /// When the next request for unpaired topics leaves.
    pub(crate) retry_at: Option<Timestamp>,
    pub(crate) attempt: u32,
    /// When the dropped roots are connected again to refresh what they know.
    pub(crate) refresh_at: Option<Timestamp>,
    pub(crate) known: Known,
    /// Discovery frames queued per connection.
    pub(crate) out: BTreeMap<ConnId, VecDeque<OutFrame>>,
    /// Relay: topics this node forwards.
    pub(crate) relay_topics: BTreeSet<Topic>,
    /// Relay: this node's boot epoch and next sequence number per topic.
    pub(crate) epoch: u32,
    pub(crate) next_seq: BTreeMap<Topic, u64>,
    /// Relay: de-duplication windows per (origin, topic), with their last use.
    pub(crate) windows: Windows,
    pub(crate) stats: DiscoveryStats,
}

impl DiscoveryState {
    pub(crate) fn new(cfg: DiscoveryConfig, epoch: u32) -> Self {
        DiscoveryState {
            seen: Seen::new(cfg.max_seen_requests, cfg.seen_expiry),
            known: Known::new(cfg.max_known_topics, cfg.max_known_per_topic, cfg.known_expiry),
            cfg,
            roots: Vec::new(),
            dialed: BTreeMap::new(),
            paired: BTreeMap::new(),
            dirty: false,
            seen_gen: 0,
            next_request: 1,
            retry_at: None,
            attempt: 0,
            refresh_at: None,
            out: BTreeMap::new(),
            relay_topics: BTreeSet::new(),
            epoch,
            next_seq: BTreeMap::new(),
            windows: Windows::default(),
            stats: DiscoveryStats::default(),
        }
    }

    /// Queues `frame` for `conn`; false (counted) if its queue is full.
    pub(crate) fn queue(&mut self, conn: ConnId, frame: OutFrame) -> bool {
        let q = self.out.entry(conn).or_default();
        if q.len() >= self.cfg.max_queued_frames {
            self.stats.frames_dropped += 1;
            return false;
        }
        q.push_back(frame);
        true
    }

    /// Discovery frames for `conn` (to `peer`), encoded now. A request
    /// that `peer` itself sent this node since it was queued is not sent
    /// back (counted `requests_suppressed`). Returns bytes written.
    pub(crate) fn write_control(&mut self, conn: ConnId, peer: Option<NodeId>, buf: &mut Vec<u8>) -> usize {
        let start = buf.len();
        if let Some(q) = self.out.remove(&conn) {
            for f in q {
                if let OutFrame::Request { id, origin, .. } = &f {
                    let back = peer.is_some_and(|p| self.seen.came_from((*origin, *id), p.as_u128()));
                    if back && !self.cfg.planted_send_back {
                        self.stats.requests_suppressed += 1;
                        continue;
                    }
                    self.stats.requests_sent += 1;
                }
                f.encode(buf);
            }
        }
        buf.len() - start
    }

    pub(crate) fn has_control(&self, conn: ConnId) -> bool {
        self.out.get(&conn).is_some_and(|q| !q.is_empty())
    }

    pub(crate) fn on_conn_closed(&mut self, conn: ConnId) {
        self.out.remove(&conn);
    }

    /// The de-duplication verdict for a relayed message; the least recently
    /// used window makes room when the table is full (counted).
    pub(crate) fn check_relay(&mut self, origin: NodeId, topic: &Topic, tag: &RelayTag, now: Timestamp) -> Verdict {
        let limits = (self.cfg.relay_window, self.cfg.max_relay_origins);
        let (verdict, evicted) = self.windows.check((origin, topic), (tag.epoch, tag.seq), now, limits);
        if evicted {
            self.stats.relay_windows_evicted += 1;
        }
        verdict
    }

    /// The next retry delay: capped exponential backoff with jitter.
    pub(crate) fn backoff(&mut self, rng: &mut crate::rng::Rng) -> std::time::Duration {
        let delay = crate::dialer::backoff(self.cfg.retry_base, self.cfg.retry_cap, self.attempt, rng);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }
}
