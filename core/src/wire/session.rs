//! Session resumption on the wire: what a Hello says about the session the
//! sender holds, and the frames of [`Header::Session`](super::Header::Session)
//! (acks, the resume point, absolute credit). See `docs/protocol.md`,
//! "Sessions that outlive connections".

use serde::{Deserialize, Deserializer, Serialize};

/// The session part of a Hello (appended to it; an older peer ignores it).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloSession {
    /// The sender's incarnation: drawn at random when its process started;
    /// a restart keeps the node id, never the incarnation.
    pub incarnation: u64,
    /// Random per connection: a new session's id is the two Hellos' nonces
    /// xor-ed, so both ends name it alike.
    pub nonce: u64,
    /// The session the sender holds with the receiver, if any: it asks to
    /// resume it.
    pub resume: Option<ResumeClaim>,
}

/// A claim to resume a session (in [`HelloSession::resume`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeClaim {
    /// The receiver's incarnation, as the sender knows it.
    pub your_incarnation: u64,
    /// The session's id.
    pub session: u64,
    /// The sequence number of the receiver's next message the sender
    /// expects (everything below it the sender took responsibility for).
    pub next_expected: u64,
}

/// A frame of the session layer, sent only when both ends announced
/// [`Capabilities::RESUME`](super::Capabilities::RESUME).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum SessionFrame<'a> {
    /// Cumulative: the sender took responsibility for every message of the
    /// receiver's below `next` (delivered to its application or counted as
    /// a drop).
    Ack {
        /// The next sequence number the sender expects.
        next: u64,
    },
    /// First on a resumed connection, before any message: the next message
    /// on this connection has sequence number `from` (messages count up
    /// from there, one per message frame).
    Resume {
        /// The sequence number of the next message.
        from: u64,
    },
    /// Absolute credit: the receiver of this frame may send up to this many
    /// messages and payload bytes in all on `topic` this session (grants
    /// are idempotent, so they survive a resume).
    Credit {
        /// The topic.
        topic: &'a str,
        /// Messages granted since the session started.
        messages: u64,
        /// Payload bytes granted since the session started.
        bytes: u64,
    },
}

/// Reads the Hello's trailing session field, or `None` if the Hello ends
/// before it (an older peer's).
pub(super) fn absent_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HelloSession>, D::Error> {
    Ok(Option::<HelloSession>::deserialize(d).unwrap_or(None))
}
