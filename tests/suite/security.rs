//! The secure channel on real sockets: refusals at both ends with their code
//! and text, a replayed handshake, men in the middle, a plaintext peer, a
//! bit-flipping proxy, an impostor.

use super::proxy::{replay, Proxy, Tamper};
use super::util::{collect, fast_config, sleep, within};
use estafeta_core::secure::{HANDSHAKE_FAILED, UNAUTHORIZED};
use estafeta_core::{CloseCode, ProtocolError};
use estafeta_driver::{Config, Event, Events, Node, Runtime};
use std::time::Duration;

/// `fast_config` (secure) that gives up a refused dial after 2 attempts.
pub fn secure_config() -> Config {
    let mut c = fast_config();
    c.dialer.reconnect_max_attempts = Some(2);
    c
}

async fn start<R: Runtime>(name: &str, cfg: Config) -> Node<R> {
    Node::<R>::builder(name).config(cfg).build().await.expect("node starts")
}

/// Waits (at most 5 s) for an event `f` picks, and returns what it picked.
async fn wait_for<R: Runtime, T>(events: &mut Events, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    within::<R, _>(Duration::from_secs(5), async {
        loop {
            let ev = events.recv().await.expect("node open");
            if let Some(t) = f(&ev) {
                return t;
            }
        }
    })
    .await
}

fn violation(ev: &Event) -> Option<ProtocolError> {
    match ev {
        Event::ProtocolViolation { error, .. } => Some(error.clone()),
        _ => None,
    }
}

fn refused(ev: &Event) -> Option<(CloseCode, String)> {
    match ev {
        Event::Refused { code, reason, .. } => Some((*code, reason.clone())),
        _ => None,
    }
}

pub async fn a_wrong_key_is_refused_at_both_ends_with_code_and_text<R: Runtime>() {
    let a = start::<R>("a", secure_config()).await;
    let mut cfg = secure_config();
    cfg.security.allow = Some([a.id()].into_iter().collect());
    let b = start::<R>("b", cfg).await;
    let mut b_events = b.events();
    let c = start::<R>("c", secure_config()).await;
    let mut c_events = c.events();
    assert!(c.connect(b.address().unwrap().to_string()).await.is_err(), "c is not allowed");
    let e = wait_for::<R, _>(&mut b_events, violation).await;
    assert!(matches!(&e, ProtocolError::Unauthorized(r) if r.contains("allow list")), "{e:?}");
    assert_eq!(e.close_code(), UNAUTHORIZED);
    let (code, text) = wait_for::<R, _>(&mut c_events, refused).await;
    assert_eq!(code, UNAUTHORIZED);
    assert!(text.contains("not in the allow list"), "{text}");
    assert!(b.stats().security.unauthorized >= 1 && c.stats().security.refused_by_peer >= 1);
    assert!(b.peers().is_empty() && c.peers().is_empty());
    // The allowed one gets in, authenticated at b.
    let mut b_events = b.events();
    a.connect(format!("b@{}", b.address().unwrap().host_port())).await.unwrap();
    let auth = wait_for::<R, _>(&mut b_events, |e| match e {
        Event::PeerUp { authenticated, .. } => Some(*authenticated),
        _ => None,
    })
    .await;
    assert!(auth);
}

pub async fn a_replayed_handshake_is_refused<R: Runtime>() {
    let b = start::<R>("b", secure_config()).await;
    let mut b_events = b.events();
    let proxy = Proxy::start(b.address().unwrap().host_port(), Tamper::None);
    let a = start::<R>("a", secure_config()).await;
    a.connect(format!("b@{}", proxy.host_port())).await.unwrap();
    sleep::<R>(Duration::from_millis(100)).await;
    let captured = proxy.recorded.lock().unwrap()[0].clone();
    assert!(captured.len() > 100);
    let before = b.stats().security.handshake_failed;
    // The captured dialer bytes (preamble, msg1, msg3, records) on a new socket.
    let reply = replay(&b.address().unwrap().host_port(), &captured);
    assert!(reply.starts_with(b"ESTF"), "b answers with its preamble");
    let e = wait_for::<R, _>(&mut b_events, violation).await;
    assert!(matches!(e, ProtocolError::HandshakeFailed(_)), "{e:?}");
    assert_eq!(b.stats().security.handshake_failed, before + 1);
    assert_eq!(b.peers().len(), 1, "only the real a is up at b");
}

