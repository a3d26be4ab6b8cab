//! Node configuration: every limit has a name and a documented default.

use std::time::Duration;

/// What a node does when a subscriber's outbound queue is full during a
/// publish to every subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FullQueuePolicy {
    /// Refuse the whole publish with [`PublishError::Full`](crate::PublishError::Full);
    /// nothing is queued for anyone and the caller can wait for
    /// [`Event::Writable`](crate::Event::Writable). The default: nothing is lost.
    #[default]
    Backpressure,
    /// Queue the message for every subscriber that has room and drop it for the
    /// ones that are full. Each drop is counted in [`Stats::dropped`](crate::Stats)
    /// and reported by [`Event::Dropped`](crate::Event::Dropped).
    DropForFullPeers,
}

/// Limits, timers and the random seed of a [`Node`](crate::Node).
///
/// ```
/// use estafeta_core::Config;
/// use std::time::Duration;
/// let cfg = Config {
///     heartbeat_interval: Duration::from_millis(200),
///     liveness_timeout: Duration::from_millis(700),
///     ..Config::default()
/// };
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Seed for every random choice the node makes (node id if none is given,
    /// backoff jitter). Default 0; drivers fill it from OS randomness.
    pub seed: u64,
    /// Largest frame accepted or sent, header included, checked against the
    /// length prefix before anything is allocated. Default 8 MiB.
    pub max_frame_size: usize,
    /// Longest topic name in bytes. Default 256.
    pub max_topic_len: usize,
    /// Longest node name in bytes. Default 128.
    pub max_name_len: usize,
    /// Most topics one peer may subscribe to. Default 4096.
    pub max_subscriptions_per_peer: usize,
    /// Most connections (open, handshaking or dialing) at once. Default 1024.
    pub max_connections: usize,
    /// Bytes queued for one peer before publishing to it is refused. Default 8 MiB.
    pub max_queued_bytes_per_peer: usize,
    /// Frames queued for one peer before publishing to it is refused. Default 65 536.
    pub max_queued_frames_per_peer: usize,
    /// Received bytes buffered for one connection before the driver stops reading
    /// it (on top of one frame). Default 256 KiB.
    pub max_read_buffer: usize,
    /// Events the node holds for the application before it stops processing
    /// received bytes (and so stops reading sockets). Default 16 384.
    pub max_pending_events: usize,
    /// Payload bytes the node holds in pending events before it stops processing
    /// received bytes. Default 16 MiB.
    pub max_pending_event_bytes: usize,
    /// Send a heartbeat when nothing was sent on a connection for this long. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Declare a peer dead when nothing was received from it for this long. Default 4 s.
    pub liveness_timeout: Duration,
    /// Time allowed from socket open to a complete handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time `close` waits for queued frames to flush before cutting connections. Default 5 s.
    pub close_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt. Default 100 ms.
    pub reconnect_base: Duration,
    /// Largest reconnect delay. Default 5 s.
    pub reconnect_cap: Duration,
    /// Dial attempts in a row before a target is given up (`None`: never). Default `Some(30)`.
    pub reconnect_max_attempts: Option<u32>,
    /// What a publish to every subscriber does when one subscriber is full.
    pub full_queue_policy: FullQueuePolicy,
    /// Bytes `poll_transmit` hands out per call. Default 64 KiB.
    pub transmit_chunk: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            max_frame_size: 8 << 20,
            max_topic_len: 256,
            max_name_len: 128,
            max_subscriptions_per_peer: 4096,
            max_connections: 1024,
            max_queued_bytes_per_peer: 8 << 20,
            max_queued_frames_per_peer: 65_536,
            max_read_buffer: 256 << 10,
            max_pending_events: 16_384,
            max_pending_event_bytes: 16 << 20,
            heartbeat_interval: Duration::from_secs(1),
            liveness_timeout: Duration::from_secs(4),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(5),
            reconnect_max_attempts: Some(30),
            full_queue_policy: FullQueuePolicy::Backpressure,
            transmit_chunk: 64 << 10,
        }
    }
}

/// A configuration that cannot work, with the field that is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks that the limits are usable together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(bool, &'static str); 8] = [
            (self.max_frame_size >= 1024, "max_frame_size must be at least 1 KiB"),
            (self.max_frame_size <= u32::MAX as usize, "max_frame_size must fit in u32"),
            (self.max_queued_frames_per_peer > 0, "max_queued_frames_per_peer must be > 0"),
            (self.max_pending_events > 0, "max_pending_events must be > 0"),
            (!self.heartbeat_interval.is_zero(), "heartbeat_interval must be > 0"),
            (self.liveness_timeout > self.heartbeat_interval, "liveness_timeout must exceed heartbeat_interval"),
            (!self.reconnect_base.is_zero(), "reconnect_base must be > 0"),
            (self.transmit_chunk >= 512, "transmit_chunk must be at least 512"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(ConfigError(why)),
            None => Ok(()),
        }
    }
}
