//! The discovery plane's observer: requests on the wire, the connection
//! limit, relayed messages.
//!
//! Safety, checked as things happen:
//! - no node ever holds more connections than its limit
//!   (`DiscoveryRef::connection_count` against `max_connections`, after
//!   every step);
//! - a node handles a request at most once: its `requests_handled` never
//!   exceeds the distinct requests it has read whole;
//! - a request crosses each link at most once per direction, and never
//!   goes back to a node it was read from: a node writes it to a peer only
//!   if it has not read it from that peer. So an edge carries it both ways
//!   only in a race (both copies written before either was read), and its
//!   copies never exceed the overlay edges (pairs of processes that ever
//!   exchanged a frame) plus the edges it raced on. The bound of
//!   "≤ the overlay edges" cannot be met by any flood in an asynchronous
//!   network, which is why the races are counted apart: in a square
//!   o–a–x–y–b–o, x (reached through a) and y (reached through b) each see
//!   exactly what they would see if the other had no second path, so each
//!   must forward over x–y, and when both do before either copy arrives
//!   the request makes 6 copies over 5 edges (see `docs/protocol.md`);
//! - a relayed message is delivered at most once per node, intact, on its
//!   topic, with its origin visible (`Message::relayed`), never to its
//!   origin (nor written to it), and `relay_lost`
//!   equals the `RelayLost` events.
//!
//! Liveness (pairing after healing, relay reaching every subscriber of the
//! component exactly once) is checked by the discovery scenario
//! (`src/discovery.rs`), which knows the overlay it built.

use super::{Cx, Observer, Wire};
use crate::net::{ProcId, TcpId};
use crate::payload;
use estafeta_core::wire::{DiscoveryFrame, Header};
use estafeta_core::{DiscoveryEvent, Event, Node, PubSubEvent};
use std::collections::{BTreeMap, BTreeSet};

/// A message published with a relay identity.
#[derive(Debug)]
pub(crate) struct RelayMsg {
    pub(crate) origin: ProcId,
    pub(crate) topic: usize,
    pub(crate) len: usize,
    /// Processes that delivered it.
    pub(crate) delivered: BTreeSet<ProcId>,
}

#[derive(Debug, Default)]
struct ProcRec {
    /// Request keys (indices) this process has read whole.
    fed: BTreeSet<usize>,
    /// `RelayLost` counts reported.
    lost: u64,
    /// The last Paired (true) or Unpaired (false) event per topic.
    paired: BTreeMap<String, bool>,
}

/// The discovery plane's observer.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    procs: Vec<ProcRec>,
    keys: BTreeMap<(u128, u64), usize>,
    copies: Vec<u64>,
    /// Per request: edges it crossed both ways (races).
    races: Vec<u64>,
    crossed: BTreeSet<(ProcId, ProcId, usize)>,
    /// Each request copy written: (writer, request index), for `on_fed`.
    wires: Vec<(ProcId, usize)>,
    /// (reader, writer, request index) of every copy read whole.
    read_from: BTreeSet<(ProcId, ProcId, usize)>,
    edges: BTreeSet<(ProcId, ProcId)>,
    /// Every relayed message, by id.
    pub(crate) msgs: Vec<RelayMsg>,
    /// Topics whose messages are published with relay identities (the
    /// pub/sub observer leaves them to this one).
    pub(crate) relay_topics: BTreeSet<usize>,
    /// The first relayed message each process delivered from each origin
    /// process: where its de-duplication window started.
    pub(crate) first_from: BTreeMap<(ProcId, ProcId), u64>,
}

impl Discovery {
    /// A new relayed message's id.
    pub(crate) fn next_msg(&mut self, origin: ProcId, topic: usize, len: usize) -> u64 {
        self.msgs.push(RelayMsg { origin, topic, len, delivered: BTreeSet::new() });
        (self.msgs.len() - 1) as u64
    }

    /// The last pairing event `p` reported for `topic`.
    pub(crate) fn reported_paired(&self, p: ProcId, topic: &str) -> Option<bool> {
        self.procs.get(p as usize)?.paired.get(topic).copied()
    }

    /// Request copies written so far (all requests).
    pub(crate) fn request_copies(&self) -> u64 {
        self.copies.iter().sum()
    }

    /// Edges requests crossed both ways in a race, so far (all requests).
    pub(crate) fn request_races(&self) -> u64 {
        self.races.iter().sum()
    }