pub async fn a_man_in_the_middle_is_refused_by_pin_allow_list_and_network_key<R: Runtime>() {
    // b is the real server; m sits in the middle with its own key.
    let b = start::<R>("b", secure_config()).await;
    let m = start::<R>("b", secure_config()).await;
    // 1. A pinning dialer that reaches m instead of b refuses it.
    let a = start::<R>("a", secure_config()).await;
    let mut a_events = a.events();
    let mut m_events = m.events();
    let pinned = format!("{}@{}", b.id(), m.address().unwrap().host_port());
    assert!(a.connect(pinned).await.is_err());
    let e = wait_for::<R, _>(&mut a_events, violation).await;
    assert!(matches!(&e, ProtocolError::Unauthorized(r) if r.contains("dialed")), "{e:?}");
    let (code, _) = wait_for::<R, _>(&mut m_events, refused).await;
    assert_eq!(code, UNAUTHORIZED);
    // The same pin to the real b is fine.
    a.connect(b.pinned_address().unwrap().to_string()).await.unwrap();

    // 2. An allow-listing acceptor refuses m relaying to it.
    let mut cfg = secure_config();
    cfg.security.allow = Some([a.id()].into_iter().collect());
    let d = start::<R>("d", cfg).await;
    let mut d_events = d.events();
    assert!(m.connect(d.address().unwrap().to_string()).await.is_err());
    let e = wait_for::<R, _>(&mut d_events, violation).await;
    assert!(matches!(e, ProtocolError::Unauthorized(_)), "{e:?}");

    // 3. With a network key, m (which lacks it) fails the handshake both ways.
    let keyed = || {
        let mut c = secure_config();
        c.security.network_key = Some([9; 32]);
        c
    };
    let k1 = start::<R>("k1", keyed()).await;
    let k2 = start::<R>("k2", keyed()).await;
    let mut k1_events = k1.events();
    assert!(m.connect(k1.address().unwrap().to_string()).await.is_err());
    let e = wait_for::<R, _>(&mut k1_events, violation).await;
    assert!(matches!(e, ProtocolError::HandshakeFailed(_)), "{e:?}");
    let mut k2_events = k2.events();
    assert!(k2.connect(m.address().unwrap().to_string()).await.is_err());
    let e = wait_for::<R, _>(&mut k2_events, |e| {
        violation(e).or(refused(e).map(|(c, r)| ProtocolError::Limit(format!("{c} {r}"))))
    })
    .await;
    let failed = match &e {
        ProtocolError::HandshakeFailed(_) => true,
        ProtocolError::Limit(t) => t.starts_with(&HANDSHAKE_FAILED.0.to_string()),
        _ => false,
    };
    assert!(failed, "{e:?}");
    // Holders of the key connect, authenticated.
    k2.connect(k1.address().unwrap().to_string()).await.unwrap();
}

pub async fn a_plaintext_peer_is_refused_with_a_reason<R: Runtime>() {
    let s = start::<R>("s", secure_config()).await;
    let mut s_events = s.events();
    let p = Node::<R>::builder("p").config(secure_config()).plaintext().build().await.unwrap();
    let mut p_events = p.events();
    assert!(p.connect(s.address().unwrap().to_string()).await.is_err());
    let e = wait_for::<R, _>(&mut s_events, violation).await;
    assert!(matches!(&e, ProtocolError::SecurityMismatch(r) if r.contains("peer wants plaintext")), "{e:?}");
    let e = wait_for::<R, _>(&mut p_events, violation).await;
    assert!(matches!(&e, ProtocolError::SecurityMismatch(r) if r.contains("requires the secure transport")), "{e:?}");
}

