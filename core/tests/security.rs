//! The secure channel between nodes in memory: handshakes, proven ids,
//! admission (pins, allow lists, network keys), refusals at both ends,
//! impostors, and a plaintext peer.

use estafeta_core::secure::{Identity, SecurityMode, SeededEntropy, HANDSHAKE_FAILED, UNAUTHORIZED};
use estafeta_core::{Bytes, Config, Event, Node, PeerAddr, ProtocolError, SendMode};

mod common;
use common::{fast_config, Net};

/// A secure config with the harness's short timers.
fn secure(seed: u64) -> Config {
    let mut c = fast_config(seed);
    c.security.mode = SecurityMode::Noise;
    c
}

fn identity(seed: u64) -> Identity {
    Identity::generate(&mut SeededEntropy::from_seed(seed ^ 0x1D))
}

fn node(cfg: Config, seed: u64, name: &str) -> Node {
    Node::with_identity(cfg, identity(seed), Box::new(SeededEntropy::from_seed(seed)), name).unwrap()
}

/// `addr` of slot `i`, pinned to `id` when given.
fn addr(i: usize, pin: Option<&Identity>) -> PeerAddr {
    let mut a = Net::addr(i);
    a.name = pin.map(|p| format!("{}", p.node_id()));
    a
}

fn peer_ups(net: &Net, i: usize) -> Vec<(String, bool)> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PeerUp { peer, authenticated, .. } => Some((peer.name.to_string(), *authenticated)),
            _ => None,
        })
        .collect()
}

fn violations(net: &Net, i: usize) -> Vec<ProtocolError> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ProtocolViolation { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

fn refusals(net: &Net, i: usize) -> Vec<(u16, String)> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Refused { code, reason, .. } => Some((code.0, reason.clone())),
            _ => None,
        })
        .collect()
}

/// Slot 0 dials slot 1 (pinning `pin`); slot 1 subscribes to "t"; slot 0 publishes once.
fn run(a: Node, b: Node, pin: Option<&Identity>, splits: Option<u64>) -> Net {
    let mut net = Net::new(vec![a, b]);
    if let Some(seed) = splits {
        net = net.with_splits(seed, 7, 13);
    }
    net.node(1).pubsub().subscribe("t").unwrap();
    net.node(0).connect(addr(1, pin)).unwrap();
    net.settle();
    let _ = net.node(0).pubsub().publish("t", Bytes::from_static(b"secret"), SendMode::All);
    net.settle();
    net
}

#[test]
fn secure_nodes_exchange_messages_and_prove_their_ids() {
    for splits in [None, Some(1), Some(2), Some(3)] {
        let (ia, ib) = (identity(1), identity(2));
        let net = run(node(secure(1), 1, "a"), node(secure(2), 2, "b"), None, splits);
        assert_eq!(net.messages(1), vec![("a".to_string(), b"secret".to_vec())], "splits {splits:?}");
        assert_eq!(peer_ups(&net, 0), vec![("b".into(), false)], "encrypted, not authenticated");
        assert_eq!(peer_ups(&net, 1), vec![("a".into(), false)]);
        let a = net.slots[0].node.as_ref().unwrap();
        let b = net.slots[1].node.as_ref().unwrap();
        assert_eq!(a.id(), ia.node_id());
        assert_eq!(b.peer_key(ia.node_id()), Some(ia.public_key()));
        assert_eq!(a.peer_key(ib.node_id()), Some(ib.public_key()));
        assert_eq!((a.stats().security.handshakes, b.stats().security.handshakes), (1, 1));
    }
}

#[test]
fn the_secret_never_crosses_the_wire_in_clear() {
    let mut net = Net::new(vec![node(secure(1), 1, "a"), node(secure(2), 2, "b")]);
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    net.tap = Some(Box::new(move |_, _, bytes| s.borrow_mut().extend_from_slice(bytes)));
    net.node(1).pubsub().subscribe("topic-in-clear?").unwrap();
    net.node(0).connect(addr(1, None)).unwrap();
    net.settle();
    net.node(0).pubsub().publish("topic-in-clear?", Bytes::from_static(b"top-secret-payload"), SendMode::All).unwrap();
    net.settle();
    assert_eq!(net.messages(1).len(), 1);
    let wire = seen.borrow();
    let has = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
    assert!(!has(b"top-secret-payload") && !has(b"topic-in-clear?"), "payload or topic in clear");
    assert!(!has(b"\x01a"), "names travel encrypted too");
}

