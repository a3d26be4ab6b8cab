//! How a simulation is built: [`SimConfig`], one [`NodeSetup`] per node, and
//! the core configurations the nodes run with. This is the one module that
//! writes `estafeta_core::Config` fields ([`fast_config`] and
//! [`NodeSetup::random`]); the rest of the simulator passes configs along.

use crate::link::LinkParams;
use crate::net::NetParams;
use crate::rng::Rng;
use estafeta_core::{Budget, Config, FullQueuePolicy};
use std::time::Duration;

/// Fast timers for simulation: 100 ms heartbeats, 400 ms liveness.
///
/// ```
/// assert!(estafeta_sim::fast_config().validate().is_ok());
/// ```
pub fn fast_config() -> Config {
    let mut c = Config::default();
    c.session.heartbeat_interval = Duration::from_millis(100);
    c.session.liveness_timeout = Duration::from_millis(400);
    c.session.handshake_timeout = Duration::from_millis(500);
    c.dialer.reconnect_base = Duration::from_millis(20);
    c.dialer.reconnect_cap = Duration::from_millis(300);
    c.dialer.reconnect_max_attempts = None;
    c.dialer.dial_timeout = Duration::from_millis(500);
    c.transfer.chunk_size = TRANSFER_CHUNK;
    c.transfer.window_chunks = TRANSFER_WINDOW_CHUNKS;
    c.transfer.read_size = 2 * TRANSFER_CHUNK as usize;
    c.transfer.max_in_flight = 3 * TRANSFER_CHUNK as u64;
    c.transfer.peer_timeout = Duration::from_micros(TRANSFER_PEER_TIMEOUT_US);
    // Ids chosen by the seed, frames the wire tap can read: the plaintext
    // mode. Secure runs set `security.mode` (see `crate::security`).
    c.security.mode = estafeta_core::SecurityMode::Plaintext;
    // Sessions that outlive connections (issue 14) are off by default here;
    // scenarios draw a window per run ([`draw_resume_window`]), and the
    // pub/sub observer switches to its session-aware accounting.
    c.session.resume_window = Duration::ZERO;
    c
}

/// Draws one `resume_window` for every node of a scenario, from a stream of
/// its own (so every other draw stays what it was): on in
/// `opts.resume_per_mille` runs per thousand, between 20 ms and the fault
/// window, so partitions (up to half the fault window) both shorter and
/// longer than it happen; otherwise off (0). Returns the window in
/// microseconds.
pub(crate) fn draw_resume_window(seed: u64, opts: &crate::scenario::Options, nodes: &mut [NodeSetup]) -> u64 {
    let mut r = Rng::derive(seed, &[crate::rng::STREAM_SCENARIO, 0x72]);
    let on = r.below(1000) < opts.resume_per_mille;
    let us = r.log_range(20_000, opts.fault_window_us.max(40_000));
    let us = if on { us } else { 0 };
    for n in nodes {
        n.config.session.resume_window = d(us);
        n.config.session.planted_resend_bug = opts.plant_resend_bug;
        n.config.session.planted_run_bug = opts.plant_run_bug;
        n.config.streams.planted_suspend_bug = opts.plant_stream_resume_bug;
    }
    us
}

/// In `per_mille` runs per thousand (drawn from a stream of its own, so
/// every other draw stays what it was), nodes drawn to drop for full peers
/// overwrite the oldest queued messages instead
/// (`FullQueuePolicy::DropOldest`).
pub(crate) fn draw_overwrite(seed: u64, opts: &crate::scenario::Options, nodes: &mut [NodeSetup]) {
    let mut r = Rng::derive(seed, &[crate::rng::STREAM_SCENARIO, 0x6f]);
    if r.below(1000) >= opts.overwrite_per_mille {
        return;
    }
    for n in nodes {
        n.config.session.planted_overwrite_bug = opts.plant_overwrite_bug;
        let p = &mut n.config.pubsub;
        if p.full_queue_policy == FullQueuePolicy::DropForFullPeers {
            p.full_queue_policy = FullQueuePolicy::DropOldest;
        }
    }
}

/// Chunk size of simulated transfers.
pub const TRANSFER_CHUNK: u32 = 4 << 10;
/// Window of simulated transfers, in chunks.
pub const TRANSFER_WINDOW_CHUNKS: u32 = 8;
/// How long a simulated transfer waits for its peer to come back.
pub const TRANSFER_PEER_TIMEOUT_US: u64 = 2_000_000;

fn d(us: u64) -> Duration {
    Duration::from_micros(us)
}

/// How one node is set up.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    /// The core configuration (its `seed` is replaced by one drawn from the
    /// simulator's seed).
    pub config: Config,
    /// The drain's work budget per run.
    pub budget: Budget,
    /// Clock drift in parts per million.
    pub drift_ppm: i64,
    /// The clock's reading at virtual time zero, in microseconds.
    pub clock_offset_us: u64,
    /// Bytes per second the driver reads from the network (`None`: as fast as
    /// bytes come).
    pub read_rate: Option<u64>,
}

impl Default for NodeSetup {
    fn default() -> Self {
        NodeSetup {
            config: fast_config(),
            budget: Budget::default(),
            drift_ppm: 0,
            clock_offset_us: 0,
            read_rate: None,
        }
    }
}

