//! The wire format: a preamble, then length-prefixed frames.
//!
//! ```text
//! preamble := "ESTF" version:u16be mode:u8              (7 bytes, each side sends one)
//! frame    := len:u32be header:postcard(Header) payload  (len counts header + payload)
//! ```
//!
//! The first frame on a connection is [`Header::Hello`]. Payload bytes follow
//! the header unencoded, so a received payload is a slice of the read buffer.
//! See `docs/protocol.md` for the whole protocol.

mod codec;
mod discovery;
mod membership;
mod relay_frame;
mod session;
mod stream;
mod stream_data;
pub mod transfer;

pub use codec::{
    check_preamble, decode_frame, encode_frame, encode_publish, encoded_len_hint, take_publish_on, take_publish_run,
    write_preamble, write_preamble_mode, PublishRun, RawFrame, RunLimit,
};
pub use discovery::{DiscoveryFrame, Referred};
pub use membership::{Hint, MembershipFrame, RefuseReason};
pub use relay_frame::{take_relay_on, RelayHead};
pub use session::{HelloSession, ResumeClaim, SessionFrame};
pub use stream::{StreamFrame, MAX_OPEN_PER_SESSION, MESSAGE_COST};
pub use stream_data::take_stream_data;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The 4 bytes every connection starts with.
pub const MAGIC: [u8; 4] = *b"ESTF";
/// The highest protocol version this build speaks (sent in the preamble and
/// in Hello). Version 2 added credit flow control, capabilities and the
/// listen address; version 1 peers are refused.
pub const VERSION: u16 = 2;
/// The lowest protocol version this build accepts (sent in Hello).
pub const MIN_VERSION: u16 = 2;
/// Length of the preamble: magic + version + security mode (0 plaintext, 1 Noise).
pub const PREAMBLE_LEN: usize = 7;
/// Length of a frame's length prefix.
pub const LEN_PREFIX: usize = 4;

/// The version two peers use: the lower of the two highest versions, if
/// both sides accept it.
///
/// ```
/// use estafeta_core::wire::negotiate;
/// assert_eq!(negotiate((2, 5), (2, 3)), Some(3));
/// assert_eq!(negotiate((4, 5), (2, 3)), None);
/// ```
pub fn negotiate(ours: (u16, u16), theirs: (u16, u16)) -> Option<u16> {
    let v = ours.1.min(theirs.1);
    (v >= ours.0 && v >= theirs.0).then_some(v)
}

/// The planes a node runs, announced in its Hello. A frame of a plane the
/// receiver did not announce is a protocol violation; bits a node does not
/// know are ignored, so newer peers can announce planes older ones lack.
///
/// ```
/// use estafeta_core::wire::Capabilities;
/// let caps = Capabilities::PUBSUB | Capabilities::STREAMS;
/// assert!(caps.contains(Capabilities::PUBSUB));
/// assert!(!caps.contains(Capabilities::TRANSFER));
/// assert_eq!(Capabilities::from_bits(1 << 40).known(), Capabilities::NONE);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capabilities(u64);

impl Capabilities {
    /// No plane beyond the session (handshake, heartbeats, goodbye).
    pub const NONE: Capabilities = Capabilities(0);
    /// Topics: subscribe, publish, credit.
    pub const PUBSUB: Capabilities = Capabilities(1 << 0);
    /// Chunked file transfer.
    pub const TRANSFER: Capabilities = Capabilities(1 << 1);
    /// Request/stream exchanges.
    pub const STREAMS: Capabilities = Capabilities(1 << 2);
    /// Group membership, as a member.
    pub const MEMBERSHIP: Capabilities = Capabilities(1 << 3);
    /// Group membership, as a coordinator.
    pub const COORDINATOR: Capabilities = Capabilities(1 << 4);
    /// Discovery through known peers.
    pub const DISCOVERY: Capabilities = Capabilities(1 << 5);
    /// Sessions that outlive connections: sequence numbers, acks and resume
    /// (announced when `SessionConfig::resume_window` is not zero).
    pub const RESUME: Capabilities = Capabilities(1 << 6);
    /// Markers for messages a full queue overwrote
    /// ([`FullQueuePolicy::DropOldest`](crate::FullQueuePolicy::DropOldest)).
    pub const OVERWRITE: Capabilities = Capabilities(1 << 7);
    /// Streams outlive connections with the session: in a resumable
    /// session (both ends announced [`Capabilities::RESUME`] and this) the
    /// frames of streams take sequence numbers, like messages, and are
    /// re-sent after a resume (announced with `RESUME` when the node runs
    /// streams; see [`StreamFrame::is_logged`](crate::wire::StreamFrame::is_logged)).
    pub const STREAM_RESUME: Capabilities = Capabilities(1 << 8);
    /// Every bit this build knows.
    pub const KNOWN: Capabilities = Capabilities((1 << 9) - 1);
    /// The planes this build runs.
    pub const SUPPORTED: Capabilities = Capabilities(
        Capabilities::PUBSUB.0
            | Capabilities::TRANSFER.0
            | Capabilities::STREAMS.0
            | Capabilities::MEMBERSHIP.0
            | Capabilities::DISCOVERY.0
            | Capabilities::OVERWRITE.0,
    );

