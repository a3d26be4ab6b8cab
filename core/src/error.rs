//! Errors returned by commands. Each says what happened to the node's state.

use crate::id::{PeerRef, Topic};

/// Why a publish was refused. In every case **nothing was queued**: the node's
/// state is as it was before the call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No connected peer subscribes to the topic.
    #[error("no connected subscriber for topic {0:?}")]
    NoSubscribers(Topic),
    /// The queue of a subscriber (every mode), of the named peer, or for
    /// round-robin the credit or queue of every subscriber, is full. Wait for
    /// [`PubSubEvent::Writable`](crate::PubSubEvent::Writable) and retry.
    #[error("outbound queue full for topic {0:?}; retry when writable")]
    Full(Topic),
    /// The named peer is not connected.
    #[error("peer {0} is not connected")]
    UnknownPeer(PeerRef),
    /// More than one connected peer has this name; address it by id.
    #[error("several connected peers are named {0:?}")]
    AmbiguousPeer(String),
    /// The named peer does not subscribe to the topic.
    #[error("peer {peer} does not subscribe to {topic:?}")]
    NotSubscribed {
        /// The peer.
        peer: PeerRef,
        /// The topic.
        topic: Topic,
    },
    /// The frame would exceed the maximum frame size.
    #[error("message of {size} bytes exceeds the frame limit of {max}")]
    TooLarge {
        /// Encoded frame size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The topic name is empty or longer than the limit.
    #[error("bad topic: {0}")]
    BadTopic(String),
    /// The node is closing or closed.
    #[error("node is closed")]
    Closed,
}

impl PublishError {
    /// True if waiting for queue space and retrying can succeed.
    pub fn is_full(&self) -> bool {
        matches!(self, PublishError::Full(_))
    }
}

/// Why a subscribe, unsubscribe or connect was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The topic name is empty or longer than the limit.
    #[error("bad topic: {0}")]
    BadTopic(String),
    /// The node is closing or closed.
    #[error("node is closed")]
    Closed,
    /// The connection limit is reached.
    #[error("connection limit reached")]
    TooManyConnections,
    /// The group name is empty or longer than `membership.max_group_len`.
    #[error("bad group: {0}")]
    BadGroup(String),
    /// This node is already a member of the group.
    #[error("already a member of {0:?}")]
    AlreadyJoined(String),
    /// This node is a member of `membership.max_joined` groups already.
    #[error("member of too many groups")]
    TooManyGroups,
}
