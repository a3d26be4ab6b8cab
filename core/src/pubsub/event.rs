//! What the pub/sub plane tells the application.

use crate::event::PeerInfo;
use crate::id::Topic;
use bytes::Bytes;

/// A received message: its topic, who sent it, and the payload.
///
/// The payload shares the connection's read buffer; no copy was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published on.
    pub topic: Topic,
    /// The sender, so the receiver can reply with a send to that peer.
    pub from: PeerInfo,
    /// The payload bytes.
    pub payload: Bytes,
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
