//! The transfer plane's frames, carried in [`Header::Transfer`](super::Header::Transfer).
//!
//! A transfer is keyed by the sender's node id and the transfer id the sender
//! chose (random, 64 bits). Frames from the sender: `Offer`, `Start`,
//! `Chunk` (its payload follows the header), `Digest` and
//! `Abort { by_sender: true }`.
//! Frames from the receiver: `Accept`, `Reject`, `Credit`, `Complete` and
//! `Abort { by_sender: false }`. Offsets and credit are absolute byte
//! offsets into the file, so a frame repeated after a reconnect means the
//! same thing. `docs/protocol.md` has the state machine.

use serde::{Deserialize, Serialize};

/// One frame of the transfer plane.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum TransferFrame<'a> {
    /// Sender → receiver: a file is on offer. Sent again (same id) on every
    /// new session until the receiver answered for good.
    Offer {
        /// The transfer id (chosen by the sender).
        id: u64,
        /// The topic the file was sent to (empty when sent to one peer).
        topic: &'a str,
        /// The name the sender proposes (the receiver sanitises it).
        name: &'a str,
        /// Size in bytes.
        size: u64,
        /// BLAKE3 of the whole content; all zero when the sender did not
        /// know it yet (it hashes while it sends): a `Digest` follows.
        hash: [u8; 32],
        /// Payload bytes per `Chunk` frame (the last may be shorter).
        chunk: u32,
        /// Small application metadata.
        #[serde(borrow)]
        meta: Vec<(&'a str, &'a str)>,
    },
    /// Receiver → sender: send from `offset`; `prefix` is the BLAKE3 of the
    /// receiver's bytes `0..offset` (ignored when `offset` is 0). `until` is
    /// the first credit: the sender may send bytes below it.
    Accept {
        /// The transfer id.
        id: u64,
        /// Bytes the receiver already holds.
        offset: u64,
        /// BLAKE3 of those bytes.
        prefix: [u8; 32],
        /// Credit: the end of the bytes the sender may send.
        until: u64,
    },
    /// Receiver → sender: the offer is refused, with a reason.
    Reject {
        /// The transfer id.
        id: u64,
        /// Why.
        reason: &'a str,
    },
    /// Sender → receiver: chunks follow from `offset` (the accepted offset,
    /// or 0 when the receiver's prefix did not match). Authoritative.
    Start {
        /// The transfer id.
        id: u64,
        /// Where the bytes start.
        offset: u64,
    },
    /// Sender → receiver: the bytes at `offset`; the payload follows.
    Chunk {
        /// The transfer id.
        id: u64,
        /// Offset of the payload's first byte.
        offset: u64,
    },
    /// Receiver → sender: more credit. `synced` bytes are durable on the
    /// receiver; the sender may send bytes below `until`; `received` bytes
    /// arrived (the sender keeps at most `TransferConfig::max_in_flight`
    /// bytes beyond it on the wire). Never decreases.
    Credit {
        /// The transfer id.
        id: u64,
        /// Bytes synced to disk.
        synced: u64,
        /// The end of the bytes the sender may send.
        until: u64,
        /// Bytes received.
        received: u64,
    },
    /// Receiver → sender: the file was verified and is in place.
    Complete {
        /// The transfer id.
        id: u64,
    },
    /// Either side: the transfer between these two ends failed for good.
    Abort {
        /// The transfer id.
        id: u64,
        /// True if the sender of the transfer sends this frame.
        by_sender: bool,
        /// Why.
        reason: &'a str,
    },
    /// Sender → receiver: BLAKE3 of the whole content, for an `Offer` that
    /// carried an all-zero hash. Sent once the sender knows it (it hashes
    /// the file as it reads it for sending), at the latest after the last
    /// chunk; the receiver verifies the file against it before the rename.
    Digest {
        /// The transfer id.
        id: u64,
        /// BLAKE3 of the whole content.
        hash: [u8; 32],
    },
}

impl TransferFrame<'_> {
    /// The transfer id the frame is about.
    pub fn id(&self) -> u64 {
        match self {
            TransferFrame::Offer { id, .. }
            | TransferFrame::Accept { id, .. }
            | TransferFrame::Reject { id, .. }
            | TransferFrame::Start { id, .. }
            | TransferFrame::Chunk { id, .. }
            | TransferFrame::Credit { id, .. }
            | TransferFrame::Complete { id }
            | TransferFrame::Abort { id, .. }
            | TransferFrame::Digest { id, .. } => *id,
        }
    }
}
