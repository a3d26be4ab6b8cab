//! What the streams plane tells the application, and its close codes.

use crate::event::PeerInfo;
use crate::id::Topic;
use crate::wire::CloseCode;
use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// A stream, as this node knows it: unique among all streams of this node
/// (both roles), never reused. Not the id on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Which end of a stream this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// This node opened it and receives the replies.
    Consumer,
    /// A peer opened it; this node writes the replies.
    Producer,
}

/// Close codes of the streams plane, beyond those connections use
/// ([`CloseCode::NORMAL`] 1000, `GOING_AWAY` 1001, `UNSUPPORTED_DATA` 1003,
/// `ABNORMAL` 1006, `TRY_AGAIN_LATER` 1013 over a limit, `BAD_REQUEST` 4000,
/// `INTERNAL_ERROR` 5000).
impl CloseCode {
    /// The consumer cancelled the stream (it dropped it).
    pub const CANCELLED: CloseCode = CloseCode(4001);
    /// The consumer's deadline passed.
    pub const DEADLINE_EXCEEDED: CloseCode = CloseCode(4008);
}

/// How a stream ended: its code and a text for people. `remote` is true if
/// the other end decided it (a Close or Cancel frame arrived), false if this
/// node did (its application, its deadline, its node closing, or a lost
/// connection, which is always 1006 and never sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEnd {
    /// The close code.
    pub code: CloseCode,
    /// Why, for people.
    pub text: String,
    /// The other end decided it.
    pub remote: bool,
}

/// What the streams plane tells the application ([`Event::Stream`](crate::Event::Stream)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A peer opened a stream on a topic this node serves: write replies
    /// with [`Streams::write`](crate::Streams::write), end it with
    /// [`Streams::close`](crate::Streams::close).
    Request {
        /// The new stream (this node is its producer).
        stream: StreamId,
        /// The consumer.
        peer: PeerInfo,
        /// The topic.
        topic: Topic,
        /// The request payload.
        request: Bytes,
        /// The time the consumer still waits, if it set a deadline.
        deadline: Option<Duration>,
    },
    /// A reply message on a stream this node opened.
    Data {
        /// The stream (this node is its consumer).
        stream: StreamId,
        /// The message.
        payload: Bytes,
    },
    /// The stream ended. Exactly one per stream, and nothing after it.
    Closed {
        /// The stream.
        stream: StreamId,
        /// This node's end of it.
        role: Role,
        /// How it ended.
        end: StreamEnd,
    },
    /// A producer stream whose write was refused for want of credit has
    /// credit again.
    Writable {
        /// The stream.
        stream: StreamId,
    },
    /// A peer started or stopped serving a topic.
    Serving {
        /// The peer.
        peer: PeerInfo,
        /// The topic.
        topic: Topic,
        /// True: it serves it now; false: no longer.
        serving: bool,
    },
}

/// Why a write on a producer stream was refused. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No credit left now: wait for [`StreamEvent::Writable`] and retry.
    #[error("no credit: the consumer has not taken what was sent")]
    NoCredit,
    /// The stream ended (its [`StreamEvent::Closed`] says how), or is not a
    /// producer stream of this node.
    #[error("stream ended")]
    Ended,
    /// The message exceeds `StreamsConfig::max_message_size`.
    #[error("message of {size} bytes exceeds max_message_size {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
}