pub async fn a_flipped_bit_ends_the_connection_and_nothing_corrupt_is_delivered<R: Runtime>() {
    let b = start::<R>("b", secure_config()).await;
    let mut b_events = b.events();
    let mut sub = b.subscribe("t").unwrap();
    // Past the preamble and handshake: inside the first records.
    let proxy = Proxy::start(b.address().unwrap().host_port(), Tamper::FlipAt(2000));
    let a = start::<R>("a", secure_config()).await;
    a.connect(format!("b@{}", proxy.host_port())).await.unwrap();
    a.wait_for_subscribers("t", 1).await.unwrap();
    for i in 0..200u32 {
        let _ = a.publish("t", vec![i as u8; 64]).await;
    }
    let e = wait_for::<R, _>(&mut b_events, violation).await;
    assert!(matches!(&e, ProtocolError::DecryptFailed(r) if r.contains("decrypt failed")), "{e:?}");
    assert!(b.stats().security.decrypt_failed >= 1);
    let got = collect(&mut sub, Duration::from_millis(200)).await;
    assert!(got.iter().all(|m| m.payload.len() == 64 && m.payload.iter().all(|x| *x == m.payload[0])), "corrupt");
}

pub async fn an_impostor_is_refused_and_does_not_end_the_victims_session<R: Runtime>() {
    let b = start::<R>("b", secure_config()).await;
    let mut b_events = b.events();
    let alice = start::<R>("alice", secure_config()).await;
    let mut msgs = alice.subscribe("t").unwrap();
    alice.connect(b.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    for in_handshake in [false, true] {
        let mut cfg = secure_config();
        cfg.security.impersonate = alice.identity_key();
        cfg.security.impersonate_in_handshake = in_handshake;
        let imp = start::<R>("alice", cfg).await;
        assert_eq!(imp.id(), alice.id(), "claims alice's id");
        let _imp_msgs = imp.subscribe("t").unwrap();
        assert!(imp.connect(b.address().unwrap().to_string()).await.is_err());
        let e = wait_for::<R, _>(&mut b_events, violation).await;
        assert!(matches!(e, ProtocolError::Unauthorized(_) | ProtocolError::HandshakeFailed(_)), "{e:?}");
    }
    b.publish("t", b"for alice".to_vec()).await.unwrap();
    let got = collect(&mut msgs, Duration::from_millis(200)).await;
    assert_eq!(got.len(), 1, "alice still gets her messages");
    assert!(b.peers().iter().any(|p| p.id == alice.id()));
    assert!(!std::iter::from_fn(|| b_events.try_next()).any(|e| matches!(e, Event::PeerDown { .. })));
}

/// Messages of every size, up to records cut across frames (64 KiB and
/// more), cross a secure connection intact and in order: the driver reads
/// the rest of a long record straight into room kept for it and the core
/// opens it in place.
pub async fn messages_of_every_size_cross_a_secure_connection_intact<R: Runtime>() {
    let b = start::<R>("b", secure_config()).await;
    let mut sub = b.subscribe("t").unwrap();
    let a = start::<R>("a", secure_config()).await;
    a.connect(format!("b@{}", b.address().unwrap().host_port())).await.unwrap();
    a.wait_for_subscribers("t", 1).await.unwrap();
    let sizes: Vec<usize> = (0..60u32).map(|i| [1, 700, 20 << 10, 64 << 10, 65_500, 90_000][i as usize % 6]).collect();
    for (i, n) in sizes.iter().enumerate() {
        a.publish("t", vec![i as u8; *n]).await.unwrap();
    }
    within::<R, _>(Duration::from_secs(10), async {
        for (i, n) in sizes.iter().enumerate() {
            let m = sub.recv().await.expect("subscribed");
            assert_eq!(m.payload.len(), *n, "message {i}");
            assert!(m.payload.iter().all(|x| *x == i as u8), "message {i} corrupt");
        }
    })
    .await;
}