    /// The capabilities with these bits (unknown bits are kept, and ignored).
    pub const fn from_bits(bits: u64) -> Self {
        Capabilities(bits)
    }
    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Only the bits this build knows.
    pub const fn known(self) -> Self {
        Capabilities(self.0 & Self::KNOWN.0)
    }
    /// True if every bit of `other` is set.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::SUPPORTED
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

/// The header of a frame. Variants are numbered by position on the wire:
/// new ones are appended, never inserted (a new plane appends one variant
/// holding its own frame enum), so older peers keep decoding what they know.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Header<'a> {
    /// First frame on every connection: who the sender is and what it wants.
    Hello(#[serde(borrow)] Hello<'a>),
    /// The sender now subscribes to `topic`.
    Subscribe {
        /// The topic.
        topic: &'a str,
    },
    /// The sender no longer subscribes to `topic`.
    Unsubscribe {
        /// The topic.
        topic: &'a str,
    },
    /// A message on `topic`; the payload follows the header.
    Publish {
        /// The topic.
        topic: &'a str,
    },
    /// Proof of life, sent only when the connection was idle.
    Heartbeat,
    /// The sender is closing the connection, with a code and a reason.
    Goodbye {
        /// A [`CloseCode`] value.
        code: u16,
        /// Human-readable reason.
        reason: &'a str,
    },
    /// The sender grants credit for `topic`: the receiver of this frame may
    /// send this many more messages (and about this many more payload
    /// bytes) on `topic` to the sender. Grants add up over a session.
    Credit {
        /// The topic.
        topic: &'a str,
        /// More messages.
        messages: u32,
        /// More payload bytes.
        bytes: u64,
    },
    /// A frame of the streams plane (request → stream of replies).
    Stream(#[serde(borrow)] StreamFrame<'a>),
    /// A frame of the membership plane (joins, heartbeats, assignments).
    Membership(#[serde(borrow)] MembershipFrame<'a>),
    /// A frame of the discovery plane (requests, referrals, relayed messages).
    Discovery(#[serde(borrow)] DiscoveryFrame<'a>),
    /// A frame of the transfer plane (a chunk's payload follows the header).
    Transfer(#[serde(borrow)] transfer::TransferFrame<'a>),
    /// The sender refuses the receiver's subscription to `topic` (its
    /// per-topic permissions): no message on it will come.
    SubscribeRefused {
        /// The topic.
        topic: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A frame of the session layer (acks, the resume point, absolute
    /// credit), when both ends announced [`Capabilities::RESUME`].
    Session(#[serde(borrow)] SessionFrame<'a>),
    /// `count` messages on `topic` were overwritten in the sender's queue
    /// here, before they were sent
    /// ([`FullQueuePolicy::DropOldest`](crate::FullQueuePolicy::DropOldest));
    /// sent only to a peer that announced [`Capabilities::OVERWRITE`]. In a
    /// resumable session it takes a sequence number, like a message.
    Overwritten {
        /// The topic.
        topic: &'a str,
        /// How many messages.
        count: u64,
    },
}

impl Header<'_> {
    /// True if the frame takes a sequence number in a session where both
    /// ends announced [`Capabilities::RESUME`] and these `caps`: messages,
    /// overwrite markers, relayed copies, and with
    /// [`Capabilities::STREAM_RESUME`] the frames of streams.
    // Inlined into the router, which asks it of every message: 1,240
    // against 1,254 instructions per 64 B message received (callgrind,
    // benches/hotpath.rs).
    #[inline(always)]
    pub fn is_sequenced(&self, caps: Capabilities) -> bool {
        match self {
            Header::Publish { .. } | Header::Overwritten { .. } | Header::Discovery(DiscoveryFrame::Relay { .. }) => {
                true
            }
            Header::Stream(f) => caps.contains(Capabilities::STREAM_RESUME) && f.is_logged(),
            _ => false,
        }
    }

    /// The plane a frame belongs to, as the capability its receiver must
    /// have announced; `NONE` for the session's own frames.
    pub fn plane(&self) -> Capabilities {
        match self {
            Header::Hello(_) | Header::Heartbeat | Header::Goodbye { .. } => Capabilities::NONE,
            Header::Subscribe { .. }
            | Header::Unsubscribe { .. }
            | Header::Publish { .. }
            | Header::Credit { .. }
            | Header::SubscribeRefused { .. } => Capabilities::PUBSUB,
            Header::Stream(_) => Capabilities::STREAMS,
            Header::Membership(_) => Capabilities::MEMBERSHIP,
            Header::Discovery(_) => Capabilities::DISCOVERY,
            Header::Transfer(_) => Capabilities::TRANSFER,
            Header::Session(_) => Capabilities::RESUME,
            Header::Overwritten { .. } => Capabilities::OVERWRITE,
        }
    }
}

/// Where a node listens, as its Hello announces it (for discovery).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr<'a> {
    /// Host name or IP address.
    pub host: &'a str,
    /// TCP port.
    pub port: u16,
}

/// The handshake frame's content. Fields are appended, never inserted: an
/// older peer decodes the fields it knows and ignores the rest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The highest protocol version the sender speaks (the preamble's).
    pub version: u16,
    /// The lowest protocol version the sender accepts.
    pub min_version: u16,
    /// The sender's node id.
    pub id: u128,
    /// The sender's human name.
    pub name: &'a str,
    /// The planes the sender runs ([`Capabilities`] bits).
    pub capabilities: u64,
    /// Where the sender listens, if it does.
    #[serde(borrow)]
    pub listen: Option<ListenAddr<'a>>,
    /// Topics the sender subscribes to.
    #[serde(borrow)]
    pub subscriptions: Vec<&'a str>,
    /// The sender's incarnation and the session it asks to resume, if it
    /// announces [`Capabilities::RESUME`]. A Hello without it (from a
    /// build before sessions) reads as `None`.
    #[serde(deserialize_with = "session::absent_is_none")]
    pub session: Option<HelloSession>,
}

impl<'a> Hello<'a> {
    /// A Hello of this build's version range, not listening.
    ///
    /// ```
    /// use estafeta_core::wire::{Capabilities, Hello, VERSION};
    /// let h = Hello::new(7, "peer", Capabilities::PUBSUB, vec!["news"]);
    /// assert_eq!((h.version, h.listen), (VERSION, None));
    /// ```
    pub fn new(id: u128, name: &'a str, capabilities: Capabilities, subscriptions: Vec<&'a str>) -> Self {
        Hello {
            version: VERSION,
            min_version: MIN_VERSION,
            id,
            name,
            capabilities: capabilities.bits(),
            listen: None,
            subscriptions,
            session: None,
        }
    }
}

/// Why a connection was closed, as a number both sides understand.
///
/// The values follow WebSocket where they overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// Normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// The node is going away (shutting down).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// The peer sent data this node cannot accept (bad preamble, version, limits).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// The connection ended without a goodbye (reset, EOF, liveness timeout).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// The peer broke the protocol (malformed frame, unexpected frame).
    pub const BAD_REQUEST: CloseCode = CloseCode(4000);
    /// Over a limit (the node's connections, a peer's concurrent streams):
    /// try again later (or elsewhere).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// This node failed internally.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(5000);
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            CloseCode::NORMAL => "normal",
            CloseCode::GOING_AWAY => "going away",
            CloseCode::UNSUPPORTED_DATA => "unsupported data",
            CloseCode::ABNORMAL => "abnormal",
            CloseCode::BAD_REQUEST => "bad request",
            CloseCode::INTERNAL_ERROR => "internal error",
            CloseCode::TRY_AGAIN_LATER => "try again later",
            _ => "other",
        };
        write!(f, "{} ({name})", self.0)
    }
}

/// What is wrong with bytes received from the network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The connection did not start with `ESTF`.
    #[error("bad magic {0:02x?}: not an estafeta peer")]
    BadMagic([u8; 4]),
    /// The peer speaks no protocol version this node accepts.
    #[error("unsupported protocol version {theirs} (this node speaks {MIN_VERSION}..={ours})")]
    UnsupportedVersion {
        /// The peer's version.
        theirs: u16,
        /// Ours (the highest).
        ours: u16,
    },
    /// A length prefix larger than the configured maximum (nothing was allocated).
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A zero-length frame.
    #[error("empty frame")]
    EmptyFrame,
    /// The header did not decode.
    #[error("malformed frame header: {0}")]
    BadHeader(String),
}
