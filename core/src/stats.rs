//! Counters a node keeps about itself, one block per plane.

/// Counters since the node was created. Read with [`Node::stats`](crate::Node::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections, bytes and heartbeats.
    pub session: SessionStats,
    /// Redialing.
    pub dialer: DialerStats,
    /// Messages.
    pub pubsub: PubSubStats,
    /// File transfers.
    pub transfer: TransferStats,
}

/// Counters of the session plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Bytes handed to the driver for writing.
    pub bytes_out: u64,
    /// Bytes received from the driver.
    pub bytes_in: u64,
    /// Connections closed because the peer sent malformed or forbidden input.
    pub malformed: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
}

/// Counters of the dialer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DialerStats {
    /// Connections re-established to a dial target after a loss.
    pub reconnects: u64,
}

/// Counters of the pub/sub plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubSubStats {
    /// Messages handed to the driver for writing (one per receiving peer).
    pub sent: u64,
    /// Messages received and handed to the application.
    pub received: u64,
    /// Messages dropped by policy (full queue policy, disconnect with queued
    /// messages, arrival after unsubscribe). Each drop is also an event.
    pub dropped: u64,
    /// Credit frames sent (grants to peers).
    pub credit_grants: u64,
}

/// Counters of the transfer plane (both directions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferStats {
    /// Offers sent (one per receiver).
    pub offers_sent: u64,
    /// Offers received.
    pub offers_received: u64,
    /// Offers this node refused.
    pub rejected: u64,
    /// Files received, verified and renamed into place.
    pub received: u64,
    /// Files a receiver confirmed (sending side).
    pub delivered: u64,
    /// Transfers that failed, either side.
    pub failed: u64,
    /// Chunk payload bytes sent.
    pub bytes_sent: u64,
    /// Chunk payload bytes received.
    pub bytes_received: u64,
    /// Payload bytes sent again to a receiver below the highest offset
    /// already sent to it (after resumes and restarts), in this process.
    pub bytes_resent: u64,
    /// Resumes whose prefix did not match (the sender started from 0).
    pub prefix_mismatches: u64,
    /// Received files whose hash did not match.
    pub hash_mismatches: u64,
}
