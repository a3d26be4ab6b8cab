//! What the node tells its driver (actions) and its application (events).

use crate::id::{ConnId, NodeId, PeerAddr};
use crate::membership::MembershipEvent;
use crate::pubsub::PubSubEvent;
use crate::streams::StreamEvent;
use crate::wire::{CloseCode, WireError};
use std::collections::VecDeque;
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

/// A dial target registered with [`Node::connect`](crate::Node::connect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(pub u64);

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer said goodbye with this code and reason.
    #[error("peer closed: {code}: {reason}")]
    Remote {
        /// The peer's close code.
        code: CloseCode,
        /// The peer's reason.
        reason: String,
    },
    /// This node closed it (disconnect or shutdown).
    #[error("closed by this node: {0}")]
    Local(CloseCode),
    /// Nothing was received for the liveness timeout: the peer is silent or gone.
    #[error("liveness timeout: peer silent")]
    LivenessTimeout,
    /// The handshake did not finish within the handshake timeout.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The peer sent bytes this node cannot accept; the connection was refused.
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    /// The socket failed or reached end of stream without a goodbye.
    #[error("connection lost: {0}")]
    Io(String),
    /// The node's connection limit was reached.
    #[error("connection limit reached: the node takes no more connections now")]
    TooManyConnections,
    /// A second connection to a peer that is already connected; the other one stays.
    #[error("duplicate connection to the same peer")]
    Duplicate,
    /// A dial did not connect within `DialerConfig::dial_timeout`; it was
    /// abandoned and the target is redialed on the usual backoff.
    #[error("dial timed out")]
    DialTimeout,
    /// The session could not resume (see [`crate::resume`]): the peer stayed
    /// away past `resume_window`, restarted, or no longer held the session.
    #[error("session ended: {0}")]
    Session(crate::resume::LossReason),
}

impl CloseReason {
    /// The close code that describes this reason.
    pub fn code(&self) -> CloseCode {
        match self {
            CloseReason::Remote { code, .. } | CloseReason::Local(code) => *code,
            CloseReason::LivenessTimeout | CloseReason::Io(_) => CloseCode::ABNORMAL,
            CloseReason::HandshakeTimeout | CloseReason::DialTimeout => CloseCode::ABNORMAL,
            CloseReason::Protocol(e) => e.close_code(),
            CloseReason::TooManyConnections => CloseCode::TRY_AGAIN_LATER,
            CloseReason::Duplicate => CloseCode::GOING_AWAY,
            CloseReason::Session(_) => CloseCode::ABNORMAL,
        }
    }
}

/// A peer broke the protocol. The connection is closed with a reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The byte stream is not valid estafeta framing.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The first frame was not a Hello, or a Hello came twice.
    #[error("unexpected frame: {0}")]
    UnexpectedFrame(&'static str),
    /// A field broke a configured limit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A frame of a plane this node did not announce in its Hello.
    #[error("frame of a plane this node did not announce: {0}")]
    NotAnnounced(&'static str),
    /// The peer sent past the credit this node granted it.
    #[error("credit exceeded: {0}")]
    CreditExceeded(String),
    /// The peer proved its key but is not admitted (allow list, pinned id),
    /// or its Hello claims an id other than its key's. Code 4003.
    #[error("{0}")]
    Unauthorized(String),
    /// The secure handshake failed (bad message, bad identity signature,
    /// wrong network key). Code 4004.
    #[error("handshake failed: {0}")]
    HandshakeFailed(String),
    /// A record did not decrypt: the bytes were changed, cut, replayed or reordered.
    #[error("{0}")]
    DecryptFailed(String),
    /// One side wants plaintext and the other the secure transport. Code 1003.
    #[error("security mode mismatch: {0}")]
    SecurityMismatch(String),
    /// A sequence number, ack or resume point that cannot be right (a
    /// skipped message, an ack of messages never sent).
    #[error("bad sequence: {0}")]
    Sequence(String),
}

impl ProtocolError {
    /// The close code sent to the peer for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::Wire(WireError::BadMagic(_))
            | ProtocolError::Wire(WireError::UnsupportedVersion { .. })
            | ProtocolError::Wire(WireError::FrameTooLarge { .. })
            | ProtocolError::NotAnnounced(_)
            | ProtocolError::SecurityMismatch(_)
            | ProtocolError::Limit(_) => CloseCode::UNSUPPORTED_DATA,
            ProtocolError::Unauthorized(_) => crate::secure::UNAUTHORIZED,
            ProtocolError::HandshakeFailed(_) => crate::secure::HANDSHAKE_FAILED,
            _ => CloseCode::BAD_REQUEST,
        }
    }
}

