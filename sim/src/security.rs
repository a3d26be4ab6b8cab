//! Secure runs: identity keys per machine from the run seed, the actors
//! that try to get in (an impostor, a man in the middle, a plaintext peer),
//! and a ready-made scenario ([`secure_scenario`]) whose invariants
//! `check/security.rs` checks.
//!
//! Keys come from their own stream of the run seed ([`identity_of`]), never
//! from a node's `Config::seed`, so the same seed gives the same keys, the
//! same handshakes and the same trace hash.

use crate::config::{NodeSetup, SimConfig};
use crate::fault::Fault;
use crate::rng::{self, Rng};
use crate::sim::Sim;
use estafeta_core::secure::{Identity, NoiseCipher, SeededEntropy};
use estafeta_core::{NodeId, SecurityMode};

/// What a machine that tries to get in does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// Its own key, claiming the id of machine `victim` in its Hello (and,
    /// if `in_handshake`, presenting the victim's key with a signature it
    /// cannot make).
    Impostor {
        /// The machine it claims to be.
        victim: usize,
        /// It also presents the victim's key in the handshake.
        in_handshake: bool,
    },
    /// Its own key, listening where an honest dialer expects another
    /// machine (see [`SimSecurity::pins`]), and dialing honest machines
    /// itself to relay.
    Mitm,
    /// A node in the plaintext mode.
    Plaintext,
}

/// The security actors of a run and the pinned dials.
#[derive(Clone, Debug, Default)]
pub struct SimSecurity {
    /// `(machine, actor)`.
    pub actors: Vec<(usize, Actor)>,
    /// `(from, to, as)`: dials of `from` to machine `to` pin the id of machine `as`.
    pub pins: Vec<(usize, usize, usize)>,
}

impl SimSecurity {
    /// The id a dial of `from` to `to` pins, if any.
    pub(crate) fn pin(&self, seed: u64, from: usize, to: usize) -> Option<NodeId> {
        let (_, _, as_slot) = self.pins.iter().find(|(f, t, _)| *f == from && *t == to)?;
        Some(identity_of(seed, *as_slot).node_id())
    }

    /// The actor on `slot`, if one is.
    pub fn actor(&self, slot: usize) -> Option<Actor> {
        self.actors.iter().find(|(s, _)| *s == slot).map(|(_, a)| *a)
    }
}

/// The identity key of machine `slot` in a run with this seed (the same
/// across restarts).
///
/// ```
/// let a = estafeta_sim::identity_of(1, 0);
/// assert_eq!(a.node_id(), estafeta_sim::identity_of(1, 0).node_id());
/// assert_ne!(a.node_id(), estafeta_sim::identity_of(1, 1).node_id());
/// ```
pub fn identity_of(seed: u64, slot: usize) -> Identity {
    let key = Rng::derive(seed, &[rng::STREAM_KEYS, slot as u64]).next_u64();
    Identity::generate(&mut SeededEntropy::from_seed(key))
}

/// Makes `per_mille` of the runs secure: every node of the run in the
/// secure mode (Noise, any peer that proves a key admitted), with, drawn from
/// a stream of its own (so a plaintext run draws what it always drew): a
/// network key on half of them, ChaCha20-Poly1305 on a quarter, and a rekey
/// every 2 to 64 records per node. The wire taps read the frames from the
/// plaintext of each record, so every invariant is checked as on a plaintext
/// run.
pub(crate) fn secure_share(seed: u64, per_mille: u64, nodes: &mut [NodeSetup]) {
    let mut r = Rng::derive(seed, &[rng::STREAM_KEYS, 0x5EC5]);
    if !r.chance(per_mille.min(1000)) {
        return;
    }
    let network_key = r.chance(500).then_some([0x6B; 32]);
    let cipher = if r.chance(250) { NoiseCipher::ChaChaPoly } else { NoiseCipher::AesGcm };
    for setup in nodes {
        let sec = &mut setup.config.security;
        sec.mode = SecurityMode::Noise;
        sec.network_key = network_key;
        sec.cipher = cipher;
        sec.rekey_after_records = r.range(2, 64);
    }
}

/// The key entropy of process `process` of machine `slot`.
pub(crate) fn entropy(seed: u64, slot: usize, process: u64) -> SeededEntropy {
    SeededEntropy::from_seed(Rng::derive(seed, &[rng::STREAM_KEYS, slot as u64, process]).next_u64())
}

