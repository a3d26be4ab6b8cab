//! The discovery plane's configuration.

use std::time::Duration;

/// Discovery through known peers, the root role and relay
/// ([`Config::discovery`](crate::Config)).
///
/// ```
/// use estafeta_core::Config;
/// let mut cfg = Config::default();
/// cfg.discovery.root = true;
/// cfg.discovery.root_max_connections = 64;
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// This node is a root: a well-known node others join through. It
    /// forwards requests, answers with referrals, needs no subscriptions and
    /// admits `root_max_connections` instead of `session.max_connections`.
    /// Default false.
    pub root: bool,
    /// The connection limit of a root. Default 4096.
    pub root_max_connections: usize,
    /// Close the connections to the known peers given with
    /// [`Discovery::join`](crate::Discovery::join) once every local topic has
    /// a peer that is not one of them; join again when a topic loses its
    /// last peer. Default false.
    pub drop_root_when_paired: bool,
    /// Hops a request may travel. Default 6.
    pub request_ttl: u8,
    /// Most node ids a request's visited set carries. Default 32.
    pub max_visited: usize,
    /// Most topics in one request. Default 64.
    pub max_topics_per_request: usize,
    /// Request keys remembered so each request is handled at most once.
    /// When full the oldest is forgotten (counted). Default 4096.
    pub max_seen_requests: usize,
    /// How long a request key is remembered. Default 60 s.
    pub seen_expiry: Duration,
    /// First delay before an unpaired topic is asked for again; doubles per
    /// attempt. Default 250 ms.
    pub retry_base: Duration,
    /// Longest delay between requests while a topic is unpaired. Default 10 s.
    pub retry_cap: Duration,
    /// Discovery frames queued for one connection; more are dropped
    /// (counted). Default 64.
    pub max_queued_frames: usize,
    /// Peers remembered per topic for referrals. Default 8.
    pub max_known_per_topic: usize,
    /// Topics remembered for referrals. Default 1024.
    pub max_known_topics: usize,
    /// How long a remembered peer is referred. Default 60 s.
    pub known_expiry: Duration,
    /// A node that dropped its roots (every topic paired) connects to them
    /// again this often (with jitter), so that a root that restarted and
    /// knows nobody learns of it from its Hello and can refer newcomers to
    /// it; the root is dropped again at once. Zero: never. Default 20 s
    /// (a third of `known_expiry`, so a root's record never runs out).
    pub root_refresh: Duration,
    /// Most peers in one referral. Default 16.
    pub max_referrals: usize,
    /// Relay: most relays a message goes through. Default 8.
    pub relay_hop_limit: u8,
    /// Relay: de-duplication window per (origin, topic), in sequence
    /// numbers (a multiple of 64). Default 1024.
    pub relay_window: u32,
    /// Relay: (origin, topic) windows kept; the least recently used is
    /// forgotten when full (counted). Default 4096.
    pub max_relay_origins: usize,
    /// Relay: topics this node may publish on with sequence numbers. Default 1024.
    pub max_relay_topics: usize,
    /// Test-only switch for the simulator's planted bug: forget the seen
    /// set, so a request may be handled more than once.
    #[doc(hidden)]
    pub planted_bug: bool,
    /// Test-only switch for the simulator's planted ring deadlock: relayed
    /// copies may hold their upstream's whole credit window (not half).
    #[doc(hidden)]
    pub planted_full_relay_hold: bool,
    /// Test-only switch for the simulator's planted bug: forward a request
    /// back to the peer it came from too, and send queued copies even to a
    /// peer that sent the same request meanwhile.
    #[doc(hidden)]
    pub planted_send_back: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            root: false,
            root_max_connections: 4096,
            drop_root_when_paired: false,
            request_ttl: 6,
            max_visited: 32,
            max_topics_per_request: 64,
            max_seen_requests: 4096,
            seen_expiry: Duration::from_secs(60),
            retry_base: Duration::from_millis(250),
            retry_cap: Duration::from_secs(10),
            max_queued_frames: 64,
            max_known_per_topic: 8,
            max_known_topics: 1024,
            known_expiry: Duration::from_secs(60),
            root_refresh: Duration::from_secs(20),
            max_referrals: 16,
            relay_hop_limit: 8,
            relay_window: 1024,
            max_relay_origins: 4096,
            max_relay_topics: 1024,
            planted_bug: false,
            planted_full_relay_hold: false,
            planted_send_back: false,
        }
    }
}

impl DiscoveryConfig {
    /// The checks `Config::validate` runs for this plane.
    pub(crate) fn checks(&self) -> [(bool, &'static str); 7] {
        [
            (self.request_ttl > 0, "discovery.request_ttl must be > 0"),
            (self.max_seen_requests > 0, "discovery.max_seen_requests must be > 0"),
            (!self.retry_base.is_zero(), "discovery.retry_base must be > 0"),
            (self.max_queued_frames > 0, "discovery.max_queued_frames must be > 0"),
            (self.relay_window >= 64 && self.relay_window % 64 == 0, "discovery.relay_window must be a multiple of 64"),
            (self.max_relay_origins > 0, "discovery.max_relay_origins must be > 0"),
            (self.root_max_connections > 0, "discovery.root_max_connections must be > 0"),
        ]
    }
}