/// What happened, for the application. Drain with [`Node::poll_event`](crate::Node::poll_event).
///
/// The session's own events are variants here; each plane has one variant
/// holding its own enum. Not `#[non_exhaustive]` on purpose: a driver that
/// matches on it fails to compile until it handles a new plane's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed: the peer is connected.
    PeerUp {
        /// The peer.
        peer: PeerInfo,
        /// Its connection.
        conn: ConnId,
        /// The dial target this connection came from, if this node dialed.
        target: Option<TargetId>,
        /// True if the peer's id is proven *and* it was admitted by an allow
        /// list, a pinned id or a network key. False on a plaintext
        /// connection, and on a secure one admitted with none of these:
        /// encrypted, but a man in the middle is not excluded.
        authenticated: bool,
    },
    /// The session with a peer ended: a graceful close, an error, or (with
    /// [`Capabilities::RESUME`](crate::Capabilities::RESUME)) a lost
    /// connection not resumed within `resume_window`. A lost connection
    /// alone is [`SessionEvent::Suspended`](crate::resume::SessionEvent::Suspended).
    PeerDown {
        /// The peer.
        peer: PeerInfo,
        /// Why.
        reason: CloseReason,
    },
    /// A connection was refused or cut because the peer broke the protocol.
    /// It is also counted in [`SessionStats::malformed`](crate::SessionStats).
    ProtocolViolation {
        /// The connection.
        conn: ConnId,
        /// The peer, if its handshake had completed.
        peer: Option<PeerInfo>,
        /// What was wrong.
        error: ProtocolError,
    },
    /// The peer refused a connection before it was up: a Goodbye in place
    /// of its Hello, or a refusal during the secure handshake (codes 4003
    /// unauthorized, 4004 handshake failed, 1003 unsupported data such as a
    /// security mode mismatch). Counted in
    /// [`SecurityStats::refused_by_peer`](crate::SecurityStats).
    Refused {
        /// The connection.
        conn: ConnId,
        /// The peer's close code.
        code: CloseCode,
        /// The peer's reason.
        reason: String,
    },
    /// Dial targets: connected, failed, given up.
    Dial(DialEvent),
    /// Topics: messages, subscriptions, room to publish, drops.
    PubSub(PubSubEvent),
    /// Streams: requests, replies, ends, credit, who serves what.
    Stream(StreamEvent),
    /// Groups: assignments, settling, lease lost; members joining and leaving.
    Membership(MembershipEvent),
    /// Discovery: topics paired and unpaired, relay losses, discovered dials.
    Discovery(crate::discovery::DiscoveryEvent),
    /// File transfers: offers, progress, files received or delivered, failures.
    Transfer(crate::transfer::TransferEvent),
    /// Sessions that outlive connections: suspended, resumed, ended with
    /// the sequence numbers possibly lost.
    Session(crate::resume::SessionEvent),
    /// [`Node::close`](crate::Node::close) finished: every connection is closed.
    Closed,
}

impl Event {
    /// Messages this event reports as dropped (0 unless it is
    /// [`PubSubEvent::Dropped`] or [`PubSubEvent::Overwritten`]), so
    /// counters can be checked against events:
    ///
    /// ```
    /// # use estafeta_core::{Event, PubSubEvent, DropReason};
    /// let evs = [
    ///     Event::PubSub(PubSubEvent::Writable),
    ///     Event::PubSub(PubSubEvent::Dropped { peer: None, count: 3, reason: DropReason::QueueFull }),
    /// ];
    /// assert_eq!(evs.iter().map(Event::dropped).sum::<u64>(), 3);
    /// ```
    pub fn dropped(&self) -> u64 {
        match self {
            Event::PubSub(PubSubEvent::Dropped { count, .. } | PubSubEvent::Overwritten { count, .. }) => *count,
            _ => 0,
        }
    }
}

/// What happened to a dial target registered with [`Node::connect`](crate::Node::connect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialEvent {
    /// A connection dialed for `target` completed its handshake (also after
    /// every reconnect). [`Event::PeerUp`] comes first when the peer is new.
    Connected {
        /// The dial target.
        target: TargetId,
        /// The peer reached.
        peer: PeerInfo,
    },
    /// A dial to a target failed, or its connection was lost; another dial is
    /// scheduled after `retry_in`, or none if the attempts in a row are used
    /// up (then [`DialEvent::GaveUp`] follows). Only a connection that stayed
    /// up for a liveness timeout resets the count.
    Failed {
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
}

/// What the driver must do. Drain with [`Node::poll_action`](crate::Node::poll_action).
///
/// Not `#[non_exhaustive]` on purpose: every driver handles every action.
/// I/O a plane needs (file reads and writes) will be required [`Sink`](crate::Sink)
/// methods, not variants here.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Close the socket once the bytes already transmitted are written, or
    /// abandon the dial if it has not connected yet. The node has forgotten
    /// `conn`; do not report it again.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Once the bytes already transmitted are written, shut the socket down
    /// for writing (TCP `shutdown(Write)`: the peer reads the end of the
    /// stream after the goodbye) but keep it open and keep reading it,
    /// reporting its input and its end as usual. The node sends nothing more
    /// on `conn` and ends it with [`Action::Close`] once the peer closed too,
    /// or when the close wait (`SessionConfig::close_timeout`) is over.
    /// Closing the socket at once instead would make its kernel answer the
    /// peer's next bytes (a heartbeat) with a reset, which throws away what
    /// is still unsent in the kernel.
    HalfClose {
        /// The connection.
        conn: ConnId,
    },
}

/// Payload bytes an event holds: a message, a stream request or reply.
fn payload_len(ev: &Event) -> usize {
    match ev {
        Event::PubSub(PubSubEvent::Message(m)) => m.payload.len(),
        Event::PubSub(PubSubEvent::Messages(run)) => run.payload_bytes() as usize,
        Event::Stream(StreamEvent::Request { request: p, .. } | StreamEvent::Data { payload: p, .. }) => p.len(),
        _ => 0,
    }
}

/// The node's pending events, with the payload bytes they hold.
#[derive(Debug, Default)]
pub(crate) struct Events {
    queue: VecDeque<Event>,
    bytes: usize,
}

impl Events {
    pub(crate) fn push(&mut self, ev: Event) {
        self.bytes += payload_len(&ev);
        self.queue.push_back(ev);
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        // Measured where it lies, not after the move (see `Node::poll_event`).
        self.bytes -= payload_len(self.queue.front()?);
        self.queue.pop_front()
    }

    pub(crate) fn front(&self) -> Option<&Event> {
        self.queue.front()
    }

    pub(crate) fn back_mut(&mut self) -> Option<&mut Event> {
        self.queue.back_mut()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}
