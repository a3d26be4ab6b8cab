//! A graceful close ends in a close wait: the goodbye goes out, the driver
//! is asked to half-close the socket (`Action::HalfClose`), nothing more is
//! written, the peer's bytes are still read, and the connection is closed
//! (`Action::Close`) only when the peer closes too or `close_timeout` passes.
//! And a dial that does not connect within `dial_timeout` is abandoned and
//! redialed on the backoff.

mod common;

use common::handshake_bytes;
use estafeta_core::wire::{encode_frame, CloseCode, Header};
use estafeta_core::*;
use std::time::Duration;

#[derive(Default)]
struct Socket {
    written: Vec<u8>,
    actions: Vec<Action>,
    events: Vec<Event>,
}

impl Sink for Socket {
    fn write(&mut self, _conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        self.written.extend_from_slice(bytes);
        WriteOutcome::Wrote(bytes.len())
    }
    fn act(&mut self, action: Action) {
        self.actions.push(action);
    }
    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        self.events.push(event);
        Ok(())
    }
    fn file(&mut self, _request: estafeta_core::FileRequest) {}
}

impl Socket {
    fn closes(&self) -> usize {
        self.actions.iter().filter(|a| matches!(a, Action::Close { .. })).count()
    }
    fn half_closes(&self) -> usize {
        self.actions.iter().filter(|a| matches!(a, Action::HalfClose { .. })).count()
    }
    fn down_reason(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::PeerDown { reason, .. } => Some(reason),
            _ => None,
        })
    }
    fn closed(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Closed))
    }
}

fn frame(h: &Header<'_>, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    encode_frame(&mut b, h, payload);
    b
}

fn config() -> Config {
    let mut cfg = common::fast_config(1);
    cfg.session.close_timeout = Duration::from_millis(300);
    cfg.session.liveness_timeout = Duration::from_secs(2);
    cfg.session.heartbeat_interval = Duration::from_millis(100);
    cfg
}

/// A node with one open accepted connection from a hand-made peer that
/// subscribes to `t`, and its drain.
fn open_node() -> (Node, ConnId, Drain, Socket, Timestamp) {
    let mut node = Node::new(config(), "me").unwrap();
    node.pubsub().subscribe("news").unwrap();
    let now = Timestamp::from_millis(1);
    let conn = node.handle_accepted(now).unwrap();
    node.handle_bytes(now, conn, &handshake_bytes(7, "peer", &["t"]));
    let mut drain = Drain::default();
    let mut sock = Socket::default();
    drain.run(&mut node, now, &mut sock);
    assert_eq!(node.peers().count(), 1);
    sock.written.clear();
    (node, conn, drain, sock, now)
}

#[test]
fn the_goodbye_is_followed_by_a_half_close_and_nothing_else_is_written() {
    let (mut node, conn, mut drain, mut sock, now) = open_node();
    node.close();
    drain.run(&mut node, now, &mut sock);
    let text = String::from_utf8_lossy(&sock.written).to_string();
    assert!(text.contains("1001"), "the goodbye went out: {text:?}");
    assert_eq!(sock.half_closes(), 1, "{:?}", sock.actions);
    assert_eq!(sock.closes(), 0, "the socket stays open for reading: {:?}", sock.actions);
    assert!(!node.is_closed() && node.wants_read(conn), "still reading the peer");
    // Heartbeats are due during the wait; none is written after the goodbye,
    // and the peer's own heartbeats are read without harm.
    sock.written.clear();
    for i in 1..=2u64 {
        let t = now + Duration::from_millis(100 * i);
        node.handle_bytes(t, conn, &frame(&Header::Heartbeat, &[]));
        drain.run(&mut node, t, &mut sock);
    }
    assert!(sock.written.is_empty(), "bytes written after the goodbye: {:?}", sock.written);
    assert!(!node.is_closed());
    // The peer closes: the wait is over, the session ends with our reason.
    let t = now + Duration::from_millis(250);
    node.handle_closed(t, conn, CloseReason::Io("end of stream".into()));
    drain.run(&mut node, t, &mut sock);
    assert_eq!(sock.closes(), 1);
    assert_eq!(sock.down_reason(), Some(&CloseReason::Local(CloseCode::GOING_AWAY)));
    assert!(node.is_closed() && sock.closed());
}

#[test]
fn messages_the_peer_sends_during_the_close_wait_are_delivered() {
    let (mut node, conn, mut drain, mut sock, now) = open_node();
    node.close();
    drain.run(&mut node, now, &mut sock);
    assert_eq!(sock.half_closes(), 1);
    let mut bytes = frame(&Header::Publish { topic: "news" }, b"late");
    bytes.extend(frame(&Header::Goodbye { code: 1001, reason: "bye" }, &[]));
    node.handle_bytes(now, conn, &bytes);
    drain.run(&mut node, now, &mut sock);
    let late =
        sock.events.iter().any(|e| matches!(e, Event::PubSub(PubSubEvent::Message(m)) if m.payload[..] == b"late"[..]));
    assert!(late, "the message sent before the peer's goodbye is delivered: {:?}", sock.events);
    assert_eq!(sock.closes(), 1, "the peer's goodbye ends the wait");
    assert_eq!(sock.down_reason(), Some(&CloseReason::Local(CloseCode::GOING_AWAY)), "our close, our reason");
    assert!(node.is_closed());
}