/// How [`secure_scenario`] is run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecureOptions {
    /// The planted bug: honest nodes accept identity payloads without
    /// checking their signature.
    pub skip_signature_check: bool,
    /// Schedule faults (resets, a restart, a partition) drawn from the seed.
    pub faults: bool,
    /// The planted bug of the impostor invariant: honest nodes check a
    /// Hello's id against the proven key only after closing the older
    /// connections of that id.
    pub late_hello_check: bool,
}

/// Honest machines in [`secure_scenario`]: 0..HONEST.
pub const HONEST: usize = 4;

/// Four honest secure machines that admit only each other (an allow list,
/// and a network key on some seeds) connected in a ring, and three that try
/// to get in: machine 4 an impostor of a victim drawn from the seed (on
/// some seeds an insider: in the allow list as itself, knowing the network
/// key),
/// machine 5 a man in the middle (honest machine 0 dials it pinned to
/// machine 1's id; it dials every honest machine itself), machine 6 a
/// plaintext peer. Every machine subscribes to topic 0. Returns the sim
/// after 3 s of virtual time.
pub fn secure_scenario(seed: u64, opts: SecureOptions) -> Sim {
    let mut r = Rng::derive(seed, &[rng::STREAM_SCENARIO, 0x5EC]);
    let n = HONEST + 3;
    let mut cfg = SimConfig::uniform(seed, n, 1);
    let mut honest: std::collections::BTreeSet<NodeId> = (0..HONEST).map(|s| identity_of(seed, s).node_id()).collect();
    let network_key = r.chance(500).then_some([0x4E; 32]);
    let victim = r.below(HONEST as u64) as usize;
    let in_handshake = r.chance(500);
    let insider = r.chance(500);
    if insider {
        // An insider impostor is a member: admitted as itself (allow list,
        // network key), it claims another member's id in its Hello.
        honest.insert(identity_of(seed, 4).node_id());
    }
    for (slot, setup) in cfg.nodes.iter_mut().enumerate() {
        let sec = &mut setup.config.security;
        sec.mode = SecurityMode::Noise;
        sec.rekey_after_records = r.range(2, 64);
        match slot {
            s if s < HONEST => {
                sec.allow = Some(honest.clone());
                sec.network_key = network_key;
                sec.skip_signature_check = opts.skip_signature_check;
                sec.late_hello_check = opts.late_hello_check;
            }
            4 => {
                sec.impersonate = Some(identity_of(seed, victim).public_key());
                sec.impersonate_in_handshake = in_handshake;
                // An insider knows the network key.
                sec.network_key = if insider { network_key } else { None };
            }
            5 => sec.network_key = if insider { network_key } else { None },
            _ => sec.mode = SecurityMode::Plaintext,
        }
    }
    for setup in &mut cfg.nodes[HONEST..] {
        // Actors give up after a few refusals (each costs a handshake).
        setup.config.dialer.reconnect_max_attempts = Some(4);
    }
    cfg.security.actors = vec![(4, Actor::Impostor { victim, in_handshake }), (5, Actor::Mitm), (6, Actor::Plaintext)];
    cfg.security.pins = vec![(0, 5, 1)];
    let mut sim = Sim::new(cfg);
    sim.keep_events();
    for s in 0..n {
        sim.subscribe(s, 0);
    }
    for s in 0..HONEST {
        sim.connect(s, (s + 1) % HONEST);
    }
    for actor in HONEST..n {
        // The impostor dials everyone but its victim.
        for s in (0..HONEST).filter(|s| actor != 4 || *s != victim) {
            sim.connect(actor, s);
        }
    }
    sim.connect(0, 5);
    sim.connect(2, 6);
    if opts.faults {
        let mut at = 0;
        for _ in 0..4 {
            at += r.range(50_000, 500_000);
            let a = r.below(HONEST as u64) as usize;
            let b = (a + 1) % HONEST;
            let fault = match r.below(3) {
                0 => Fault::Reset { a, b },
                1 => Fault::Restart { node: a, fresh: false },
                _ => Fault::Partition { a: vec![a], b: vec![b] },
            };
            sim.schedule(at, fault);
        }
        sim.schedule(at + 100_000, Fault::Heal);
    }
    sim
}