#[test]
fn a_pinned_dial_admits_the_right_key_and_refuses_another_at_both_ends() {
    let ib = identity(2);
    let net = run(node(secure(1), 1, "a"), node(secure(2), 2, "b"), Some(&ib), None);
    assert_eq!(peer_ups(&net, 0), vec![("b".into(), true)], "pinned: authenticated");
    assert_eq!(net.messages(1).len(), 1);

    let wrong = identity(3);
    let net = run(node(secure(1), 1, "a"), node(secure(2), 2, "b"), Some(&wrong), None);
    assert!(peer_ups(&net, 0).is_empty() && peer_ups(&net, 1).is_empty());
    assert!(net.messages(1).is_empty());
    let v = violations(&net, 0);
    assert!(matches!(&v[..], [ProtocolError::Unauthorized(r)] if r.contains("dialed")), "{v:?}");
    let r = refusals(&net, 1);
    assert!(matches!(&r[..], [(code, text)] if *code == UNAUTHORIZED.0 && text.contains("dialed")), "{r:?}");
    assert_eq!(net.slots[0].node.as_ref().unwrap().stats().security.unauthorized, 1);
    assert_eq!(net.slots[1].node.as_ref().unwrap().stats().security.refused_by_peer, 1);
}

#[test]
fn an_allow_list_refuses_others_at_both_ends_and_admits_its_members() {
    let ia = identity(1);
    let mut cfg = secure(2);
    cfg.security.allow = Some([ia.node_id()].into_iter().collect());
    let net = run(node(secure(1), 1, "a"), node(cfg.clone(), 2, "b"), None, None);
    assert_eq!(peer_ups(&net, 1), vec![("a".into(), true)]);
    assert_eq!(peer_ups(&net, 0), vec![("b".into(), false)], "a itself pinned nothing");
    assert_eq!(net.messages(1).len(), 1);

    let net = run(node(secure(3), 3, "c"), node(cfg, 2, "b"), None, None);
    assert!(peer_ups(&net, 0).is_empty() && peer_ups(&net, 1).is_empty());
    assert!(net.messages(1).is_empty());
    let v = violations(&net, 1);
    assert!(matches!(&v[..], [ProtocolError::Unauthorized(r)] if r.contains("allow list")), "{v:?}");
    assert_eq!(v[0].close_code(), UNAUTHORIZED);
    let r = refusals(&net, 0);
    assert!(matches!(&r[..], [(code, text)] if *code == UNAUTHORIZED.0 && text.contains("allow list")), "{r:?}");
}

#[test]
fn a_network_key_admits_holders_and_fails_the_handshake_of_others() {
    let with_key = |seed, key: [u8; 32]| {
        let mut c = secure(seed);
        c.security.network_key = Some(key);
        c
    };
    let net = run(node(with_key(1, [7; 32]), 1, "a"), node(with_key(2, [7; 32]), 2, "b"), None, None);
    assert_eq!(peer_ups(&net, 0), vec![("b".into(), true)]);
    assert_eq!(net.messages(1).len(), 1);

    let net = run(node(with_key(1, [8; 32]), 1, "a"), node(with_key(2, [7; 32]), 2, "b"), None, None);
    assert!(peer_ups(&net, 0).is_empty() && peer_ups(&net, 1).is_empty());
    let v = violations(&net, 1);
    assert!(matches!(&v[..], [ProtocolError::HandshakeFailed(r)] if r.contains("network key")), "{v:?}");
    let r = refusals(&net, 0);
    assert!(matches!(&r[..], [(code, _)] if *code == HANDSHAKE_FAILED.0), "{r:?}");
    assert_eq!(net.slots[1].node.as_ref().unwrap().stats().security.handshake_failed, 1);

    // One side with a key, the other without: refused too.
    let net = run(node(secure(1), 1, "a"), node(with_key(2, [7; 32]), 2, "b"), None, None);
    assert!(peer_ups(&net, 0).is_empty() && peer_ups(&net, 1).is_empty());
}

