//! The core's per-message cost without a driver: node A publishes 64 B
//! messages to node B through memory (no sockets, no threads, no locks), B
//! takes them as events, credit flows back. It prints the nanoseconds per
//! message on each side; under callgrind it gives instructions per message,
//! which do not depend on what else the machine is doing:
//!
//! ```text
//! cargo bench --bench hotpath
//! valgrind --tool=callgrind --toggle-collect='hotpath::send_side' \
//!     target/release/deps/hotpath-* --bench       # sender instructions
//! valgrind --tool=callgrind --toggle-collect='hotpath::recv_side' \
//!     target/release/deps/hotpath-* --bench       # receiver instructions
//! ```
//!
//! `HOTPATH_MESSAGES` (default 1,000,000; 10,000 without `--bench`) and
//! `HOTPATH_SIZE` (default 64) change the run; `HOTPATH_SECURE=1` runs the
//! pair on the secure channel (Noise, AES-GCM); `HOTPATH_RESUME=0` turns
//! sessions off (`resume_window` 0), to see what resumption costs.
//!
//! `HOTPATH_STREAM=1` measures one stream instead of pub/sub: the server
//! writes 64 B replies (`HOTPATH_SIZE`) on a stream the client opened, the
//! client takes them as events, credit flows back (toggle
//! `hotpath::stream_send_side` and `hotpath::stream_recv_side`).
//!
//! `HOTPATH_RTT=1` measures a request round trip instead (the streams
//! plane's `request`: open with a 64 B request, the server writes one 64 B
//! reply and closes), `HOTPATH_MESSAGES` round trips (default 100,000; 1,000
//! without `--bench`), one at a time:
//!
//! ```text
//! HOTPATH_RTT=1 valgrind --tool=callgrind --toggle-collect='hotpath::rtt_client' \
//!     --toggle-collect='hotpath::rtt_server' target/release/deps/hotpath-* --bench
//! ```

#[path = "support/pair.rs"]
mod support;

