//! Node configuration: one sub-config per plane, every limit named with a
//! documented default.

pub use crate::discovery::DiscoveryConfig;
use crate::wire::Capabilities;
use std::time::Duration;

/// What a node does when a subscriber's outbound queue is full during a
/// publish to every subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FullQueuePolicy {
    /// Refuse the whole publish with [`PublishError::Full`](crate::PublishError::Full);
    /// nothing is queued for anyone and the caller can wait for
    /// [`PubSubEvent::Writable`](crate::PubSubEvent::Writable). The default: nothing is lost.
    #[default]
    Backpressure,
    /// Queue the message for every subscriber that has room and drop it for the
    /// ones that are full. Each drop is counted in [`PubSubStats::dropped`](crate::PubSubStats)
    /// and reported by [`PubSubEvent::Dropped`](crate::PubSubEvent::Dropped).
    DropForFullPeers,
    /// For topics that carry latest values: a new message replaces the
    /// oldest ones queued for a full subscriber on its topic (never sent),
    /// so publishing never waits and the newest values get through. Both
    /// ends report each gap with the same range: the sender writes a marker
    /// where the replaced messages would have been, reports
    /// [`PubSubEvent::Overwritten`](crate::PubSubEvent::Overwritten) when it
    /// writes it, and the receiver reports
    /// [`PubSubEvent::Skipped`](crate::PubSubEvent::Skipped) when it takes it,
    /// both with the marker's sequence number in a resumable session. Applies
    /// to sends to every subscriber and to one named peer (round-robin picks
    /// a subscriber with room, as with the other policies). A peer whose
    /// build lacks [`Capabilities::OVERWRITE`](crate::Capabilities::OVERWRITE),
    /// or a subscription whose queue holds nothing to replace, gets
    /// [`DropForFullPeers`](FullQueuePolicy::DropForFullPeers) instead.
    DropOldest,
}

/// When a received message counts as consumed, which is when its credit goes
/// back to the sender (see [`PubSubConfig::window_messages`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CreditMode {
    /// When [`Node::poll_event`](crate::Node::poll_event) hands the message
    /// out. Right for an application that handles each event as it takes it
    /// (the simulator, `examples/std_loop.rs`). The default.
    #[default]
    OnPoll,
    /// When the driver reports it with
    /// [`PubSub::consumed`](crate::PubSub::consumed): a driver that keeps
    /// messages in its own queues until the application reads them (the
    /// tokio and smol drivers) reports them as they leave.
    Manual,
}

/// Connections, handshakes, liveness and the outbound scheduler.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Largest frame accepted or sent, header included, checked against the
    /// length prefix before anything is allocated. Default 8 MiB.
    pub max_frame_size: usize,
    /// Longest node name in bytes. Default 128.
    pub max_name_len: usize,
    /// Most connections (open, handshaking or dialing) at once. Default 1024.
    pub max_connections: usize,
    /// Received bytes buffered for one connection before the driver stops
    /// reading it (on top of one frame). Default 256 KiB.
    pub max_read_buffer: usize,
    /// Events the node holds for the application before it stops processing
    /// received bytes. With credit flow control this is only a backstop for a
    /// driver that stops taking events. A run of messages that arrived
    /// together ([`PubSubEvent::Messages`](crate::PubSubEvent::Messages), at
    /// most 1024 of them, within the sender's credit) is one event.
    /// Default 16 384.
    pub max_pending_events: usize,
    /// Payload bytes the node holds in pending events before the same. Default 16 MiB.
    pub max_pending_event_bytes: usize,
    /// Send a heartbeat when nothing was sent on a connection for this long. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Declare a peer dead when nothing was received from it for this long. Default 4 s.
    pub liveness_timeout: Duration,
    /// Time allowed from socket open to a complete handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time `close` waits for queued frames to flush before cutting
    /// connections; also the longest close wait of one connection (its
    /// goodbye is out and its socket half-closed: it is still read until the
    /// peer closes too, so the peer's last bytes are not met by a reset).
    /// Default 5 s.
    pub close_timeout: Duration,
    /// Bytes one `poll_transmit` hands out: a connection's quantum per round
    /// of the drain. Default 64 KiB.
    pub transmit_chunk: usize,
    /// Bytes one data source (the messages of one topic, later a stream or a
    /// transfer) writes per turn before the next source with data gets one.
    /// Default 16 KiB.
    pub source_quantum: usize,
    /// Test-only switch for the simulator's planted bug: close the socket
    /// right after the goodbye, without the close wait (the old close, which
    /// lost the unsent tail to a reset). Default false.
    pub plant_close_bug: bool,
    /// How long a session with a peer outlives a lost connection: messages
    /// to the peer keep queueing and, if it reconnects in time, what it did
    /// not acknowledge is sent again (see [`crate::resume`]). Longer than
    /// liveness + reconnect backoff + handshake. `Duration::ZERO` turns
    /// resumption off (the `RESUME` capability is not announced; a lost
    /// connection ends the session). Default 30 s.
    pub resume_window: Duration,
    /// How long a received message may wait for its ack when fewer than
    /// [`ACK_EVERY_MESSAGES`](crate::resume::ACK_EVERY_MESSAGES) arrived
    /// since the last one. Default 5 ms.
    pub ack_delay: Duration,
    /// Test only: a deliberate bug for the simulator's checker to find (a
    /// resumed session re-sends from one past the peer's resume point).
    #[doc(hidden)]
    pub planted_resend_bug: bool,
    /// Test only: a deliberate bug for the simulator's checker to find (the
    /// marker for messages a full queue overwrote is not written: the
    /// sender reports the gap, the receiver never learns of it).
    #[doc(hidden)]
    pub planted_overwrite_bug: bool,
    /// Test only: a deliberate bug for the simulator's checker to find (a
    /// run of received messages loses its last one, its credit and sequence
    /// number spent, uncounted: a silent loss).
    #[doc(hidden)]
    pub planted_run_bug: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_size: 8 << 20,
            max_name_len: 128,
            max_connections: 1024,
            max_read_buffer: 256 << 10,
            max_pending_events: 16_384,
            max_pending_event_bytes: 16 << 20,
            heartbeat_interval: Duration::from_secs(1),
            liveness_timeout: Duration::from_secs(4),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            transmit_chunk: 64 << 10,
            source_quantum: 16 << 10,
            plant_close_bug: false,
            resume_window: Duration::from_secs(30),
            ack_delay: Duration::from_millis(5),
            planted_resend_bug: false,
            planted_overwrite_bug: false,
            planted_run_bug: false,
        }
    }
}

