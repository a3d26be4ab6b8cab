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
    /// Streams.
    pub streams: StreamsStats,
    /// Groups and assignments.
    pub membership: crate::membership::MembershipStats,
    /// Discovery and relay.
    pub discovery: DiscoveryStats,
    /// File transfers.
    pub transfer: TransferStats,
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
    /// Accepted connections refused at the connection limit (with a goodbye
    /// saying so).
    pub refused_over_limit: u64,
    /// Sessions suspended by a lost connection.
    pub suspended: u64,
    /// Sessions resumed on a new connection.
    pub resumed: u64,
    /// Suspended sessions that ended without resuming.
    pub not_resumed: u64,
    /// Connections closed because their Hellos could not tell whether the
    /// peer holds a suspended session (the dialer claimed a session with
    /// another process at the address); the dialer dials again.
    pub inconclusive: u64,
    /// Messages a peer had not acknowledged when a graceful close's wait
    /// ended (reported as dropped with their range, never counted as sent).
    pub unacked_at_close: u64,
}

/// Counters of the dialer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DialerStats {
    /// Connections re-established to a dial target after a loss.
    pub reconnects: u64,
    /// Dials started (one [`Action::Dial`](crate::Action::Dial) each).
    pub dials: u64,
}

/// Counters of the pub/sub plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubSubStats {
    /// Messages sent (one per receiving peer): handed to the driver for
    /// writing or, in a resumable session, acknowledged by the peer.
    pub sent: u64,
    /// Messages received and handed to the application.
    pub received: u64,
    /// Of those, messages that came in runs
    /// ([`PubSubEvent::Messages`](crate::PubSubEvent::Messages)).
    pub received_in_runs: u64,
    /// Runs handed to the application.
    pub runs: u64,
    /// Messages dropped by policy (full queue policy, disconnect with queued
    /// messages, arrival after unsubscribe). Each drop is also an event.
    pub dropped: u64,
    /// Credit frames sent (grants to peers).
    pub credit_grants: u64,
    /// Messages written again after a resume (the peer had not acknowledged them).
    pub resent: u64,
    /// Messages received again after a resume and dropped by sequence number
    /// (this node had taken them already).
    pub duplicates: u64,
    /// Ack frames sent.
    pub acks: u64,
    /// Messages sent and never acknowledged when their session ended
    /// (also counted in `dropped` and reported with their range).
    pub unacked_lost: u64,
    /// Messages a full queue overwrote before they were sent
    /// ([`FullQueuePolicy::DropOldest`](crate::FullQueuePolicy::DropOldest)),
    /// counted when their marker leaves (also in `dropped`).
    pub overwritten: u64,
    /// Messages peers reported overwritten in their queues to this node
    /// ([`PubSubEvent::Skipped`](crate::PubSubEvent::Skipped)).
    pub skipped_by_peer: u64,
}

/// Counters of the streams plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamsStats {
    /// Streams this node opened as a consumer (including those closed at once).
    pub opened: u64,
    /// Streams peers opened that this node took as producer.
    pub accepted: u64,
    /// Opens this node refused (no handler, over a limit, request too large).
    pub refused: u64,
    /// Stream messages handed to the driver for writing.
    pub messages_sent: u64,
    /// Stream messages received and handed to the application.
    pub messages_received: u64,
    /// Credit frames sent.
    pub credit_grants: u64,
    /// Stream heartbeats sent.
    pub heartbeats: u64,
    /// Streams closed because the peer no longer held them (heartbeat).
    pub orphans_closed: u64,
    /// Frames for streams already ended here (late frames after a close), ignored.
    pub late_frames: u64,
    /// Opens refused (1013) because their peer cancelled streams faster
    /// than `streams.cancel_rate` (also counted in `refused`).
    pub churn_refused: u64,
}

/// Counters of the discovery plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryStats {
    /// Request frames written (this node's own and forwarded ones).
    pub requests_sent: u64,
    /// Requests of other nodes handled (each at most once).
    pub requests_handled: u64,
    /// Copies of requests already handled, ignored.
    pub requests_duplicate: u64,
    /// Requests forwarded (one per peer forwarded to).
    pub requests_forwarded: u64,
    /// Request keys forgotten before their expiry for want of room.
    pub seen_evicted: u64,
    /// Referrals sent.
    pub referrals_sent: u64,
    /// Dials made to origins or referred peers.
    pub dials: u64,
    /// Dials not made because this node was at its connection limit.
    pub dials_refused_full: u64,
    /// Discovery frames dropped because a connection's queue was full.
    pub frames_dropped: u64,
    /// Root connections closed once every topic was paired.
    pub roots_dropped: u64,
    /// Messages this node published with a relay identity (per peer queued).
    pub relay_published: u64,
    /// Relayed messages forwarded (one per peer queued).
    pub relay_forwarded: u64,
    /// Relayed copies received again and dropped (each message is
    /// delivered at most once).
    pub relay_duplicates: u64,
    /// Copies of this node's own messages that came back (dropped).
    pub relay_returned: u64,
    /// Relayed messages lost: not forwarded for a full queue, or never
    /// arrived before leaving the window, or older than the window.
    pub relay_lost: u64,
    /// De-duplication windows forgotten for want of room.
    pub relay_windows_evicted: u64,
    /// Queued request copies not sent because the peer they were for had
    /// sent this node the same request meanwhile.
    pub requests_suppressed: u64,
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
    /// Offers answered as complete without any byte sent, because the same
    /// content was already under its final name (received before, its
    /// completion lost to a crash or a dropped connection).
    pub already_received: u64,
}
