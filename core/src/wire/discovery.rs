//! The discovery plane's frames ([`Header::Discovery`](super::Header::Discovery)).

use super::ListenAddr;
use serde::{Deserialize, Serialize};

/// A frame of the discovery plane. Variants are appended, never inserted.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryFrame<'a> {
    /// "Who shares these topics?": travels through the overlay. A node that
    /// shares a topic and has room dials the origin; otherwise it forwards
    /// the request to its peers not yet visited, with `ttl - 1`.
    Request {
        /// The origin's request id; with `origin`, the key each node handles at most once.
        id: u64,
        /// The origin's node id.
        origin: u128,
        /// Where the origin listens (none: it cannot be dialed back).
        #[serde(borrow)]
        listen: Option<ListenAddr<'a>>,
        /// The origin's topics without a peer.
        #[serde(borrow)]
        topics: Vec<&'a str>,
        /// Hops left; a node forwards only while it is above 1.
        ttl: u8,
        /// Nodes that already have the request (bounded by `max_visited`).
        visited: Vec<u128>,
    },
    /// The answer of a node the origin asked directly: peers it learnt of
    /// (from their own requests) that share some of the origin's topics.
    Referral {
        /// The referred peers.
        #[serde(borrow)]
        peers: Vec<Referred<'a>>,
    },
    /// A relayed message on `topic`; the payload follows the header. Its
    /// identity is `(origin, epoch, topic, seq)`, assigned by the origin.
    Relay {
        /// The topic.
        topic: &'a str,
        /// The node that published it.
        origin: u128,
        /// The origin's boot epoch (tells its restarts apart).
        epoch: u32,
        /// The origin's sequence number on this topic, from 1.
        seq: u64,
        /// Relays it went through so far.
        hops: u8,
    },
}

/// A peer named in a [`DiscoveryFrame::Referral`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Referred<'a> {
    /// Its node id.
    pub id: u128,
    /// Where it listens.
    #[serde(borrow)]
    pub listen: ListenAddr<'a>,
    /// The topics it asked for.
    #[serde(borrow)]
    pub topics: Vec<&'a str>,
}