/// Redialing the targets given to [`Node::connect`](crate::Node::connect).
#[derive(Clone, Debug)]
pub struct DialerConfig {
    /// First reconnect delay; doubles per failed attempt. Default 100 ms.
    pub reconnect_base: Duration,
    /// Largest reconnect delay. Default 5 s.
    pub reconnect_cap: Duration,
    /// Dial attempts in a row before a target is given up (`None`: never). Default `Some(30)`.
    pub reconnect_max_attempts: Option<u32>,
    /// A dial that has not connected after this long is abandoned (its
    /// socket closed, `CloseReason::DialTimeout`) and counts as a failed
    /// attempt: the target is redialed after the usual backoff. Without it a
    /// dial into a silent network (a partition that drops SYNs) waits for
    /// the kernel's SYN retries, about two minutes on Linux. A reconnect
    /// therefore follows a healed partition within about
    /// `dial_timeout + reconnect_cap`. Default 3 s (room for a SYN and its
    /// first retransmission, which Linux sends after 1 s).
    pub dial_timeout: Duration,
}

impl Default for DialerConfig {
    fn default() -> Self {
        DialerConfig {
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(5),
            reconnect_max_attempts: Some(30),
            dial_timeout: Duration::from_secs(3),
        }
    }
}

/// Topics, subscriptions, the send queues and credit flow control.
#[derive(Clone, Debug)]
pub struct PubSubConfig {
    /// Longest topic name in bytes. Default 256.
    pub max_topic_len: usize,
    /// Most topics one peer may subscribe to. Default 4096.
    pub max_subscriptions_per_peer: usize,
    /// Bytes queued for one peer (all its topics) before publishing to it is
    /// refused. Default 8 MiB.
    pub max_queued_bytes_per_peer: usize,
    /// Messages queued for one peer before publishing to it is refused. Default 65 536.
    pub max_queued_frames_per_peer: usize,
    /// Bytes queued for one subscription of one peer (one topic), so a
    /// subscription that stalls cannot take its peer's whole queue. Default 4 MiB.
    pub max_queued_bytes_per_subscription: usize,
    /// Messages queued for one subscription of one peer. Default 32 768.
    pub max_queued_frames_per_subscription: usize,
    /// What a publish to every subscriber does when one subscriber is full.
    pub full_queue_policy: FullQueuePolicy,
    /// The receive window of one subscription per sending peer, in messages:
    /// a peer may have at most this many messages on a topic sent and not
    /// yet consumed by this node's application. More credit is granted once
    /// about half of it was consumed. Default 16 384 (at 64-byte messages a smaller window makes the sender wait for grants).
    pub window_messages: u32,
    /// The same window in payload bytes (a message may overshoot it by its
    /// own size). Default 8 MiB.
    pub window_bytes: u64,
    /// When a received message counts as consumed.
    pub credit: CreditMode,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            max_topic_len: 256,
            max_subscriptions_per_peer: 4096,
            max_queued_bytes_per_peer: 8 << 20,
            max_queued_frames_per_peer: 65_536,
            max_queued_bytes_per_subscription: 4 << 20,
            max_queued_frames_per_subscription: 32_768,
            full_queue_policy: FullQueuePolicy::Backpressure,
            window_messages: 16384,
            window_bytes: 8 << 20,
            credit: CreditMode::OnPoll,
        }
    }
}

