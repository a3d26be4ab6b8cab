//! Fuzzes a secure connection's records: two nodes complete a real handshake
//! in memory, then the receiver gets the sender's genuine records with the
//! fuzzer's edits (byte 0: what to do, then position and bytes). Never
//! panics; every message delivered is one that was sent, intact.

#![no_main]

use estafeta_core::secure::{Identity, SeededEntropy};
use estafeta_core::{Action, Bytes, Config, Event, Node, PubSubEvent, SendMode, Timestamp};
use libfuzzer_sys::fuzz_target;

fn node(seed: u64, name: &str) -> Node {
    let mut entropy = SeededEntropy::from_seed(seed);
    let identity = Identity::generate(&mut entropy);
    Node::with_identity(Config::default(), identity, Box::new(entropy), name).expect("valid")
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let now = Timestamp::from_millis(1);
    let (mut a, mut b) = (node(1, "a"), node(2, "b"));
    b.pubsub().subscribe("t").expect("topic");
    let target = a.connect("b@mem:1".parse().expect("address")).expect("dials");
    let Some(Action::Dial { conn: ca, .. }) = a.poll_action() else { return };
    a.handle_connected(now, ca);
    let cb = b.handle_accepted(now).expect("accepts");
    let (mut ab, mut ba) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        ab.clear();
        ba.clear();
        while a.poll_transmit(now, ca, &mut ab) > 0 {}
        while b.poll_transmit(now, cb, &mut ba) > 0 {}
        b.handle_bytes(now, cb, &ab);
        a.handle_bytes(now, ca, &ba);
    }
    assert!(a.target_peer(target).is_some(), "handshake completes");
    let sent: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 20 + i as usize]).collect();
    for p in &sent {
        let _ = a.pubsub().publish("t", Bytes::from(p.clone()), SendMode::All);
    }
    ab.clear();
    while a.poll_transmit(now, ca, &mut ab) > 0 {}
    let at = data[1] as usize * 256 + data[2] as usize;
    match data[0] % 4 {
        0 if !ab.is_empty() => {
            let i = at % ab.len();
            ab[i] ^= 1 << (data[0] % 8);
        }
        1 => ab.truncate(at % (ab.len() + 1)),
        2 => ab.splice(at.min(ab.len())..at.min(ab.len()), data[3..].iter().copied()).for_each(drop),
        _ => ab = data[3..].to_vec(),
    }
    b.handle_bytes(now, cb, &ab);
    while let Some(ev) = b.poll_event() {
        if let Event::PubSub(PubSubEvent::Message(m)) = ev {
            assert!(sent.iter().any(|p| p[..] == m.payload[..]), "a corrupt message was delivered");
        }
    }
});
