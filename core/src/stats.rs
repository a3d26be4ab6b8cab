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
    /// The secure channel: handshakes, refusals, rekeys, permissions.
    pub security: crate::secure::SecurityStats,
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