#[test]
fn a_plaintext_peer_is_refused_with_a_reason_on_both_sides() {
    for plain_dials in [true, false] {
        let plain = Node::new(fast_config(5), "plain").unwrap();
        let sec = node(secure(6), 6, "sec");
        let (a, b) = if plain_dials { (plain, sec) } else { (sec, plain) };
        let net = run(a, b, None, None);
        assert!(peer_ups(&net, 0).is_empty() && peer_ups(&net, 1).is_empty());
        let (p, s) = if plain_dials { (0, 1) } else { (1, 0) };
        let vp = violations(&net, p);
        assert!(
            matches!(&vp[..], [ProtocolError::SecurityMismatch(r)] if r.contains("peer requires the secure transport")),
            "{vp:?}"
        );
        let vs = violations(&net, s);
        assert!(
            matches!(&vs[..], [ProtocolError::SecurityMismatch(r)] if r.contains("peer wants plaintext")),
            "{vs:?}"
        );
    }
}

#[test]
fn an_impostor_is_refused_and_the_victim_keeps_its_session() {
    let victim = identity(1);
    // Slot 0 victim dials slot 1 (bob); slot 2 impostor then dials bob claiming the victim.
    let imp_cfg = |in_handshake| {
        let mut c = secure(3);
        c.security.impersonate = Some(victim.public_key());
        c.security.impersonate_in_handshake = in_handshake;
        c
    };
    for in_handshake in [false, true] {
        let mut net = Net::new(vec![
            node(secure(1), 1, "alice"),
            node(secure(2), 2, "bob"),
            node(imp_cfg(in_handshake), 3, "alice"),
        ]);
        net.node(0).pubsub().subscribe("t").unwrap();
        net.node(2).pubsub().subscribe("t").unwrap();
        net.node(0).connect(addr(1, None)).unwrap();
        net.settle();
        net.node(2).connect(addr(1, None)).unwrap();
        net.settle();
        net.node(1).pubsub().publish("t", Bytes::from_static(b"for alice"), SendMode::All).unwrap();
        net.settle();
        assert_eq!(net.messages(0).len(), 1, "alice still gets her messages");
        assert!(net.messages(2).is_empty(), "the impostor gets none");
        assert_eq!(peer_ups(&net, 1), vec![("alice".into(), false)], "bob saw one alice: the real one");
        let downs = net.slots[1].events.iter().filter(|e| matches!(e, Event::PeerDown { .. })).count();
        assert_eq!(downs, 0, "alice's session was not ended");
        let v = violations(&net, 1);
        let ok = match &v[..] {
            [ProtocolError::HandshakeFailed(r)] => in_handshake && r.contains("signature"),
            [ProtocolError::Unauthorized(r)] => !in_handshake && r.contains("Hello claims"),
            _ => false,
        };
        assert!(ok, "in_handshake {in_handshake}: {v:?}");
    }
}

#[test]
fn skipping_the_signature_check_lets_the_impostor_in() {
    // The planted bug the simulator catches, shown here in one run.
    let victim = identity(1);
    let mut imp = secure(3);
    imp.security.impersonate = Some(victim.public_key());
    imp.security.impersonate_in_handshake = true;
    let mut bob = secure(2);
    bob.security.skip_signature_check = true;
    let net = run(node(imp, 3, "alice"), node(bob, 2, "bob"), None, None);
    assert_eq!(peer_ups(&net, 1), vec![("alice".into(), false)]);
    let b = net.slots[1].node.as_ref().unwrap();
    assert!(b.peers().any(|p| p.id == victim.node_id()), "up as its victim");
}

#[test]
fn same_entropy_same_bytes() {
    let wire = || {
        let mut net = Net::new(vec![node(secure(1), 1, "a"), node(secure(2), 2, "b")]);
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let s = seen.clone();
        net.tap = Some(Box::new(move |_, _, bytes| s.borrow_mut().extend_from_slice(bytes)));
        net.node(1).pubsub().subscribe("t").unwrap();
        net.node(0).connect(addr(1, None)).unwrap();
        net.settle();
        let out = seen.borrow().clone();
        out
    };
    let (x, y) = (wire(), wire());
    assert!(x.len() > 200);
    assert_eq!(x, y, "seeded entropy: a byte-identical transcript");
}

