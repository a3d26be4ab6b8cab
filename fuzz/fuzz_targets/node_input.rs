//! Fuzzes a node's input path: arbitrary bytes, split at arbitrary points,
//! on an accepted connection, after nothing, after a valid preamble, or after
//! a valid preamble and Hello. The node is driven with the real `Drain`.
//!
//! Input layout: byte 0 = mode (low 2 bits: what comes first; next 3 bits:
//! `max_pending_events`), byte 1 = number of split points `k`, then `k` bytes
//! of piece lengths, then the bytes to feed.
//!
//! Checks, besides "never panics": at most one protocol violation per
//! connection, and `Stats::malformed`, `Stats::received` and
//! `PubSubStats::dropped` match the events handed to the application.

#![no_main]

use estafeta_core::wire::{encode_frame, write_preamble, Capabilities, Header, Hello};
use estafeta_core::{Action, Config, ConnId, Drain, Event, Node, PubSubEvent, Sink, Step, Timestamp, WriteOutcome};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

#[derive(Default)]
struct App {
    events: Vec<Event>,
}

impl Sink for App {
    fn write(&mut self, _conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        WriteOutcome::Wrote(bytes.len())
    }
    fn act(&mut self, _action: Action) {}
    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        self.events.push(event);
        Ok(())
    }
}

fn prefix(mode: u8) -> Vec<u8> {
    let mut out = Vec::new();
    if mode >= 1 {
        write_preamble(&mut out);
    }
    if mode >= 2 {
        encode_frame(
            &mut out,
            &Header::Hello(Hello::new(
                0xfeed,
                "fuzzer",
                Capabilities::PUBSUB,
                if mode == 3 { vec!["a", "b"] } else { vec![] },
            )),
            &[],
        );
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mode = data[0] & 3;
    let max_events = 1 + ((data[0] >> 2) & 7) as usize;
    let k = (data[1] as usize).min(data.len() - 2);
    let lens = &data[2..2 + k];
    let body = &data[2 + k..];

    let mut cfg = Config::default();
    cfg.security.mode = estafeta_core::SecurityMode::Plaintext;
    cfg.session.max_pending_events = max_events;
    cfg.session.max_frame_size = 4096;
    cfg.session.max_read_buffer = 1024;
    cfg.pubsub.max_topic_len = 16;
    cfg.pubsub.max_subscriptions_per_peer = 4;
    cfg.session.heartbeat_interval = Duration::from_millis(100);
    cfg.session.liveness_timeout = Duration::from_millis(400);
    cfg.session.handshake_timeout = Duration::from_millis(500);
    let mut node = Node::new(cfg, "target").expect("valid config");
    node.pubsub().subscribe("a").expect("valid topic");
    let mut drain = Drain::default();
    let mut app = App::default();
    let mut now = Timestamp::from_millis(1);
    let conn = node.handle_accepted(now).expect("room for a connection");
    drain.run(&mut node, now, &mut app);

    let mut input = prefix(mode);
    input.extend_from_slice(body);
    let mut pos = 0;
    let mut piece = 0;
    while pos < input.len() {
        // Read only while the node wants to, as a driver must.
        if !node.wants_read(conn) {
            drain.run(&mut node, now, &mut app);
            if !node.wants_read(conn) {
                break;
            }
        }
        let len = lens.get(piece).map_or(input.len() - pos, |l| *l as usize + 1);
        let end = (pos + len).min(input.len());
        node.handle_bytes(now, conn, &input[pos..end]);
        pos = end;
        piece += 1;
        // Time moves a little with every piece; timers fire as they fall due.
        now += Duration::from_millis(7);
        drain.run(&mut node, now, &mut app);
    }
    // Let every timer run out (the drain fires what is due).
    now += Duration::from_secs(2);
    while let Step::Yield = drain.run(&mut node, now, &mut app) {}

    let violations = app.events.iter().filter(|e| matches!(e, Event::ProtocolViolation { .. })).count() as u64;
    assert!(violations <= 1, "one violation closes the connection");
    let stats = node.stats();
    assert_eq!(stats.session.malformed, violations);
    let messages = app.events.iter().filter(|e| matches!(e, Event::PubSub(PubSubEvent::Message(_)))).count() as u64;
    assert_eq!(stats.pubsub.received, messages);
    let dropped: u64 = app
        .events
        .iter()
        .map(Event::dropped)
        .sum();
    assert_eq!(stats.pubsub.dropped, dropped);
});