/// Request → stream-of-replies exchanges (the streams plane): limits,
/// credit windows and the stream heartbeat.
#[derive(Clone, Debug)]
pub struct StreamsConfig {
    /// Longest topic name in bytes. Default 256.
    pub max_topic_len: usize,
    /// Largest request payload; a larger one is closed at once with 4000.
    /// Default 64 KiB.
    pub max_request_size: usize,
    /// Largest single write (message) on a stream. Default 1 MiB.
    pub max_message_size: usize,
    /// A message longer than this leaves in fragments of this size, so one
    /// long message does not hold up other streams. Default 16 KiB.
    pub fragment_size: usize,
    /// Credit window of one stream, in bytes plus
    /// [`MESSAGE_COST`](crate::wire::MESSAGE_COST) per message: what a
    /// producer may send that this node's application has not consumed.
    /// More is granted once about half was consumed. Default 4 MiB (half
    /// the pub/sub window: at 128 KiB one stream waited for grants and
    /// moved 1 KiB messages at 0.37 of pub/sub's rate; at 4 MiB, 1.0). What
    /// a peer's streams hold together stays capped by `connection_window`.
    pub window: u64,
    /// Cap on the credit outstanding on all streams with one peer (the
    /// connection-wide window), and, in a session whose streams resume, on
    /// the stream bytes written to the peer and not yet acknowledged (kept
    /// for a re-send: the producer writes no more until an ack makes room;
    /// that cap is never below 64 KiB). Default 64 MiB.
    pub connection_window: u64,
    /// Streams this node may have open as a consumer, all peers together;
    /// more opens are closed at once with 1013. Default 16 384, at most
    /// [`MAX_OPEN_PER_SESSION`](crate::wire::MAX_OPEN_PER_SESSION).
    pub max_open_streams: usize,
    /// Streams one peer may have open with this node as producer; more are
    /// refused with 1013. Default 16 384.
    pub max_served_per_peer: usize,
    /// Topics one peer may announce it serves. Default 4096.
    pub max_served_topics_per_peer: usize,
    /// While streams are open with a peer, each side lists the ids it holds
    /// at this interval; a stream the other side no longer holds is closed.
    /// Default 5 s.
    pub heartbeat_interval: Duration,
    /// When received stream data counts as consumed (its credit goes back).
    pub credit: CreditMode,
    /// Streams one peer may cancel per second while this node serves them
    /// and before it wrote a reply, on average (open/cancel churn). Past
    /// it, and past `cancel_burst`, that peer's opens are refused with 1013
    /// until its bucket refills. Streams the producer replied on or closed
    /// never count. Default 1024.
    pub cancel_rate: u32,
    /// Cancels one peer may make at once before `cancel_rate` applies.
    /// Default 16 384 (every stream `max_served_per_peer` allows, dropped
    /// together).
    pub cancel_burst: u32,
    /// Test only: a deliberate bug for the simulator's checker to find (the
    /// producer ignores its credit).
    #[doc(hidden)]
    pub planted_bug: bool,
    /// Test only: a deliberate bug for the simulator's checker to find (a
    /// producer drops the replies it queued when its session is suspended,
    /// as if the streams had been reset, and goes on).
    #[doc(hidden)]
    pub planted_suspend_bug: bool,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            max_topic_len: 256,
            max_request_size: 64 << 10,
            max_message_size: 1 << 20,
            fragment_size: 16 << 10,
            window: 4 << 20,
            connection_window: 64 << 20,
            max_open_streams: 16_384,
            max_served_per_peer: 16_384,
            max_served_topics_per_peer: 4096,
            heartbeat_interval: Duration::from_secs(5),
            credit: CreditMode::OnPoll,
            cancel_rate: 1024,
            cancel_burst: 16_384,
            planted_bug: false,
            planted_suspend_bug: false,
        }
    }
}

