//! Node configuration: one sub-config per plane, every limit named with a
//! documented default.

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
    /// driver that stops taking events. Default 16 384.
    pub max_pending_events: usize,
    /// Payload bytes the node holds in pending events before the same. Default 16 MiB.
    pub max_pending_event_bytes: usize,
    /// Send a heartbeat when nothing was sent on a connection for this long. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Declare a peer dead when nothing was received from it for this long. Default 4 s.
    pub liveness_timeout: Duration,
    /// Time allowed from socket open to a complete handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time `close` waits for queued frames to flush before cutting connections. Default 5 s.
    pub close_timeout: Duration,
    /// Bytes one `poll_transmit` hands out: a connection's quantum per round
    /// of the drain. Default 64 KiB.
    pub transmit_chunk: usize,
    /// Bytes one data source (the messages of one topic, later a stream or a
    /// transfer) writes per turn before the next source with data gets one.
    /// Default 16 KiB.
    pub source_quantum: usize,
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
}

impl Default for DialerConfig {
    fn default() -> Self {
        DialerConfig {
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(5),
            reconnect_max_attempts: Some(30),
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
        let checks: [(bool, &'static str); 13] = [
            (s.max_frame_size >= 1024, "session.max_frame_size must be at least 1 KiB"),
            (s.max_frame_size <= u32::MAX as usize, "session.max_frame_size must fit in u32"),
            (s.max_pending_events > 0, "session.max_pending_events must be > 0"),
            (!s.heartbeat_interval.is_zero(), "session.heartbeat_interval must be > 0"),
            (s.liveness_timeout > s.heartbeat_interval, "session.liveness_timeout must exceed heartbeat_interval"),
            (s.transmit_chunk >= 512, "session.transmit_chunk must be at least 512"),
            (s.source_quantum > 0, "session.source_quantum must be > 0"),
            (!d.reconnect_base.is_zero(), "dialer.reconnect_base must be > 0"),
            (p.max_queued_frames_per_peer > 0, "pubsub.max_queued_frames_per_peer must be > 0"),
            (p.max_queued_frames_per_subscription > 0, "pubsub.max_queued_frames_per_subscription must be > 0"),
            (p.window_messages >= 2, "pubsub.window_messages must be at least 2"),
            (p.window_bytes >= 2, "pubsub.window_bytes must be at least 2"),
            (self.security.rekey_after_records > 0, "security.rekey_after_records must be > 0"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(ConfigError(why)),
            None => Ok(()),
        }
    }
}