    fn on_relayed(&mut self, cx: &mut Cx<'_>, p: ProcId, m: &estafeta_core::Message) {
        let who = cx.who(p);
        let Some(g) = payload::id_of(&m.payload).filter(|g| *g < self.msgs.len() as u64) else {
            return cx.fail(format!("{who} received an unknown relayed payload on {}", m.topic));
        };
        let rec = &mut self.msgs[g as usize];
        let mut errs = Vec::new();
        if m.payload.len() != rec.len || !payload::is_intact(&m.payload) {
            errs.push("payload differs from what was published".to_string());
        }
        if m.topic.as_str() != cx.topics[rec.topic] {
            errs.push(format!("arrived on {} instead of {}", m.topic, cx.topics[rec.topic]));
        }
        if cx.procs[p as usize].id == cx.procs[rec.origin as usize].id {
            errs.push("came back to its origin".into());
        }
        if m.relayed.map(|r| r.origin) != Some(cx.procs[rec.origin as usize].id) {
            errs.push(format!("its origin shows as {:?} (from {})", m.relayed.map(|r| r.origin), m.from.id));
        }
        self.first_from.entry((p, rec.origin)).or_insert(g);
        if !rec.delivered.insert(p) {
            errs.push("delivered twice to the same node".into());
        }
        for e in errs {
            cx.fail(format!("{who}: relayed #{g} from {}: {e}", cx.who(rec.origin)));
        }
    }
}

impl Observer for Discovery {
    fn on_start(&mut self, p: ProcId) {
        debug_assert_eq!(p as usize, self.procs.len());
        self.procs.push(ProcRec::default());
    }

    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event) {
        match ev {
            Event::PubSub(PubSubEvent::Message(m))
                if cx.topic_index(m.topic.as_str()).is_some_and(|t| self.relay_topics.contains(&t)) =>
            {
                self.on_relayed(cx, p, m);
            }
            Event::Discovery(DiscoveryEvent::Paired { topic }) => {
                self.procs[p as usize].paired.insert(topic.to_string(), true);
            }
            Event::Discovery(DiscoveryEvent::Unpaired { topic }) => {
                self.procs[p as usize].paired.insert(topic.to_string(), false);
            }
            Event::Discovery(DiscoveryEvent::RelayLost { count, .. }) => self.procs[p as usize].lost += count,
            _ => {}
        }
    }

    fn on_wire(&mut self, cx: &mut Cx<'_>, w: &Wire<'_>) -> Option<u64> {
        self.edges.insert((w.from.min(w.to), w.from.max(w.to)));
        match w.header {
            Header::Discovery(DiscoveryFrame::Request { id, origin, .. }) => {
                let n = self.keys.len();
                let k = *self.keys.entry((*origin, *id)).or_insert(n);
                if k == self.copies.len() {
                    self.copies.push(0);
                    self.races.push(0);
                }
                self.copies[k] += 1;
                let (from, to) = (w.from, w.to);
                if !self.crossed.insert((from, to, k)) {
                    cx.fail(format!(
                        "request {id} of {origin:#x} written twice from {} to {}",
                        cx.who(from),
                        cx.who(to)
                    ));
                }
                if self.read_from.contains(&(from, to, k)) {
                    cx.fail(format!(
                        "request {id} of {origin:#x}: {} sent it back to {} after reading it from there",
                        cx.who(from),
                        cx.who(to)
                    ));
                }
                if self.crossed.contains(&(to, from, k)) {
                    // Both ways, and (checked above) neither side had read
                    // the other's copy when it wrote its own: a race.
                    self.races[k] += 1;
                }
                // With the two checks above, its copies are the edges it
                // used plus its races: at most the overlay edges plus races.
                self.wires.push((from, k));
                Some((self.wires.len() - 1) as u64)
            }
            Header::Discovery(DiscoveryFrame::Relay { origin, seq, .. }) => {
                if cx.procs[w.to as usize].id.as_u128() == *origin {
                    cx.fail(format!("{} relayed seq {seq} back to its origin {}", cx.who(w.from), cx.who(w.to)));
                }
                None
            }
            _ => None,
        }
    }

    fn on_fed(&mut self, _cx: &mut Cx<'_>, to: ProcId, _tcp: TcpId, key: u64) {
        let (from, k) = self.wires[key as usize];
        self.procs[to as usize].fed.insert(k);
        self.read_from.insert((to, from, k));
    }

    fn after_step(&mut self, cx: &mut Cx<'_>, p: ProcId, node: &Node) {
        let d = node.discovery_ref();
        let (count, max) = (d.connection_count(), d.max_connections());
        if count > max {
            cx.fail(format!("{} holds {count} connections, over its limit of {max}", cx.who(p)));
        }
        let s = d.stats();
        let fed = self.procs[p as usize].fed.len() as u64;
        if s.requests_handled > fed {
            cx.fail(format!(
                "{} handled {} requests but read only {fed} distinct ones: a request handled twice",
                cx.who(p),
                s.requests_handled
            ));
        }
        if s.relay_lost != self.procs[p as usize].lost {
            cx.fail(format!(
                "{}: relay_lost {} but RelayLost events count {}",
                cx.who(p),
                s.relay_lost,
                self.procs[p as usize].lost
            ));
        }
    }
}
