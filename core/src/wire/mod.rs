//! The wire format: a preamble, then length-prefixed frames.
//!
//! ```text
//! preamble := "ESTF" version:u16be                      (6 bytes, each side sends one)
//! frame    := len:u32be header:postcard(Header) payload  (len counts header + payload)
//! ```
//!
//! The first frame on a connection is [`Header::Hello`]. Payload bytes follow
//! the header unencoded, so a received payload is a slice of the read buffer.
//! See `docs/protocol.md` for the whole protocol.

mod codec;

pub use codec::{check_preamble, decode_frame, encode_frame, encoded_len_hint, write_preamble};

use serde::{Deserialize, Serialize};
use std::fmt;

/// The 4 bytes every connection starts with.
pub const MAGIC: [u8; 4] = *b"ESTF";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Length of the preamble: magic + version.
pub const PREAMBLE_LEN: usize = 6;
/// Length of a frame's length prefix.
pub const LEN_PREFIX: usize = 4;

/// The header of a frame. Variants are numbered by position on the wire: new
/// planes (file chunks, streams, membership, discovery) are appended, never
/// inserted, and get their own protocol version.
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
}

/// The handshake frame's content.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Protocol version (the same as the preamble's).
    pub version: u16,
    /// The sender's node id.
    pub id: u128,
    /// The sender's human name.
    pub name: &'a str,
    /// Role bits (none defined yet; reserved for membership and discovery).
    pub roles: u32,
    /// Topics the sender subscribes to.
    #[serde(borrow)]
    pub subscriptions: Vec<&'a str>,
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
            _ => "other",
        };
        write!(f, "{} ({name})", self.0)
    }
}

/// What is wrong with bytes received from the network.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The connection did not start with `ESTF`.
    BadMagic([u8; 4]),
    /// The peer speaks another protocol version.
    UnsupportedVersion {
        /// The peer's version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// A length prefix larger than the configured maximum (nothing was allocated).
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A zero-length frame.
    EmptyFrame,
    /// The header did not decode.
    BadHeader(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic(m) => write!(f, "bad magic {m:02x?}: not an estafeta peer"),
            WireError::UnsupportedVersion { theirs, ours } => {
                write!(f, "unsupported protocol version {theirs} (this node speaks {ours})")
            }
            WireError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            WireError::EmptyFrame => write!(f, "empty frame"),
            WireError::BadHeader(e) => write!(f, "malformed frame header: {e}"),
        }
    }
}

impl std::error::Error for WireError {}