/// The timers of a node that bound how long it takes to reconnect, in
/// microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timers {
    /// A silent connection is declared dead after this long.
    pub(crate) liveness: u64,
    /// The reconnect backoff's longest wait.
    pub(crate) reconnect_cap: u64,
    /// A handshake not finished by then fails.
    pub(crate) handshake: u64,
}

impl Timers {
    /// The slower of two, timer by timer.
    pub(crate) fn max(self, o: Timers) -> Timers {
        Timers {
            liveness: self.liveness.max(o.liveness),
            reconnect_cap: self.reconnect_cap.max(o.reconnect_cap),
            handshake: self.handshake.max(o.handshake),
        }
    }
}

impl NodeSetup {
    /// A node drawn from `r`: timers, queue and buffer limits, the drain's
    /// budget, clock drift and offset.
    pub(crate) fn random(r: &mut Rng) -> NodeSetup {
        let hb = r.range(50_000, 150_000);
        let live = hb * r.range(3, 6);
        let cap = r.range(100_000, 500_000);
        let mut config = fast_config();
        let (s, dl, p) = (&mut config.session, &mut config.dialer, &mut config.pubsub);
        s.heartbeat_interval = d(hb);
        s.liveness_timeout = d(live);
        s.handshake_timeout = d(live + 100_000);
        // No draw of its own (every later draw stays what it was): as long as
        // the handshake, so it races the kernel's connect timeout
        // (`NetParams::connect_timeout_us`, 0.2-1 s in scenarios).
        dl.dial_timeout = d(live + 100_000);
        dl.reconnect_base = d(r.range(10_000, 50_000));
        dl.reconnect_cap = d(cap);
        dl.reconnect_max_attempts = if r.chance(500) { None } else { Some(r.range(3, 20) as u32) };
        p.full_queue_policy =
            if r.chance(700) { FullQueuePolicy::Backpressure } else { FullQueuePolicy::DropForFullPeers };
        p.max_queued_frames_per_peer = r.log_range(4, 4096) as usize;
        p.max_queued_bytes_per_peer = r.log_range(4 << 10, 1 << 20) as usize;
        s.transmit_chunk = r.log_range(512, 64 << 10) as usize;
        s.max_read_buffer = r.log_range(1 << 10, 256 << 10) as usize;
        s.max_pending_events = r.log_range(4, 16_384) as usize;
        // Drawn after the fields above, so those draw what they always drew.
        // Small windows make senders wait for credit often.
        p.window_messages = r.log_range(2, 4096) as u32;
        p.window_bytes = r.log_range(2 << 10, 8 << 20);
        p.max_queued_frames_per_subscription = (r.log_range(2, 4096) as usize).max(1);
        p.max_queued_bytes_per_subscription = r.log_range(2 << 10, 1 << 20) as usize;
        s.source_quantum = r.log_range(256, 64 << 10) as usize;
        NodeSetup {
            config,
            budget: Budget {
                bytes: r.log_range(512, 1 << 20) as usize,
                events: r.log_range(1, 4096) as usize,
                ..Budget::default()
            },
            drift_ppm: if r.chance(500) { r.range(0, 40_000) as i64 - 20_000 } else { 0 },
            clock_offset_us: r.below(10_000_000),
            read_rate: None,
        }
    }

    /// The timers that bound this node's reconnection.
    pub(crate) fn timers(&self) -> Timers {
        let us = |t: Duration| t.as_micros() as u64;
        Timers {
            liveness: us(self.config.session.liveness_timeout),
            reconnect_cap: us(self.config.dialer.reconnect_cap),
            handshake: us(self.config.session.handshake_timeout),
        }
    }
}

/// Everything a [`crate::Sim`] is built from.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The master seed: every random choice derives from it.
    pub seed: u64,
    /// One entry per node; node `i` is named `n{i}` and listens at `sim:{i}`.
    pub nodes: Vec<NodeSetup>,
    /// Topic names; topics are referred to by index.
    pub topics: Vec<String>,
    /// Link shape per ordered pair, `links[from * n + to]`.
    pub links: Vec<LinkParams>,
    /// Transport knobs.
    pub net: NetParams,
    /// Trace records kept readable for failure reports.
    pub trace_keep: usize,
    /// Print every trace record to stderr.
    pub trace_echo: bool,
    /// Give up (livelock) after this many events.
    pub max_steps: u64,
    /// Security actors and pinned dials (empty: none).
    pub security: crate::security::SimSecurity,
}

impl SimConfig {
    /// `n` nodes with default setups and links, topics `t0..t{topics}`.
    ///
    /// ```
    /// let cfg = estafeta_sim::SimConfig::uniform(1, 3, 2);
    /// assert_eq!(cfg.nodes.len(), 3);
    /// assert_eq!(cfg.topics, ["t0", "t1"]);
    /// assert_eq!(cfg.links.len(), 9);
    /// ```
    pub fn uniform(seed: u64, n: usize, topics: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes: (0..n).map(|_| NodeSetup::default()).collect(),
            topics: (0..topics).map(|i| format!("t{i}")).collect(),
            links: vec![LinkParams::default(); n * n],
            net: NetParams::default(),
            trace_keep: 0,
            trace_echo: false,
            max_steps: 20_000_000,
            security: Default::default(),
        }
    }
}
