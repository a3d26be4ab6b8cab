//! The state of one connection.

use crate::event::{CloseReason, PeerInfo, TargetId};
use crate::id::{ConnId, Topic};
use crate::outbound::Outbound;
use crate::time::Timestamp;
use bytes::BytesMut;
use std::collections::BTreeSet;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the driver to report the TCP connect.
    Dialing,
    /// Socket open; waiting for the peer's preamble.
    AwaitPreamble,
    /// Preamble checked; waiting for the peer's Hello.
    AwaitHello,
    /// Handshake complete.
    Open,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) target: Option<TargetId>,
    pub(crate) phase: Phase,
    pub(crate) peer: Option<PeerInfo>,
    /// Topics the peer announced on this connection.
    pub(crate) peer_subs: BTreeSet<Topic>,
    pub(crate) opened_at: Timestamp,
    pub(crate) last_recv: Timestamp,
    pub(crate) last_send: Timestamp,
    pub(crate) rx: BytesMut,
    pub(crate) out: Outbound,
    /// Set when a graceful close was asked: the goodbye goes out once the data
    /// lane is empty, then the connection closes with this reason.
    pub(crate) closing: Option<CloseReason>,
    /// Goodbye queued; close when the queue is empty.
    pub(crate) goodbye_queued: bool,
    /// A publish was refused because this queue was full: report Writable.
    pub(crate) want_writable: bool,
    /// The node's session epoch when the socket opened: a connection opened
    /// before the node last lost its peer belongs to an older session.
    pub(crate) epoch: u64,
}

impl Conn {
    pub(crate) fn new(id: ConnId, target: Option<TargetId>, phase: Phase, now: Timestamp) -> Self {
        Conn {
            id,
            target,
            phase,
            peer: None,
            peer_subs: BTreeSet::new(),
            opened_at: now,
            last_recv: now,
            last_send: now,
            rx: BytesMut::new(),
            out: Outbound::new(),
            closing: None,
            goodbye_queued: false,
            want_writable: false,
            epoch: 0,
        }
    }

    /// True while bytes may be pulled for writing.
    pub(crate) fn has_output(&self) -> bool {
        self.phase != Phase::Dialing && !self.out.is_empty()
    }
}