/// Chunked, resumable, verified file transfer (the transfer plane).
#[derive(Clone, Debug)]
pub struct TransferConfig {
    /// Payload bytes per chunk frame this node sends. Default 64 KiB
    /// (lowered to fit `session.max_frame_size`).
    pub chunk_size: u32,
    /// Largest chunk size this node accepts in an offer. Default 1 MiB
    /// (lowered to fit `session.max_frame_size`).
    pub max_chunk_size: u32,
    /// The receive window of one transfer, in chunks: the sender may send at
    /// most this many chunks beyond what this node has synced to disk. It
    /// bounds the memory of a transfer on both ends and the bytes sent
    /// again after a crash. Default 512 (32 MiB at 64 KiB chunks): the
    /// receiver syncs every quarter window, and the sender goes on with the
    /// rest while a sync runs (at 16 MiB, synced every half, a 1 GiB file
    /// moved at 0.46 of a plain copy; now 0.8-1.0).
    pub window_chunks: u32,
    /// Bytes the sender reads from its file per read request. Default 1 MiB.
    pub read_size: usize,
    /// Most chunk bytes a sender keeps on the wire beyond what the receiver
    /// said it received, so messages on the same connection do not wait
    /// behind a window of file data in socket buffers; the sender paces
    /// below it by round trip (floor: a quarter of it plus a chunk), and a
    /// receiver reports what it received every eighth of it. Default 1 MiB.
    pub max_in_flight: u64,
    /// Largest file this node accepts. Default 1 TiB.
    pub max_file_size: u64,
    /// Transfers at once with one peer, each direction. Default 128.
    pub max_per_peer: usize,
    /// Transfers at once, each direction. Default 1024. Memory per transfer
    /// is bounded by its window (chunks read ahead, or received and not yet
    /// written), and is only used while a disk or a link is slower than
    /// the other end.
    pub max_total: usize,
    /// Largest metadata (keys and values together) in an offer. Default 4 KiB.
    pub max_metadata_bytes: usize,
    /// Longest file name accepted, in bytes. Default 240 (the partial and
    /// sidecar names add up to 14 bytes to it).
    pub max_name_len: usize,
    /// Accept `/`-separated subdirectories in names (each component is
    /// checked; no `..`). Default false.
    pub allow_subdirs: bool,
    /// Accept offers on receiving topics without asking the application.
    /// Default true.
    pub auto_accept: bool,
    /// Restart from byte 0 once when the received file does not match its
    /// hash. Default true.
    pub restart_on_mismatch: bool,
    /// How long a transfer waits for its peer to come back before it fails.
    /// Default 60 s.
    pub peer_timeout: Duration,
    /// Topics this node receives files on, at most. Default 1024.
    pub max_receive_topics: usize,
    /// Refused offers whose answer is waiting to be sent, per peer; a peer
    /// offering more is cut (protocol error). Default 64.
    pub max_pending_rejects: usize,
    /// Planted bug for the simulator's checker: the receiver grants the
    /// whole file at once instead of synced bytes + window, so a crash can
    /// cost more than one window of bytes sent again. Never set it.
    #[doc(hidden)]
    pub plant_credit_bug: bool,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            chunk_size: 64 << 10,
            max_chunk_size: 1 << 20,
            window_chunks: 512,
            read_size: 1 << 20,
            max_in_flight: 1 << 20,
            max_file_size: 1 << 40,
            max_per_peer: 128,
            max_total: 1024,
            max_metadata_bytes: 4096,
            max_name_len: 240,
            allow_subdirs: false,
            auto_accept: true,
            restart_on_mismatch: true,
            peer_timeout: Duration::from_secs(60),
            max_receive_topics: 1024,
            max_pending_rejects: 64,
            plant_credit_bug: false,
        }
    }
}

/// Limits, timers and the random seed of a [`Node`](crate::Node), one
/// sub-config per plane.
///
/// ```
/// use estafeta_core::Config;
/// use std::time::Duration;
/// let mut cfg = Config::default();
/// cfg.session.heartbeat_interval = Duration::from_millis(200);
/// cfg.session.liveness_timeout = Duration::from_millis(700);
/// cfg.pubsub.window_messages = 256;
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Seed for every random choice the node makes (node id if none is given,
    /// backoff jitter). Default 0; drivers fill it from OS randomness.
    pub seed: u64,
    /// The planes this node announces in its handshake. Default: every plane
    /// this build runs ([`Capabilities::SUPPORTED`]). Announcing fewer is
    /// allowed: peers then send this node no frame of the missing planes.
    pub capabilities: Capabilities,
    /// Connections, handshakes, liveness, the outbound scheduler.
    pub session: SessionConfig,
    /// Redialing.
    pub dialer: DialerConfig,
    /// Topics, queues and credit.
    pub pubsub: PubSubConfig,
    /// Request → stream-of-replies exchanges.
    pub streams: StreamsConfig,
    /// Groups, leases and limits of the membership plane.
    pub membership: crate::membership::MembershipConfig,
    /// Discovery through known peers, the root role, relay.
    pub discovery: DiscoveryConfig,
    /// File transfer.
    pub transfer: TransferConfig,
    /// Encryption, identities and admission (see [`crate::secure`]).
    pub security: crate::secure::SecurityConfig,
}

