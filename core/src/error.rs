//! Errors returned by commands. Each says what happened to the node's state.

use crate::id::{PeerRef, Topic};
use std::fmt;

/// Why a publish was refused. In every case **nothing was queued**: the node's
/// state is as it was before the call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// No connected peer subscribes to the topic.
    NoSubscribers(Topic),
    /// The queue of a subscriber (every mode) or of all subscribers (round-robin),
    /// or of the named peer, is full. Wait for [`Event::Writable`](crate::Event::Writable) and retry.
    Full(Topic),
    /// The named peer is not connected.
    UnknownPeer(PeerRef),
    /// More than one connected peer has this name; address it by id.
    AmbiguousPeer(String),
    /// The named peer does not subscribe to the topic.
    NotSubscribed {
        /// The peer.
        peer: PeerRef,
        /// The topic.
        topic: Topic,
    },
    /// The frame would exceed the maximum frame size.
    TooLarge {
        /// Encoded frame size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The topic name is empty or longer than the limit.
    BadTopic(String),
    /// The node is closing or closed.
    Closed,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::NoSubscribers(t) => write!(f, "no connected subscriber for topic {t:?}"),
            PublishError::Full(t) => write!(f, "outbound queue full for topic {t:?}; retry when writable"),
            PublishError::UnknownPeer(p) => write!(f, "peer {p} is not connected"),
            PublishError::AmbiguousPeer(n) => write!(f, "several connected peers are named {n:?}"),
            PublishError::NotSubscribed { peer, topic } => {
                write!(f, "peer {peer} does not subscribe to {topic:?}")
            }
            PublishError::TooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the frame limit of {max}")
            }
            PublishError::BadTopic(why) => write!(f, "bad topic: {why}"),
            PublishError::Closed => write!(f, "node is closed"),
        }
    }
}

impl std::error::Error for PublishError {}

impl PublishError {
    /// True if waiting for queue space and retrying can succeed.
    pub fn is_full(&self) -> bool {
        matches!(self, PublishError::Full(_))
    }
}

/// Why a subscribe, unsubscribe or connect was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The topic name is empty or longer than the limit.
    BadTopic(String),
    /// The node is closing or closed.
    Closed,
    /// The connection limit is reached.
    TooManyConnections,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::BadTopic(why) => write!(f, "bad topic: {why}"),
            CommandError::Closed => write!(f, "node is closed"),
            CommandError::TooManyConnections => write!(f, "connection limit reached"),
        }
    }
}

impl std::error::Error for CommandError {}
