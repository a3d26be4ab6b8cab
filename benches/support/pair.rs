//! Two core nodes connected through memory, for the core benches.

use estafeta_core::{Action, Config, ConnId, Node, Timestamp};

/// Moves every byte either node has for the other until both are quiet.
pub fn pump(a: &mut Node, ca: ConnId, b: &mut Node, cb: ConnId, now: Timestamp) {
    let mut buf = Vec::new();
    loop {
        let mut moved = false;
        buf.clear();
        if a.poll_transmit(now, ca, &mut buf) > 0 {
            b.handle_bytes(now, cb, &buf);
            moved = true;
        }
        buf.clear();
        if b.poll_transmit(now, cb, &mut buf) > 0 {
            a.handle_bytes(now, ca, &buf);
            moved = true;
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
}

/// A subscriber of `topic` and a publisher dialed to it, plaintext (the
/// benches measure the core, not the secure channel), `tune` applied to
/// both configs, handshake and first credit done. Returns (subscriber, its
/// connection, publisher, its connection).
#[allow(dead_code)]
pub fn connected(topic: &str, tune: impl Fn(&mut Config)) -> (Node, ConnId, Node, ConnId) {
    connected_in(false, topic, tune)
}

/// [`connected`], on the secure channel if `secure` (Noise, seeded keys).
pub fn connected_in(secure: bool, topic: &str, tune: impl Fn(&mut Config)) -> (Node, ConnId, Node, ConnId) {
    let now = Timestamp::from_millis(1);
    let cfg = |seed| {
        let mut c = if secure { Config { seed, ..Config::default() } } else { Config { seed, ..Config::plaintext() } };
        tune(&mut c);
        c
    };
    let node = |seed: u64, name: &str| {
        if secure {
            let mut entropy = estafeta_core::secure::SeededEntropy::from_seed(seed);
            let identity = estafeta_core::Identity::generate(&mut entropy);
            Node::with_identity(cfg(seed), identity, Box::new(entropy), name).expect("valid config")
        } else {
            Node::new(cfg(seed), name).expect("valid config")
        }
    };
    let mut sub = node(1, "sub");
    sub.pubsub().subscribe(topic).expect("valid topic");
    let mut publ = node(2, "pub");
    publ.connect("sub@mem:1".parse().expect("valid address")).expect("dials");
    let cp = match publ.poll_action() {
        Some(Action::Dial { conn, .. }) => conn,
        other => panic!("expected a dial, got {other:?}"),
    };
    publ.handle_connected(now, cp);
    let cs = sub.handle_accepted(now).expect("accepts");
    pump(&mut sub, cs, &mut publ, cp, now);
    assert_eq!(sub.peers().count(), 1, "handshake completed");
    (sub, cs, publ, cp)
}