/// A configuration that cannot work, with the field that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {0}")]
pub struct ConfigError(pub &'static str);

impl Config {
    /// The default configuration in the plaintext mode (no encryption, ids
    /// claimed rather than proven): for tests, benchmarks and closed
    /// networks. Every peer must use the plaintext mode too.
    ///
    /// ```
    /// use estafeta_core::{Config, Node};
    /// let node = Node::new(Config::plaintext(), "alice").unwrap();
    /// assert!(Node::new(Config::default(), "alice").is_err(), "a secure node needs an identity");
    /// ```
    pub fn plaintext() -> Config {
        let mut c = Config::default();
        c.security.mode = crate::secure::SecurityMode::Plaintext;
        c
    }

    /// Checks that the limits are usable together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (s, d, p) = (&self.session, &self.dialer, &self.pubsub);
        let checks: [(bool, &'static str); 14] = [
            (s.max_frame_size >= 1024, "session.max_frame_size must be at least 1 KiB"),
            (s.max_frame_size <= u32::MAX as usize, "session.max_frame_size must fit in u32"),
            (s.max_pending_events > 0, "session.max_pending_events must be > 0"),
            (!s.heartbeat_interval.is_zero(), "session.heartbeat_interval must be > 0"),
            (s.liveness_timeout > s.heartbeat_interval, "session.liveness_timeout must exceed heartbeat_interval"),
            (s.transmit_chunk >= 512, "session.transmit_chunk must be at least 512"),
            (s.source_quantum > 0, "session.source_quantum must be > 0"),
            (!d.reconnect_base.is_zero(), "dialer.reconnect_base must be > 0"),
            (!d.dial_timeout.is_zero(), "dialer.dial_timeout must be > 0"),
            (p.max_queued_frames_per_peer > 0, "pubsub.max_queued_frames_per_peer must be > 0"),
            (p.max_queued_frames_per_subscription > 0, "pubsub.max_queued_frames_per_subscription must be > 0"),
            (p.window_messages >= 2, "pubsub.window_messages must be at least 2"),
            (p.window_bytes >= 2, "pubsub.window_bytes must be at least 2"),
            (self.security.rekey_after_records > 0, "security.rekey_after_records must be > 0"),
        ];
        let st = &self.streams;
        let streams: [(bool, &'static str); 6] = [
            (
                st.max_open_streams <= crate::wire::MAX_OPEN_PER_SESSION,
                "streams.max_open_streams must be at most 65 536",
            ),
            (st.window >= 2 * crate::wire::MESSAGE_COST, "streams.window must be at least 32"),
            (st.connection_window >= st.window, "streams.connection_window must be at least streams.window"),
            (st.fragment_size >= 64, "streams.fragment_size must be at least 64"),
            (!st.heartbeat_interval.is_zero(), "streams.heartbeat_interval must be > 0"),
            (st.cancel_rate > 0 && st.cancel_burst > 0, "streams.cancel_rate and cancel_burst must be > 0"),
        ];
        let t = &self.transfer;
        let transfer: [(bool, &'static str); 5] = [
            (t.chunk_size >= 1, "transfer.chunk_size must be > 0"),
            (t.window_chunks >= 2, "transfer.window_chunks must be at least 2"),
            (t.read_size >= 1, "transfer.read_size must be > 0"),
            (t.max_per_peer > 0 && t.max_total > 0, "transfer.max_per_peer and max_total must be > 0"),
            (t.max_name_len > 0 && t.max_name_len <= 241, "transfer.max_name_len must be in 1..=241"),
        ];
        let discovery = self.discovery.checks();
        match checks.iter().chain(streams.iter()).chain(transfer.iter()).chain(discovery.iter()).find(|(ok, _)| !ok) {
            Some((_, why)) => Err(ConfigError(why)),
            None => self.membership.validate(),
        }
    }
}