#[test]
fn a_peer_that_never_closes_is_cut_at_close_timeout() {
    let (mut node, _conn, mut drain, mut sock, now) = open_node();
    node.close();
    drain.run(&mut node, now, &mut sock);
    assert_eq!((sock.half_closes(), sock.closes()), (1, 0));
    let step = drain.run(&mut node, now + Duration::from_millis(100), &mut sock);
    let Step::Idle { deadline: Some(d) } = step else { panic!("{step:?}") };
    assert!(d <= now + Duration::from_millis(300), "woken for the close wait: {d}");
    drain.run(&mut node, now + Duration::from_millis(300), &mut sock);
    assert_eq!(sock.closes(), 1);
    assert!(node.is_closed() && sock.closed());
}

#[test]
fn a_disconnected_target_waits_for_its_peer_then_its_own_close_wait_ends() {
    let mut node = Node::new(config(), "me").unwrap();
    let now = Timestamp::from_millis(1);
    let target = node.connect("peer@mem:1".parse().unwrap()).unwrap();
    let Some(Action::Dial { conn, .. }) = node.poll_action() else { panic!("a dial") };
    node.handle_connected(now, conn);
    node.handle_bytes(now, conn, &handshake_bytes(7, "peer", &[]));
    let (mut drain, mut sock) = (Drain::default(), Socket::default());
    drain.run(&mut node, now, &mut sock);
    node.disconnect(target);
    drain.run(&mut node, now, &mut sock);
    assert_eq!((sock.half_closes(), sock.closes()), (1, 0));
    assert!(node.peers().count() == 1, "the session lasts until the wait is over");
    assert_eq!(node.next_timer().map(|(_, r)| r), Some(TimerReason::CloseWait(conn)));
    drain.run(&mut node, now + Duration::from_millis(300), &mut sock);
    assert_eq!(sock.closes(), 1);
    assert_eq!(sock.down_reason(), Some(&CloseReason::Local(CloseCode::NORMAL)));
    assert_eq!(node.peers().count(), 0);
}

#[test]
fn a_dial_that_does_not_connect_is_abandoned_at_dial_timeout_and_redialed_on_the_backoff() {
    let mut cfg = config();
    cfg.dialer.dial_timeout = Duration::from_millis(700);
    cfg.dialer.reconnect_cap = Duration::from_millis(400);
    let mut node = Node::new(cfg, "me").unwrap();
    let start = Timestamp::from_millis(1);
    node.handle_timeout(start);
    let target = node.connect("peer@10.255.255.1:7000".parse().unwrap()).unwrap();
    let Some(Action::Dial { conn, .. }) = node.poll_action() else { panic!("a dial") };
    assert_eq!(node.next_timer(), Some((start + Duration::from_millis(700), TimerReason::DialTimeout(conn))));
    node.handle_timeout(start + Duration::from_millis(699));
    assert_eq!(node.poll_action(), None, "not yet");
    let at = start + Duration::from_millis(700);
    node.handle_timeout(at);
    assert_eq!(node.poll_action(), Some(Action::Close { conn }), "the driver drops the pending socket");
    let mut failed = None;
    while let Some(e) = node.poll_event() {
        if let Event::Dial(DialEvent::Failed { target: t, reason, retry_in, .. }) = e {
            failed = Some((t, reason, retry_in));
        }
    }
    let (t, reason, retry_in) = failed.expect("the timeout is reported");
    assert_eq!((t, reason), (target, CloseReason::DialTimeout));
    let retry_in = retry_in.expect("redialed");
    assert!(retry_in <= Duration::from_millis(400), "on the backoff: {retry_in:?}");
    node.handle_timeout(at + retry_in);
    assert!(matches!(node.poll_action(), Some(Action::Dial { conn: c, .. }) if c != conn), "dialed again");
}

#[test]
fn a_dial_that_connects_in_time_is_not_abandoned() {
    let mut cfg = config();
    cfg.dialer.dial_timeout = Duration::from_millis(700);
    let mut node = Node::new(cfg, "me").unwrap();
    let start = Timestamp::from_millis(1);
    node.connect("peer@mem:1".parse().unwrap()).unwrap();
    let Some(Action::Dial { conn, .. }) = node.poll_action() else { panic!("a dial") };
    node.handle_connected(start + Duration::from_millis(600), conn);
    node.handle_bytes(start + Duration::from_millis(600), conn, &handshake_bytes(7, "peer", &[]));
    node.handle_timeout(start + Duration::from_millis(800));
    assert_eq!(node.peers().count(), 1);
    assert!(!std::iter::from_fn(|| node.poll_action()).any(|a| matches!(a, Action::Close { .. })));
}

#[test]
fn a_zero_dial_timeout_is_refused() {
    let mut cfg = config();
    cfg.dialer.dial_timeout = Duration::ZERO;
    assert!(cfg.validate().is_err());
}

#[test]
fn garbage_during_the_close_wait_ends_it_without_writing_after_the_goodbye() {
    let (mut node, conn, mut drain, mut sock, now) = open_node();
    node.close();
    drain.run(&mut node, now, &mut sock);
    assert_eq!(sock.half_closes(), 1);
    sock.written.clear();
    node.handle_bytes(now, conn, &[0xff; 64]);
    drain.run(&mut node, now, &mut sock);
    assert!(sock.written.is_empty(), "no refusal after the goodbye: {:?}", sock.written);
    assert_eq!(sock.closes(), 1);
    assert!(sock.events.iter().any(|e| matches!(e, Event::ProtocolViolation { .. })));
    assert!(node.is_closed());
}
