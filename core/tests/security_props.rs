//! Properties of the secure channel: the handshake and records survive any
//! split of the byte stream; any flipped bit, truncated, replayed or
//! reordered record closes the connection with a reason, never panics and
//! never delivers a byte of that record, and the session resumes on a new
//! connection delivering each message exactly once, in order; admission decisions match the
//! policy.

use estafeta_core::secure::{admit, Identity, SecurityConfig, SecurityMode, SeededEntropy};
use estafeta_core::{Bytes, Config, Event, Node, NodeId, ProtocolError, SendMode, SessionEvent};
use proptest::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

mod common;
use common::{fast_config, Net};

fn secure(seed: u64) -> Config {
    let mut c = fast_config(seed);
    c.security.mode = SecurityMode::Noise;
    c.security.rekey_after_records = 3;
    c
}

fn node(seed: u64, name: &str) -> Node {
    let identity = Identity::generate(&mut SeededEntropy::from_seed(seed ^ 0x1D));
    Node::with_identity(secure(seed), identity, Box::new(SeededEntropy::from_seed(seed)), name).unwrap()
}

fn payload(i: u32) -> Vec<u8> {
    let mut p = i.to_be_bytes().to_vec();
    p.resize(40 + (i as usize % 50), i as u8);
    p
}

/// What the tap does to the first write from slot 0 once armed.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    Flip(usize),
    Truncate(usize),
    Replay,
    Reorder,
}

fn received(net: &Net) -> Vec<Vec<u8>> {
    net.messages(1).into_iter().map(|(_, p)| p).collect()
}

/// 0 dials 1; 1 subscribes; once up, `mutation` hits 0's next write; 0
/// publishes 30 messages.
fn run(mutation: Option<Mutation>, splits: u64) -> Net {
    let mut net = Net::new(vec![node(1, "a"), node(2, "b")]).with_splits(splits, 1 + (splits % 97) as usize, 1 << 16);
    let armed = Rc::new(RefCell::new((false, None::<Vec<u8>>)));
    let st = armed.clone();
    net.tap = Some(Box::new(move |from, _to, bytes| {
        let mut s = st.borrow_mut();
        if from != 0 || !s.0 {
            return;
        }
        if let Some(held) = s.1.take() {
            bytes.extend_from_slice(&held); // reorder: the held write goes after this one
            s.0 = false;
            return;
        }
        match mutation {
            Some(Mutation::Flip(p)) => {
                let at = p % bytes.len();
                bytes[at] ^= 1 << (p % 8);
            }
            Some(Mutation::Truncate(p)) => bytes.truncate(p % bytes.len()),
            Some(Mutation::Replay) => {
                let copy = bytes.clone();
                bytes.extend_from_slice(&copy);
            }
            Some(Mutation::Reorder) => {
                s.1 = Some(std::mem::take(bytes));
                return;
            }
            None => {}
        }
        s.0 = false;
    }));
    net.node(1).pubsub().subscribe("t").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    assert_eq!(net.slots[0].node.as_ref().unwrap().peers().count(), 1, "connected");
    armed.borrow_mut().0 = true;
    for i in 0..30 {
        let _ = net.node(0).pubsub().publish("t", Bytes::from(payload(i)), SendMode::All);
        net.settle();
    }
    net.run_for(Duration::from_secs(1));
    net
}

#[test]
fn untouched_records_deliver_everything_with_rekeys() {
    let net = run(None, 1);
    assert_eq!(received(&net), (0..30).map(payload).collect::<Vec<_>>());
    assert!(net.slots[1].node.as_ref().unwrap().stats().security.rekeys > 2, "rekeyed every 3 records");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn the_handshake_survives_any_split(splits in any::<u64>()) {
        let net = run(None, splits);
        prop_assert_eq!(received(&net), (0..30).map(payload).collect::<Vec<_>>());
    }

    #[test]
    fn a_tampered_record_closes_with_a_reason_and_the_session_resumes_exactly_once(
        kind in 0u8..4, pos in any::<usize>(), splits in any::<u64>()
    ) {
        let mutation = match kind {
            0 => Mutation::Flip(pos),
            1 => Mutation::Truncate(pos),
            2 => Mutation::Replay,
            _ => Mutation::Reorder,
        };
        let net = run(Some(mutation), splits);
        // The tampered connection closed with a reason at the receiver.
        let ev = &net.slots[1].events;
        let reason = ev.iter().find_map(|e| match e {
            Event::ProtocolViolation { error: ProtocolError::DecryptFailed(r), .. } => Some(r.clone()),
            Event::Session(SessionEvent::Suspended { reason, .. }) => Some(reason.to_string()),
            Event::PeerDown { reason, .. } => Some(reason.to_string()),
            _ => None,
        });
        prop_assert!(reason.is_some(), "{mutation:?}: the tampering went unnoticed (no reason at the receiver)");
        // The session survived it: resumed on a new connection, not ended.
        let resumed = net.slots.iter().any(|s| s.events.iter().any(|e| matches!(e, Event::Session(SessionEvent::Resumed { .. }))));
        prop_assert!(resumed, "{mutation:?}: the session did not resume");
        let ended = ev.iter().any(|e| matches!(e, Event::PeerDown { .. } | Event::Session(SessionEvent::Ended { .. })));
        prop_assert!(!ended, "{mutation:?}: the session ended");
        // Nothing corrupt, nothing twice, nothing missing, in order: every
        // message exactly once.
        let got = received(&net);
        let sent: Vec<Vec<u8>> = (0..30).map(payload).collect();
        prop_assert_eq!(got, sent, "{:?}: not each message exactly once in order", mutation);
    }

    #[test]
    fn admission_matches_the_policy(
        peer in 0u128..6, pin in proptest::option::of(0u128..6), allow in proptest::option::of(proptest::collection::btree_set(0u128..6, 0..4)), key in any::<bool>()
    ) {
        let cfg = SecurityConfig {
            allow: allow.clone().map(|s| s.into_iter().map(NodeId::from_u128).collect()),
            network_key: key.then_some([1; 32]),
            ..SecurityConfig::default()
        };
        let r = admit(&cfg, NodeId::from_u128(peer), pin.map(NodeId::from_u128));
        let expect_ok = pin.is_none_or(|p| p == peer) && allow.as_ref().is_none_or(|s| s.contains(&peer));
        prop_assert_eq!(r.is_ok(), expect_ok);
        if let Ok(auth) = r {
            prop_assert_eq!(auth, pin.is_some() || allow.is_some() || key);
        }
    }
}