use estafeta_core::{
    CloseCode, ConnId, CreditMode, Event, Node, PubSubEvent, SendMode, StreamEvent, StreamId, Timestamp,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TOPIC: &str = "bench";

fn env(k: &str, default: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Publisher `a` connected to subscriber `b`, handshake and first credit done.
fn pair() -> (Node, ConnId, Node, ConnId) {
    let secure = env("HOTPATH_SECURE", 0) == 1;
    let resume = env("HOTPATH_RESUME", 1) == 1;
    let (b, cb, a, ca) = support::connected_in(secure, TOPIC, |c| {
        c.pubsub.credit = CreditMode::OnPoll;
        if !resume {
            c.session.resume_window = Duration::ZERO;
        }
    });
    assert_eq!(a.pubsub_ref().ready_subscriber_count(TOPIC), 1, "credit granted");
    (a, ca, b, cb)
}

/// Pulls up to about 1 MiB of what `node` has to write on `conn`.
#[inline(always)]
fn pull(node: &mut Node, conn: ConnId, out: &mut Vec<u8>) {
    out.clear();
    while node.poll_transmit(Timestamp::from_millis(2), conn, out) > 0 {
        if out.len() >= 1 << 20 {
            break;
        }
    }
}

/// Feeds `input` to `node` in 64 KiB reads, counts the events `payload_of`
/// takes (black-boxing their payload), then pulls what is owed back.
#[inline(always)]
fn take(
    node: &mut Node,
    conn: ConnId,
    input: &[u8],
    got: &mut usize,
    out: &mut Vec<u8>,
    messages_of: fn(Event) -> usize,
) {
    let now = Timestamp::from_millis(2);
    for chunk in input.chunks(64 << 10) {
        node.handle_bytes(now, conn, chunk);
        while let Some(ev) = node.poll_event() {
            *got += messages_of(ev);
        }
    }
    out.clear();
    while node.poll_transmit(now, conn, out) > 0 {}
}

/// The sender's work: publish until the queue is full, then pull bytes.
#[inline(never)]
fn send_side(a: &mut Node, ca: ConnId, payload: &bytes::Bytes, left: &mut usize, out: &mut Vec<u8>) {
    while *left > 0 && a.pubsub().publish(TOPIC, payload.clone(), SendMode::All).is_ok() {
        *left -= 1;
    }
    pull(a, ca, out);
}

/// The receiver's work: take the bytes, take the messages, pull credit.
#[inline(never)]
fn recv_side(b: &mut Node, cb: ConnId, input: &[u8], got: &mut usize, out: &mut Vec<u8>) {
    take(b, cb, input, got, out, |ev| match ev {
        Event::PubSub(PubSubEvent::Message(m)) => {
            black_box(m.payload);
            1
        }
        // Each message is built, as the application would take it.
        Event::PubSub(PubSubEvent::Messages(run)) => {
            let n = run.len();
            for m in run {
                black_box(m.payload);
            }
            n
        }
        _ => 0,
    });
}

/// The stream producer's work: write until the stream has no credit, then pull bytes.
#[inline(never)]
fn stream_send_side(
    s: &mut Node,
    cs: ConnId,
    id: StreamId,
    payload: &bytes::Bytes,
    left: &mut usize,
    out: &mut Vec<u8>,
) {
    while *left > 0 && s.streams().write(id, payload.clone()).is_ok() {
        *left -= 1;
    }
    pull(s, cs, out);
}

/// The stream consumer's work: take the bytes, take the replies, pull credit.
#[inline(never)]
fn stream_recv_side(c: &mut Node, cc: ConnId, input: &[u8], got: &mut usize, out: &mut Vec<u8>) {
    take(c, cc, input, got, out, |ev| match ev {
        Event::Stream(StreamEvent::Data { payload, .. }) => {
            black_box(payload);
            1
        }
        _ => 0,
    });
}

/// One stream's replies through memory: the producer writes while it has
/// credit, the consumer takes them.
fn stream_main(bench: bool) {
    let n = env("HOTPATH_MESSAGES", if bench { 1_000_000 } else { 10_000 });
    let size = env("HOTPATH_SIZE", 64);
    let (mut s, cs, mut c, cc) = support::connected_in(false, "unused", |cfg| {
        cfg.streams.credit = CreditMode::OnPoll;
    });
    let now = Timestamp::from_millis(2);
    s.streams().serve(ETOPIC).expect("serves");
    support::pump(&mut s, cs, &mut c, cc, now);
    c.streams().open(ETOPIC, bytes::Bytes::from_static(b"go"), None, None);
    let mut open = Vec::new();
    while c.poll_transmit(now, cc, &mut open) > 0 {}
    s.handle_bytes(now, cs, &open);
    let mut id = None;
    while let Some(ev) = s.poll_event() {
        if let Event::Stream(StreamEvent::Request { stream, .. }) = ev {
            id = Some(stream);
        }
    }
    let id = id.expect("the request arrived");
    let payload = bytes::Bytes::from(vec![0xA5u8; size]);
    let (mut left, mut got) = (n, 0usize);
    let (mut to_c, mut to_s) = (Vec::new(), Vec::new());
    let (mut t_send, mut t_recv) = (Duration::ZERO, Duration::ZERO);
    while got < n {
        let t = Instant::now();
        stream_send_side(&mut s, cs, id, &payload, &mut left, &mut to_c);
        t_send += t.elapsed();
        let t = Instant::now();
        stream_recv_side(&mut c, cc, &to_c, &mut got, &mut to_s);
        t_recv += t.elapsed();
        s.handle_bytes(now, cs, &to_s);
        while s.poll_event().is_some() {}
    }
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "hotpath stream size={size} messages={n} send_ns_per_msg={:.1} recv_ns_per_msg={:.1}",
        per(t_send),
        per(t_recv)
    );
}

const ETOPIC: &str = "bench-echo";

/// The consumer's part of one round trip: open a stream with the request,
/// pull its bytes; then (`reply`: the server's bytes) take the reply and the
/// stream's end, pull what is owed back.
#[inline(never)]
fn rtt_client(c: &mut Node, cc: ConnId, request: &bytes::Bytes, reply: Option<&[u8]>, out: &mut Vec<u8>) -> usize {
    let now = Timestamp::from_millis(2);
    let mut got = 0;
    out.clear();
    match reply {
        None => {
            c.streams().open(ETOPIC, request.clone(), None, Some(Duration::from_secs(5)));
        }
        Some(bytes) => {
            c.handle_bytes(now, cc, bytes);
            while let Some(ev) = c.poll_event() {
                if let Event::Stream(StreamEvent::Data { payload, .. }) = ev {
                    got += 1;
                    black_box(payload);
                }
            }
        }
    }
    while c.poll_transmit(now, cc, out) > 0 {}
    got
}

/// The server's part: take the request, write it back, close, pull the bytes.
#[inline(never)]
fn rtt_server(s: &mut Node, cs: ConnId, input: &[u8], out: &mut Vec<u8>) {
    let now = Timestamp::from_millis(2);
    out.clear();
    s.handle_bytes(now, cs, input);
    while let Some(ev) = s.poll_event() {
        if let Event::Stream(StreamEvent::Request { stream, request, .. }) = ev {
            s.streams().write(stream, request).expect("credit for one reply");
            s.streams().close(stream, CloseCode::NORMAL, "");
        }
    }
    while s.poll_transmit(now, cs, out) > 0 {}
}

/// Request round trips through memory, one at a time.
fn rtt_main(bench: bool) {
    let n = env("HOTPATH_MESSAGES", if bench { 100_000 } else { 1_000 });
    let secure = env("HOTPATH_SECURE", 0) == 1;
    let (mut s, cs, mut c, cc) = support::connected_in(secure, "unused", |_| {});
    let now = Timestamp::from_millis(2);
    s.streams().serve(ETOPIC).expect("serves");
    support::pump(&mut s, cs, &mut c, cc, now);
    assert_eq!(c.streams_ref().server_count(ETOPIC), 1, "server known");
    let request = bytes::Bytes::from(vec![0x5Au8; 64]);
    let (mut to_s, mut to_c, mut back) = (Vec::new(), Vec::new(), Vec::new());
    let t = Instant::now();
    let mut got = 0;
    for _ in 0..n {
        rtt_client(&mut c, cc, &request, None, &mut to_s);
        rtt_server(&mut s, cs, &to_s, &mut to_c);
        got += rtt_client(&mut c, cc, &request, Some(&to_c), &mut back);
        if !back.is_empty() {
            // Credit or a cancel owed to the server: it takes it now.
            s.handle_bytes(now, cs, &back);
            while s.poll_event().is_some() {}
        }
    }
    assert_eq!(got, n, "one reply per request");
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("hotpath rtt round_trips={n} ns_per_round_trip={ns:.1}");
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    if env("HOTPATH_RTT", 0) == 1 {
        return rtt_main(bench);
    }
    if env("HOTPATH_STREAM", 0) == 1 {
        return stream_main(bench);
    }
    let n = env("HOTPATH_MESSAGES", if bench { 1_000_000 } else { 10_000 });
    let size = env("HOTPATH_SIZE", 64);
    let (mut a, ca, mut b, cb) = pair();
    let payload = bytes::Bytes::from(vec![0xA5u8; size]);
    let (mut left, mut got) = (n, 0usize);
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    let (mut t_send, mut t_recv) = (Duration::ZERO, Duration::ZERO);
    let now = Timestamp::from_millis(2);
    while got < n {
        let t = Instant::now();
        send_side(&mut a, ca, &payload, &mut left, &mut to_b);
        t_send += t.elapsed();
        let t = Instant::now();
        recv_side(&mut b, cb, &to_b, &mut got, &mut to_a);
        t_recv += t.elapsed();
        a.handle_bytes(now, ca, &to_a);
        while a.poll_event().is_some() {}
    }
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!("hotpath size={size} messages={n} send_ns_per_msg={:.1} recv_ns_per_msg={:.1}", per(t_send), per(t_recv));
}
