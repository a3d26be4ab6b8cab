//! What the pub/sub plane tells the application.

use crate::event::PeerInfo;
use crate::id::{NodeId, Topic};
use bytes::Bytes;

/// A received message: its topic, who sent it, and the payload.
///
/// The payload shares the connection's read buffer; no copy was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published on.
    pub topic: Topic,
    /// The connected peer it arrived from, so the receiver can reply with a
    /// send to that peer. For a relayed message this is the neighbour it
    /// came through; its origin is in [`Message::relayed`].
    pub from: PeerInfo,
    /// The payload bytes.
    pub payload: Bytes,
    /// For a message published with a relay identity
    /// ([`Discovery::publish`](crate::Discovery::publish)): the node that
    /// published it and its place in that node's sequence. `None` for a
    /// plain publish (its origin is `from`).
    pub relayed: Option<Relayed>,
}

impl Message {
    /// The node that published the message: the relay origin for a relayed
    /// message, else the sender. Reply to it with a send to that peer if it
    /// is connected ([`SendMode::To`](crate::SendMode::To)), or with a
    /// relayed publish on a topic it subscribes to.
    pub fn origin(&self) -> NodeId {
        self.relayed.as_ref().map_or(self.from.id, |r| r.origin)
    }
}

/// Where a relayed message comes from: its identity, assigned by its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relayed {
    /// The node that published it (not necessarily connected to this one).
    pub origin: NodeId,
    /// The origin's boot epoch (tells its restarts apart).
    pub epoch: u32,
    /// The origin's sequence number on the topic, from 1: per origin,
    /// messages are delivered in increasing order.
    pub seq: u64,
    /// Relays it went through before this node (0: it came from the origin).
    pub hops: u8,
}

/// Why messages were dropped by policy (always counted, always reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The peer's queue was full and the policy is [`FullQueuePolicy::DropForFullPeers`](crate::FullQueuePolicy).
    QueueFull,
    /// The session ended with these messages still queued for the peer (not
    /// yet handed to the driver).
    Disconnected,
    /// A message arrived for a topic this node no longer subscribes to.
    NotSubscribed,
    /// The peer unsubscribed from the topic while these messages were
    /// queued for it, not yet handed to the driver (the sending side; the
    /// peer would have dropped them as `NotSubscribed`).
    PeerUnsubscribed,
    /// Messages received on a connection that ended, or that a newer
    /// connection from the same peer superseded, before they were processed
    /// (the application was behind). `Disconnected` is the sending side.
    Unprocessed,
    /// The sending peer may not publish on the topic to this node (its
    /// per-topic permissions, [`SecurityConfig::permissions`](crate::SecurityConfig)).
    NotPermitted,
}

/// What the pub/sub plane tells the application ([`Event::PubSub`](crate::Event::PubSub)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubEvent {
    /// A message arrived on a subscribed topic.
    Message(Message),
    /// Messages arrived together on a subscribed topic, from one peer, in
    /// order: frames that came in one read, handed out as one event (each
    /// is counted and handled as a [`PubSubEvent::Message`] would be).
    Messages(super::MessageRun),
    /// A peer subscribed to a topic.
    Subscribed {
        /// The peer.
        peer: PeerInfo,
        /// The topic.
        topic: Topic,
    },
    /// A peer unsubscribed from a topic.
    Unsubscribed {
        /// The peer.
        peer: PeerInfo,
        /// The topic.
        topic: Topic,
    },
    /// Queue space or credit freed after a publish was refused with `Full`: retry now.
    Writable,
    /// [`FullQueuePolicy::DropOldest`](crate::FullQueuePolicy::DropOldest):
    /// `count` messages queued for `peer` on `topic` were replaced by newer
    /// ones and never sent. Reported when the marker that tells the peer
    /// leaves; `seq` is the marker's sequence number in a resumable session,
    /// the same the peer's [`PubSubEvent::Skipped`] names. Counted in
    /// [`PubSubStats::dropped`](crate::PubSubStats) and
    /// [`PubSubStats::overwritten`](crate::PubSubStats).
    Overwritten {
        /// The subscriber.
        peer: PeerInfo,
        /// The topic.
        topic: Topic,
        /// How many messages.
        count: u64,
        /// The marker's sequence number in the session (`None` if the
        /// session does not resume).
        seq: Option<u64>,
    },
    /// The peer's full queue overwrote `count` of its messages on `topic`
    /// to this node (its [`FullQueuePolicy::DropOldest`](crate::FullQueuePolicy::DropOldest)):
    /// a gap in what it sent, reported by the peer as
    /// [`PubSubEvent::Overwritten`] with the same `seq`. Counted in
    /// [`PubSubStats::skipped_by_peer`](crate::PubSubStats).
    Skipped {
        /// The publisher.
        peer: PeerInfo,
        /// The topic.
        topic: Topic,
        /// How many messages.
        count: u64,
        /// The marker's sequence number in the session (`None` if the
        /// session does not resume).
        seq: Option<u64>,
    },
    /// Messages were dropped by policy.
    Dropped {
        /// The peer concerned, if any.
        peer: Option<PeerInfo>,
        /// How many.
        count: u64,
        /// Why.
        reason: DropReason,
    },
}
