//! Sessions that outlive connections.
//!
//! A session with a peer is the pair of the two nodes' incarnations (drawn
//! at random when each process starts) plus an id both ends derive from the
//! Hellos that started it. When the connection carrying it is lost the
//! peer is *suspended*: its subscriptions stay, messages to it keep
//! queueing within the usual per-peer bounds, round-robin skips it. If a
//! new connection completes its handshake within
//! [`SessionConfig::resume_window`](crate::SessionConfig::resume_window),
//! each Hello names the session its sender holds and the sequence number
//! it expects next; both ends apply one rule ("I hold your incarnation's
//! session and you hold mine, with the same id") and agree, with no extra
//! round trip. The session then *resumes*: the sender re-sends what the
//! receiver had not acknowledged, the receiver drops duplicates by sequence
//! number, and order is kept. Otherwise the session ends
//! ([`Event::PeerDown`](crate::Event::PeerDown)) and
//! [`SessionEvent::Ended`] reports, with sequence numbers, what may be lost.
//!
//! Sequence numbers cost nothing per message: within a connection the
//! receiver counts message frames (and, where streams resume with the
//! session, the frames of streams: one sequence per direction); numbers travel only in the Hello, in a
//! `Resume { from }` frame first on a resumed connection, and in
//! cumulative acks, which are control state sent after `ack_delay`, every
//! [`ACK_EVERY_MESSAGES`] messages or [`ACK_EVERY_BYTES`] bytes, with any
//! other bytes written to the peer, when the peer asks (a heartbeat: a
//! sender whose progress waits for acks sends one), with heartbeats and
//! before a goodbye. A message is acknowledged once the
//! receiving node took responsibility for it: handed to the application's
//! queue, or counted as a drop.
//!
//! On a secure connection the Hello travels inside the Noise channel and
//! its id must equal the proven one, so only the peer itself can resume its
//! session (and receive what was buffered for it).

mod log;

pub use log::{LogError, SendLog};

use crate::event::PeerInfo;
use std::ops::Range;

/// An ack is due once this many messages were taken since the last one.
pub const ACK_EVERY_MESSAGES: u64 = 4096;
/// An ack is due once this many payload bytes were taken since the last one.
pub const ACK_EVERY_BYTES: u64 = 256 << 10;

/// Why a session ended with messages possibly lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// The peer stayed away longer than `resume_window`.
    Expired,
    /// The peer came back as a new process (same id, new incarnation).
    PeerRestarted,
    /// The peer came back without the session (its window passed first, or
    /// it ended the session for another reason).
    NotResumed,
    /// A graceful close (goodbye, `disconnect`, `close`) or a refused
    /// connection ended the session.
    Closed,
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossReason::Expired => "the resume window passed",
            LossReason::PeerRestarted => "the peer restarted",
            LossReason::NotResumed => "the peer no longer held the session",
            LossReason::Closed => "the session was closed",
        })
    }
}

/// What happened to a session (with [`Capabilities::RESUME`](crate::Capabilities::RESUME)
/// on both ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The connection carrying the session was lost. Messages to the peer
    /// keep queueing (within the per-peer bounds) for `resume_window`.
    Suspended {
        /// The peer.
        peer: PeerInfo,
        /// Why the connection ended.
        reason: crate::event::CloseReason,
    },
    /// The session continues on a new connection; `resent` messages the
    /// peer had not acknowledged are sent again (it drops what it already took).
    Resumed {
        /// The peer.
        peer: PeerInfo,
        /// Messages sent again.
        resent: u64,
    },
    /// The session ended ([`Event::PeerDown`](crate::Event::PeerDown)
    /// comes with it). `unacked`: the sequence numbers of messages this
    /// node sent and the peer did not acknowledge: they count as dropped,
    /// never as sent (the peer may have taken some whose ack was lost).
    /// `received`: the peer's messages this node took, 0..received; any
    /// the peer sent from there on are lost, and the peer reports them.
    Ended {
        /// The peer.
        peer: PeerInfo,
        /// Why.
        reason: LossReason,
        /// This node's messages possibly lost (the sequence numbers of
        /// the session; where streams resume with it, its stream frames
        /// are numbered among them).
        unacked: Range<u64>,
        /// Messages queued for the peer and never written (dropped, counted).
        unsent: u64,
        /// How many of the peer's numbered frames (messages, and stream
        /// frames where streams resume) this node took in the session.
        received: u64,
    },
}
