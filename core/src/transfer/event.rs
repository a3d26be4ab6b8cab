//! What the transfer plane tells the application.

use crate::event::PeerInfo;
use crate::id::Topic;
use std::path::PathBuf;

/// Which end of a transfer this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// This node sends the file.
    Outgoing,
    /// This node receives the file.
    Incoming,
}

/// A file offered to this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    /// The sender.
    pub peer: PeerInfo,
    /// The transfer id.
    pub id: u64,
    /// The topic it was sent to (empty if sent to this node only).
    pub topic: Topic,
    /// The sanitised name it will be saved under.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the content.
    pub hash: [u8; 32],
    /// The sender's metadata.
    pub meta: Vec<(String, String)>,
    /// True if the application must answer with
    /// [`Transfer::accept`](crate::transfer::Transfer::accept) or
    /// [`Transfer::reject`](crate::transfer::Transfer::reject)
    /// (`TransferConfig::auto_accept` is off); false if it was accepted.
    pub needs_answer: bool,
}

/// A file received, verified and in place under its final name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender.
    pub peer: PeerInfo,
    /// The transfer id.
    pub id: u64,
    /// The topic.
    pub topic: Topic,
    /// The final name.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the content (verified).
    pub hash: [u8; 32],
    /// The sender's metadata.
    pub meta: Vec<(String, String)>,
}

/// Events of the transfer plane, in [`Event::Transfer`](crate::Event::Transfer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferEvent {
    /// A peer offers a file (receiving side).
    Offered(Box<Offered>),
    /// Bytes start flowing from `offset` (both sides: on the sender after
    /// the receiver's prefix was checked, on the receiver when the sender
    /// confirmed where it starts). Follows every (re)connection.
    Started {
        /// The other end.
        peer: PeerInfo,
        /// The transfer id.
        id: u64,
        /// Which end this node is.
        direction: Direction,
        /// Where the bytes start: what the receiver kept, or 0.
        offset: u64,
    },
    /// Bytes durable on the receiver, reported once per sync (coalesced).
    Progress {
        /// The other end.
        peer: PeerInfo,
        /// The transfer id.
        id: u64,
        /// Which end this node is.
        direction: Direction,
        /// Bytes synced on the receiver; never decreases within a start.
        bytes: u64,
        /// The file size.
        total: u64,
    },
    /// The file was verified and is in place (receiving side).
    Received(Box<Received>),
    /// The receiver verified the file and has it (sending side).
    Delivered {
        /// The receiver.
        peer: PeerInfo,
        /// The transfer id.
        id: u64,
    },
    /// The transfer between this node and `peer` ended without the file:
    /// refused, aborted, a mismatch, a disk error, a bad name, or the peer
    /// stayed away for `TransferConfig::peer_timeout`.
    Failed {
        /// The other end.
        peer: PeerInfo,
        /// The transfer id.
        id: u64,
        /// Which end this node is.
        direction: Direction,
        /// Why (printable; names in it are escaped).
        reason: String,
    },
}
