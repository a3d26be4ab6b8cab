//! What the node tells its driver (actions) and its application (events).

use crate::id::{ConnId, NodeId, PeerAddr, Topic};
use crate::wire::{CloseCode, WireError};
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// A connected peer, as its handshake introduced it. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's id.
    pub id: NodeId,
    /// The peer's name.
    pub name: Arc<str>,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:#})", self.name, self.id)
    }
}

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

/// A dial target registered with [`Node::connect`](crate::Node::connect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(pub u64);

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer said goodbye with this code and reason.
    Remote {
        /// The peer's close code.
        code: CloseCode,
        /// The peer's reason.
        reason: String,
    },
    /// This node closed it (disconnect or shutdown).
    Local(CloseCode),
    /// Nothing was received for the liveness timeout: the peer is silent or gone.
    LivenessTimeout,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// The peer sent bytes this node cannot accept; the connection was refused.
    Protocol(ProtocolError),
    /// The socket failed or reached end of stream without a goodbye.
    Io(String),
    /// The node's connection limit was reached.
    TooManyConnections,
    /// A second connection to a peer that is already connected; the other one stays.
    Duplicate,
}

impl CloseReason {
    /// The close code that describes this reason.
    pub fn code(&self) -> CloseCode {
        match self {
            CloseReason::Remote { code, .. } | CloseReason::Local(code) => *code,
            CloseReason::LivenessTimeout | CloseReason::Io(_) => CloseCode::ABNORMAL,
            CloseReason::HandshakeTimeout => CloseCode::ABNORMAL,
            CloseReason::Protocol(e) => e.close_code(),
            CloseReason::TooManyConnections | CloseReason::Duplicate => CloseCode::GOING_AWAY,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Remote { code, reason } => write!(f, "peer closed: {code}: {reason}"),
            CloseReason::Local(code) => write!(f, "closed by this node: {code}"),
            CloseReason::LivenessTimeout => write!(f, "liveness timeout: peer silent"),
            CloseReason::HandshakeTimeout => write!(f, "handshake timeout"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::Io(e) => write!(f, "connection lost: {e}"),
            CloseReason::TooManyConnections => write!(f, "connection limit reached"),
            CloseReason::Duplicate => write!(f, "duplicate connection to the same peer"),
        }
    }
}

/// A peer broke the protocol. The connection is closed with a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The byte stream is not valid estafeta framing.
    Wire(WireError),
    /// The first frame was not a Hello, or a Hello came twice.
    UnexpectedFrame(&'static str),
    /// A field broke a configured limit.
    Limit(String),
}

impl ProtocolError {
    /// The close code sent to the peer for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::Wire(WireError::BadMagic(_))
            | ProtocolError::Wire(WireError::UnsupportedVersion { .. })
            | ProtocolError::Wire(WireError::FrameTooLarge { .. })
            | ProtocolError::Limit(_) => CloseCode::UNSUPPORTED_DATA,
            _ => CloseCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Wire(e) => write!(f, "{e}"),
            ProtocolError::UnexpectedFrame(what) => write!(f, "unexpected frame: {what}"),
            ProtocolError::Limit(what) => write!(f, "limit exceeded: {what}"),
        }
    }
}

/// Why messages were dropped by policy (always counted, always reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The peer's queue was full and the policy is [`FullQueuePolicy::DropForFullPeers`](crate::FullQueuePolicy).
    QueueFull,
    /// The connection closed with these messages still queued for it (not
    /// yet handed to the driver).
    Disconnected,
    /// A message arrived for a topic this node no longer subscribes to.
    NotSubscribed,
    /// Messages received on a connection that ended, or that a newer
    /// connection from the same peer superseded, before they were processed
    /// (the application was behind). `Disconnected` is the sending side.
    Unprocessed,
}

/// What happened, for the application. Drain with [`Node::poll_event`](crate::Node::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A handshake completed: the peer is connected.
    PeerUp {
        /// The peer.
        peer: PeerInfo,
        /// Its connection.
        conn: ConnId,
        /// The dial target this connection came from, if this node dialed.
        target: Option<TargetId>,
    },
    /// A connection dialed for `target` completed its handshake (also after
    /// every reconnect). [`Event::PeerUp`] comes first when the peer is new.
    Connected {
        /// The dial target.
        target: TargetId,
        /// The peer reached.
        peer: PeerInfo,
    },
    /// A connected peer went away.
    PeerDown {
        /// The peer.
        peer: PeerInfo,
        /// Why.
        reason: CloseReason,
    },
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
    /// A connection was refused or cut because the peer broke the protocol.
    /// It is also counted in [`Stats::malformed`](crate::Stats).
    ProtocolViolation {
        /// The connection.
        conn: ConnId,
        /// The peer, if its handshake had completed.
        peer: Option<PeerInfo>,
        /// What was wrong.
        error: ProtocolError,
    },
    /// A dial to a target failed, or its connection was lost; another dial is
    /// scheduled after `retry_in`, or none if the attempts in a row are used
    /// up (then [`Event::GaveUp`] follows). Only a connection that stayed up
    /// for a liveness timeout resets the count.
    DialFailed {
        /// The target.
        target: TargetId,
        /// Its address.
        addr: PeerAddr,
        /// Why.
        reason: CloseReason,
        /// When the next attempt is made.
        retry_in: Option<std::time::Duration>,
    },
    /// A dial target used up its attempts; it is no longer dialed.
    GaveUp {
        /// The target.
        target: TargetId,
        /// Its address.
        addr: PeerAddr,
    },
    /// Queue space freed after a publish was refused with `Full`: retry now.
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
    /// [`Node::close`](crate::Node::close) finished: every connection is closed.
    Closed,
}

impl Event {
    /// Messages this event reports as dropped (0 unless it is [`Event::Dropped`]),
    /// so counters can be checked against events:
    ///
    /// ```
    /// # use estafeta_core::{Event, DropReason};
    /// let evs = [Event::Writable, Event::Dropped { peer: None, count: 3, reason: DropReason::QueueFull }];
    /// assert_eq!(evs.iter().map(Event::dropped).sum::<u64>(), 3);
    /// ```
    pub fn dropped(&self) -> u64 {
        match self {
            Event::Dropped { count, .. } => *count,
            _ => 0,
        }
    }
}

/// What the driver must do. Drain with [`Node::poll_action`](crate::Node::poll_action).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a TCP connection to `addr`, then report it with
    /// [`Node::handle_connected`](crate::Node::handle_connected) or
    /// [`Node::handle_closed`](crate::Node::handle_closed).
    Dial {
        /// The connection id the node assigned.
        conn: ConnId,
        /// Where to connect.
        addr: PeerAddr,
    },
    /// Close the socket once the bytes already transmitted are written. The node
    /// has forgotten `conn`; do not report it again.
    Close {
        /// The connection.
        conn: ConnId,
    },
}
