//! The streams plane's frames, inside [`Header::Stream`](super::Header::Stream).
//!
//! Stream ids are chosen by the side that opens the stream (the consumer).
//! Their low bit is the opener's side: 0 for the node with the lower node
//! id, 1 for the other, so the two sides of a connection never pick the same
//! id. Each side's ids strictly increase within a session and are never
//! reused. The credit unit is the byte, plus [`MESSAGE_COST`] per message.

use serde::{Deserialize, Serialize};

/// Credit one message costs on top of its payload bytes, so empty messages
/// are bounded by credit too.
pub const MESSAGE_COST: u64 = 16;

/// The most streams one side may have open with a peer in a session,
/// counting opens not answered yet; more is a protocol violation (so a
/// peer cannot make a node queue refusals without bound).
pub const MAX_OPEN_PER_SESSION: usize = 65_536;

/// A frame of the streams plane. Variants are appended, never inserted.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum StreamFrame<'a> {
    /// The sender now serves `topic`: it takes opens on it.
    Serve {
        /// The topic.
        topic: &'a str,
    },
    /// The sender no longer serves `topic`.
    Unserve {
        /// The topic.
        topic: &'a str,
    },
    /// The sender opens stream `id` on `topic`; the payload is the request.
    /// `window` is the receiver's first credit on it; `deadline_ms` the time
    /// the opener still waits, if it set a deadline.
    Open {
        /// The new stream's id (the sender's parity, above its previous ids).
        id: u64,
        /// The topic.
        topic: &'a str,
        /// First credit for the producer.
        window: u64,
        /// Milliseconds the opener still waits, if it set a deadline.
        deadline_ms: Option<u64>,
    },
    /// Reply bytes on stream `id` (producer to consumer). A message longer
    /// than a fragment is split: `more` is set on every fragment but the last.
    Data {
        /// The stream.
        id: u64,
        /// More fragments of this message follow.
        more: bool,
    },
    /// The producer ends stream `id`, or refuses its open.
    Close {
        /// The stream.
        id: u64,
        /// The close code.
        code: u16,
        /// Why, for people.
        text: &'a str,
    },
    /// The consumer no longer wants stream `id` (it dropped it, its deadline
    /// passed, it could not decode the data, or its node is closing).
    Cancel {
        /// The stream.
        id: u64,
        /// The close code.
        code: u16,
        /// Why, for people.
        text: &'a str,
    },
    /// The consumer grants the producer `bytes` more credit on stream `id`.
    Credit {
        /// The stream.
        id: u64,
        /// More credit (payload bytes plus [`MESSAGE_COST`] per message).
        bytes: u64,
    },
    /// Sent at an interval while streams are open: the ids the sender still
    /// holds (both directions), and the highest id opened by the receiver
    /// that the sender has seen (0: none), so an open still in flight is not
    /// taken for a forgotten stream. A receiver that does not hold some of
    /// the listed ids answers with its own list (`reply`), so the sender
    /// closes them; a reply is never answered.
    Heartbeat {
        /// This heartbeat answers one that listed streams the sender no
        /// longer holds.
        reply: bool,
        /// Highest id of the receiver's the sender has seen.
        seen: u64,
        /// Every stream id the sender holds with the receiver.
        held: Vec<u64>,
    },
}

impl StreamFrame<'_> {
    /// True if the frame takes a sequence number in a session whose streams
    /// resume ([`Capabilities::STREAM_RESUME`](super::Capabilities::STREAM_RESUME)):
    /// every frame of a stream. Not the heartbeat, which states the present,
    /// nor `Serve` and `Unserve`, which announce state (all of it again
    /// after a resume), like subscriptions.
    pub fn is_logged(&self) -> bool {
        !matches!(self, StreamFrame::Heartbeat { .. } | StreamFrame::Serve { .. } | StreamFrame::Unserve { .. })
    }
}
