//! The drain keeps a closing connection open while its last bytes wait for a
//! blocked socket, so the goodbye reaches the peer: the half-close waits for
//! the goodbye to be written; the close wait, then the linger time, bound it.

mod common;

use common::handshake_bytes;
use estafeta_core::*;
use std::time::Duration;

#[derive(Default)]
struct Socket {
    blocked: bool,
    written: Vec<u8>,
    /// Shut down for writing (`HalfClose`) or closed.
    closed: bool,
}

impl Sink for Socket {
    fn write(&mut self, _conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        if self.blocked {
            return WriteOutcome::Blocked;
        }
        self.written.extend_from_slice(bytes);
        WriteOutcome::Wrote(bytes.len())
    }
    fn act(&mut self, action: Action) {
        if let Action::Close { .. } | Action::HalfClose { .. } = action {
            self.closed = true;
        }
    }
    fn deliver(&mut self, _event: Event) -> Result<(), Event> {
        Ok(())
    }
    fn file(&mut self, _request: estafeta_core::FileRequest) {}
}

/// A node with one open connection (handshake done) and a drain.
fn open_node() -> (Node, Drain, Socket, Timestamp) {
    let mut cfg = Config::default();
    cfg.security.mode = estafeta_core::SecurityMode::Plaintext;
    let mut node = Node::new(cfg, "me").unwrap();
    let now = Timestamp::from_millis(1);
    let conn = node.handle_accepted(now).unwrap();
    node.handle_bytes(now, conn, &handshake_bytes(7, "peer", &[]));
    let mut drain = Drain::default();
    let mut sock = Socket::default();
    drain.run(&mut node, now, &mut sock);
    assert_eq!(node.peers().count(), 1);
    (node, drain, sock, now)
}

#[test]
fn goodbye_waits_for_a_blocked_socket_then_the_connection_half_closes() {
    let (mut node, mut drain, mut sock, now) = open_node();
    sock.blocked = true;
    node.close();
    drain.run(&mut node, now, &mut sock);
    assert!(!sock.closed, "closed before the goodbye was written");
    sock.blocked = false;
    let before = sock.written.len();
    drain.run(&mut node, now + Duration::from_millis(5), &mut sock);
    assert!(sock.closed);
    let goodbye = String::from_utf8_lossy(&sock.written[before..]).to_string();
    assert!(goodbye.contains("1001"), "goodbye with its code went out: {goodbye:?}");
}

#[test]
fn a_socket_blocked_past_the_close_wait_and_the_linger_time_is_closed_anyway() {
    let (mut node, mut drain, mut sock, now) = open_node();
    sock.blocked = true;
    node.close();
    let step = drain.run(&mut node, now, &mut sock);
    let Step::Idle { deadline: Some(deadline) } = step else { panic!("{step:?}") };
    let wait = node.config().session.close_timeout;
    assert!(deadline <= now + wait, "the driver is woken for the end of the close wait");
    assert!(!sock.closed);
    let step = drain.run(&mut node, deadline, &mut sock);
    let Step::Idle { deadline: Some(deadline) } = step else { panic!("{step:?}") };
    assert!(deadline <= now + wait + Budget::default().linger, "then for the linger deadline");
    drain.run(&mut node, deadline, &mut sock);
    assert!(sock.closed, "closed when the linger time is up");
}