#[test]
fn a_secure_node_needs_an_identity_and_plaintext_is_explicit() {
    assert!(Node::new(Config::default(), "a").is_err());
    assert!(Node::with_id(Config::default(), estafeta_core::NodeId::from_u128(1), "a").is_err());
    assert_eq!(Config::default().security.mode, SecurityMode::Noise);
    assert!(Node::new(Config::plaintext(), "a").is_ok());
}

#[test]
fn per_topic_permissions_refuse_subscriptions_and_drop_publishes() {
    use estafeta_core::secure::{permissions::Allow, TopicRule};
    use estafeta_core::DropReason;
    let ia = identity(1);
    let mut cfg = secure(2);
    cfg.security
        .permissions
        .peers
        .insert(ia.node_id(), Allow { publish: vec![TopicRule::new("a.*")], subscribe: vec![TopicRule::new("pub.*")] });
    let mut net = Net::new(vec![node(secure(1), 1, "a"), node(cfg, 2, "b")]);
    net.node(0).pubsub().subscribe("secret").unwrap(); // in a's Hello: refused
    net.node(1).pubsub().subscribe("x").unwrap();
    net.node(1).pubsub().subscribe("a.ok").unwrap();
    net.node(0).connect(addr(1, None)).unwrap();
    net.settle();
    net.node(0).pubsub().subscribe("pub.news").unwrap(); // allowed
    net.node(0).pubsub().subscribe("other").unwrap(); // refused
    net.settle();
    let r = refusals(&net, 0);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r.iter().all(|(code, _)| *code == UNAUTHORIZED.0));
    assert!(r[0].1.contains("\"secret\"") && r[1].1.contains("\"other\""), "{r:?}");
    let b = net.slots[1].node.as_ref().unwrap();
    assert_eq!(b.stats().security.subscribe_denied, 2);
    assert_eq!(b.pubsub_ref().subscriber_count("pub.news"), 1);
    assert_eq!(b.pubsub_ref().subscriber_count("secret"), 0);
    net.node(0).pubsub().publish("x", Bytes::from_static(b"nope"), SendMode::All).unwrap();
    net.node(0).pubsub().publish("a.ok", Bytes::from_static(b"yes"), SendMode::All).unwrap();
    net.settle();
    assert_eq!(net.messages(1), vec![("a".to_string(), b"yes".to_vec())]);
    let b = net.slots[1].node.as_ref().unwrap();
    assert_eq!(b.stats().security.publish_denied, 1);
    let dropped = net.slots[1].events.iter().any(|e| {
        matches!(
            e,
            Event::PubSub(estafeta_core::PubSubEvent::Dropped { count: 1, reason: DropReason::NotPermitted, .. })
        )
    });
    assert!(dropped, "the refused publish is reported with its own reason");
}

#[test]
fn chachapoly_works_and_a_cipher_mismatch_fails_the_handshake() {
    use estafeta_core::secure::NoiseCipher;
    let chacha = |seed| {
        let mut c = secure(seed);
        c.security.cipher = NoiseCipher::ChaChaPoly;
        c
    };
    let net = run(node(chacha(1), 1, "a"), node(chacha(2), 2, "b"), None, Some(5));
    assert_eq!(net.messages(1), vec![("a".to_string(), b"secret".to_vec())]);
    let net = run(node(chacha(1), 1, "a"), node(secure(2), 2, "b"), None, None);
    assert!(peer_ups(&net, 0).is_empty() && peer_ups(&net, 1).is_empty());
    // The initiator cannot read message 2 (another protocol name, another hash).
    assert!(matches!(&violations(&net, 0)[..], [ProtocolError::HandshakeFailed(_)]), "{:?}", violations(&net, 0));
    assert!(matches!(&refusals(&net, 1)[..], [(code, _)] if *code == HANDSHAKE_FAILED.0), "{:?}", refusals(&net, 1));
}
