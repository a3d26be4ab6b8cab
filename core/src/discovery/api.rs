//! The discovery plane's commands and queries, through borrowed accessors:
//! `node.discovery().join(..)`, `node.discovery_ref().is_paired(..)`.

use super::RelayTag;
use crate::error::{CommandError, PublishError};
use crate::event::TargetId;
use crate::id::{PeerAddr, Topic};
use crate::node::Node;
use crate::pubsub::Published;
use crate::stats::DiscoveryStats;
use bytes::Bytes;

/// Commands of the discovery plane, borrowed from a [`Node`] with
/// [`Node::discovery`].
///
/// ```
/// use estafeta_core::{Action, Config, Node};
/// let mut node = Node::new(Config::plaintext(), "alice").unwrap();
/// node.pubsub().subscribe("news").unwrap();
/// node.discovery().join("root@127.0.0.1:7000".parse().unwrap()).unwrap();
/// assert!(matches!(node.poll_action(), Some(Action::Dial { .. })));
/// assert!(!node.discovery_ref().is_paired("news"), "a timeout never pairs a topic");
/// ```
#[derive(Debug)]
pub struct Discovery<'a> {
    pub(crate) node: &'a mut Node,
}

impl Discovery<'_> {
    /// Keeps this node connected to a known peer (a root) to discover
    /// through, like [`Node::connect`]. With
    /// [`DiscoveryConfig::drop_root_when_paired`](crate::DiscoveryConfig)
    /// the connection is closed once every topic is paired, and made again
    /// when a topic loses its last peer.
    pub fn join(&mut self, addr: PeerAddr) -> Result<TargetId, CommandError> {
        let target = self.node.connect(addr.clone())?;
        let roots = &mut self.node.discovery_state_mut().roots;
        match roots.iter_mut().find(|r| r.addr.host == addr.host && r.addr.port == addr.port) {
            Some(r) => r.target = Some(target),
            None => roots.push(super::Root { addr, target: Some(target) }),
        }
        Ok(target)
    }

    /// Relays `topic`'s messages (those published with
    /// [`Discovery::publish`]) to this node's other subscribers of it, or
    /// stops. Returns true if that changed anything.
    pub fn set_relay(&mut self, topic: &str, on: bool) -> Result<bool, CommandError> {
        self.node.pubsub_ref_check_topic(topic)?;
        let st = self.node.discovery_state_mut();
        if on {
            if st.relay_topics.contains(topic) {
                return Ok(false);
            }
            if st.relay_topics.len() >= st.cfg.max_relay_topics {
                return Err(CommandError::BadTopic(format!(
                    "more than discovery.max_relay_topics ({}) relay topics",
                    st.cfg.max_relay_topics
                )));
            }
            Ok(st.relay_topics.insert(Topic::from(topic)))
        } else {
            Ok(st.relay_topics.remove(topic))
        }
    }

    /// Publishes `payload` to every subscriber of `topic` with a relay
    /// identity (this node, its epoch, the topic's next sequence number), so
    /// relaying nodes pass it on and every node delivers it at most once.
    /// Like a publish to all: nothing is queued if a subscriber is full
    /// (`Full`; wait for `Writable`).
    pub fn publish(&mut self, topic: &str, payload: Bytes) -> Result<Published, PublishError> {
        self.node.relay_publish(topic, payload)
    }
}

/// Read-only queries of the discovery plane ([`Node::discovery_ref`]).
#[derive(Debug, Clone, Copy)]
pub struct DiscoveryRef<'a> {
    pub(crate) node: &'a Node,
}

impl<'a> DiscoveryRef<'a> {
    /// True if a connected peer shares `topic` (announced it). Only a
    /// handshake with such a peer makes this true; no timeout does.
    pub fn is_paired(&self, topic: &str) -> bool {
        self.node.is_paired(topic, false)
    }

    /// Local topics without a connected peer that shares them.
    pub fn unpaired(&self) -> Vec<Topic> {
        let ps = self.node.pubsub_ref();
        ps.subscriptions().filter(|t| !self.node.is_paired(t, false)).cloned().collect()
    }

    /// True if `topic` is relayed by this node.
    pub fn is_relaying(&self, topic: &str) -> bool {
        self.node.discovery_state().relay_topics.contains(topic)
    }

    /// True if this node is a root ([`DiscoveryConfig::root`](crate::DiscoveryConfig)).
    pub fn is_root(&self) -> bool {
        self.node.discovery_state().cfg.root
    }

    /// The connection limit in force: the root's or the session's.
    pub fn max_connections(&self) -> usize {
        self.node.max_connections()
    }

    /// Connections counted against [`DiscoveryRef::max_connections`]: open,
    /// handshaking and dialing ones (not those being refused at the limit).
    pub fn connection_count(&self) -> usize {
        self.node.conn_count()
    }

    /// The plane's counters.
    pub fn stats(&self) -> DiscoveryStats {
        self.node.discovery_state().stats
    }
}

impl RelayTag {
    pub(crate) fn new(origin: u128, epoch: u32, seq: u64, hops: u8) -> Self {
        RelayTag { origin, epoch, seq, hops, upstream: None }
    }
}
