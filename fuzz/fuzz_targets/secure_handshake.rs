//! Fuzzes a secure node's handshake path: arbitrary bytes (after a valid
//! secure preamble when byte 0 is odd) on an accepted connection, split at
//! the points byte 1 chooses. Never panics; never a peer up; at most one
//! refusal.

#![no_main]

use estafeta_core::secure::{Identity, SeededEntropy};
use estafeta_core::wire::write_preamble_mode;
use estafeta_core::{Config, Event, Node, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mut entropy = SeededEntropy::from_seed(1);
    let identity = Identity::generate(&mut entropy);
    let mut node = Node::with_identity(Config::default(), identity, Box::new(entropy), "target").expect("valid");
    let now = Timestamp::from_millis(1);
    let conn = node.handle_accepted(now).expect("accepts");
    let mut input = Vec::new();
    if data[0] & 1 == 1 {
        write_preamble_mode(&mut input, 1);
    }
    input.extend_from_slice(&data[2..]);
    let piece = 1 + data[1] as usize;
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        node.handle_bytes(now, conn, chunk);
        out.clear();
        while node.poll_transmit(now, conn, &mut out) > 0 {}
    }
    let mut refusals = 0;
    while let Some(ev) = node.poll_event() {
        assert!(!matches!(ev, Event::PeerUp { .. }), "up without a handshake");
        refusals += matches!(ev, Event::ProtocolViolation { .. }) as usize;
    }
    assert!(refusals <= 1);
});
