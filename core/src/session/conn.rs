//! One connection: its phase (which carries the phase's data), liveness
//! stamps, read buffer and the session's own pending control frames.

use crate::event::{CloseReason, PeerInfo, TargetId};
use crate::time::Timestamp;
use crate::wire::Capabilities;
use bytes::BytesMut;

/// What a connection knows of its peer once the handshake is complete.
#[derive(Clone, Debug)]
pub(crate) struct Open {
    pub(crate) peer: PeerInfo,
    /// The planes both sides announced.
    pub(crate) caps: Capabilities,
}

/// Where a connection is in its life.
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    /// Waiting for the driver to report the TCP connect.
    Dialing,
    /// Socket open; waiting for the peer's preamble.
    AwaitPreamble,
    /// Preamble checked (this version agreed); waiting for the peer's Hello.
    AwaitHello,
    /// Handshake complete.
    Open(Open),
}

/// A graceful close in progress.
#[derive(Clone, Debug)]
pub(crate) enum Closing {
    /// Data still flushes; the goodbye follows once every source is empty.
    Flushing(CloseReason),
    /// The goodbye is queued (or written); the connection goes once its
    /// output is empty.
    Goodbye(CloseReason),
    /// The close wait: the goodbye is out and the socket half-closed
    /// (`Action::HalfClose`). Nothing more is sent; the peer's bytes are
    /// still read and processed until it closes too, or until `until`.
    CloseWait {
        /// Why the connection is closing.
        reason: CloseReason,
        /// When the wait is over regardless.
        until: Timestamp,
    },
}

impl Closing {
    pub(crate) fn reason(&self) -> &CloseReason {
        match self {
            Closing::Flushing(r) | Closing::Goodbye(r) | Closing::CloseWait { reason: r, .. } => r,
        }
    }
}

/// The session's control frames for one connection, kept as state and
/// encoded when the driver pulls bytes: bounded by construction.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) preamble: bool,
    pub(crate) hello: bool,
    pub(crate) heartbeat: bool,
    /// Set when the goodbye must go out next (after the preamble and Hello).
    pub(crate) goodbye: bool,
}

impl Control {
    pub(crate) fn is_empty(&self) -> bool {
        !(self.preamble || self.hello || self.heartbeat || self.goodbye)
    }
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) target: Option<TargetId>,
    pub(crate) phase: Phase,
    pub(crate) closing: Option<Closing>,
    pub(crate) opened_at: Timestamp,
    /// When the peer's Hello was read (`Timestamp::MAX` before).
    pub(crate) hello_at: Timestamp,
    pub(crate) last_recv: Timestamp,
    /// On a secure connection: bytes read since a record last opened or
    /// they last counted as the peer being heard (see
    /// `PARTIAL_RECORD_LIVENESS`).
    pub(crate) unopened: usize,
    pub(crate) last_send: Timestamp,
    /// No heartbeat before this: one was due while the connection had
    /// output waiting (a blocked socket), which needs none.
    pub(crate) hb_retry: Timestamp,
    pub(crate) rx: BytesMut,
    pub(crate) control: Control,
    /// The data source the next pull starts with (round-robin across pulls).
    pub(crate) next_source: usize,
    /// The node's session epoch when the socket opened: a connection opened
    /// before the node last lost its peer belongs to an older session.
    pub(crate) epoch: u64,
    /// The secure channel, on a secure connection.
    pub(crate) secure: Option<Box<crate::secure::SecureConn>>,
    /// A dial not connected by then is abandoned (`DialerConfig::dial_timeout`).
    pub(crate) dial_by: Timestamp,
    /// This side's Hello nonce, and the peer's (see [`crate::resume`]).
    pub(crate) nonce: u64,
    pub(crate) peer_nonce: u64,
    /// The peer's incarnation, from its Hello (0 without `RESUME`).
    pub(crate) peer_inc: u64,
    /// The session this side's Hello claims (for which peer), once decided.
    pub(crate) claim: Option<(crate::id::NodeId, crate::wire::ResumeClaim)>,
    /// The session resumed on this connection (not started on it).
    pub(crate) resumed: bool,
    /// The last ack owed to the peer, sent before the goodbye that answers
    /// its own (the session already ended).
    pub(crate) final_ack: Option<u64>,
    /// A graceful close began: by then its whole budget
    /// (`close_timeout`) is spent. In a resumable session the goodbye waits
    /// for the peer's acks until then, and the close wait ends then.
    pub(crate) close_by: Option<Timestamp>,
    /// `close_by` passed before every ack came: the goodbye leaves anyway.
    pub(crate) acks_overdue: bool,
}

impl Conn {
    pub(crate) fn new(target: Option<TargetId>, phase: Phase, now: Timestamp) -> Self {
        Conn {
            target,
            phase,
            closing: None,
            opened_at: now,
            hello_at: Timestamp::MAX,
            last_recv: now,
            unopened: 0,
            last_send: now,
            hb_retry: now,
            rx: BytesMut::new(),
            control: Control::default(),
            next_source: 0,
            epoch: 0,
            secure: None,
            dial_by: Timestamp::MAX,
            nonce: 0,
            peer_nonce: 0,
            peer_inc: 0,
            claim: None,
            resumed: false,
            close_by: None,
            acks_overdue: false,
            final_ack: None,
        }
    }

    /// The id of a session started on this connection: both Hellos' nonces
    /// (0 without `RESUME`; never 0 with it).
    pub(crate) fn new_sid(&self) -> u64 {
        if self.peer_inc == 0 {
            0
        } else {
            (self.nonce ^ self.peer_nonce).max(1)
        }
    }

    /// The peer, once the handshake is complete.
    pub(crate) fn peer(&self) -> Option<&PeerInfo> {
        match &self.phase {
            Phase::Open(o) => Some(&o.peer),
            _ => None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    pub(crate) fn is_dialing(&self) -> bool {
        matches!(self.phase, Phase::Dialing)
    }

    /// True during the close wait: the goodbye is out, the socket half-closed.
    pub(crate) fn in_close_wait(&self) -> bool {
        matches!(self.closing, Some(Closing::CloseWait { .. }))
    }

    /// True once the peer broke the protocol, or the connection is refused
    /// at the connection limit: nothing more it sends is read.
    pub(crate) fn refused(&self) -> bool {
        matches!(
            self.closing.as_ref().map(Closing::reason),
            Some(CloseReason::Protocol(_) | CloseReason::TooManyConnections)
        )
    }
}
