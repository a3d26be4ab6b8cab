//! A graceful close loses nothing on a slow reader: the closing node writes
//! its goodbye, half-closes its socket and keeps reading until the peer
//! closes, so the peer's heartbeats never meet a closed socket (whose
//! kernel would answer with a reset and throw away the unsent tail).

use super::util::{node, plain_config, sleep};
use estafeta_core::wire::{check_preamble, decode_frame, encode_frame, write_preamble, Capabilities, Header, Hello};
use estafeta_driver::{Bytes, Runtime};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the slow reader saw, once it is done.
#[derive(Debug, Default, Clone)]
pub struct ReadOutcome {
    /// Publish frames read.
    pub messages: usize,
    /// The goodbye's close code, if one arrived.
    pub goodbye: Option<u16>,
    /// The stream ended cleanly (end of stream after the goodbye).
    pub eof: bool,
    /// A read or write failed (a reset).
    pub error: Option<String>,
}

/// A subscriber written by hand that reads slowly: it accepts one
/// connection, says hello subscribing to `topic` with unlimited credit,
/// reads nothing for `pause`, then reads 16 KiB at a time with a pause of
/// `per_read` between reads, writing a heartbeat every 20 ms, until the
/// stream ends or fails. Once the stream ends it closes its socket.
pub struct SlowReader {
    port: u16,
    outcome: Arc<Mutex<Option<ReadOutcome>>>,
}

impl SlowReader {
    pub fn start(topic: &'static str, pause: Duration, per_read: Duration) -> SlowReader {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let outcome = Arc::new(Mutex::new(None));
        let out = outcome.clone();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_nodelay(true).unwrap();
            let mut hello = Vec::new();
            write_preamble(&mut hello);
            let h = Hello::new(0x51_0e, "slow", Capabilities::PUBSUB, vec![topic]);
            encode_frame(&mut hello, &Header::Hello(h), &[]);
            let credit = Header::Credit { topic, messages: u32::MAX, bytes: u64::MAX / 2 };
            encode_frame(&mut hello, &credit, &[]);
            s.write_all(&hello).unwrap();
            std::thread::sleep(pause);
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut heartbeat = Vec::new();
            encode_frame(&mut heartbeat, &Header::Heartbeat, &[]);
            let mut r = ReadOutcome::default();
            let mut rx = bytes::BytesMut::new();
            let mut preamble = false;
            let mut chunk = vec![0u8; 16 << 10];
            let mut last_hb = Instant::now();
            loop {
                if last_hb.elapsed() >= Duration::from_millis(20) {
                    last_hb = Instant::now();
                    // After our goodbye-less end the peer may be gone: a
                    // write error is what the old close caused, a reset.
                    if let Err(e) = s.write_all(&heartbeat) {
                        if r.goodbye.is_none() {
                            r.error = Some(format!("heartbeat: {e}"));
                            break;
                        }
                    }
                }
                match s.read(&mut chunk) {
                    Ok(0) => {
                        r.eof = true;
                        break;
                    }
                    Ok(n) => rx.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        r.error = Some(format!("read: {e}"));
                        break;
                    }
                }
                if !preamble && rx.len() >= estafeta_core::wire::PREAMBLE_LEN {
                    check_preamble(&rx.split_to(estafeta_core::wire::PREAMBLE_LEN)).unwrap();
                    preamble = true;
                }
                while let Some(frame) = preamble.then(|| decode_frame(&mut rx, 16 << 20).unwrap()).flatten() {
                    match frame.parse().unwrap().0 {
                        Header::Publish { .. } => r.messages += 1,
                        Header::Goodbye { code, .. } => r.goodbye = Some(code),
                        _ => {}
                    }
                }
                std::thread::sleep(per_read);
            }
            drop(s);
            *out.lock().unwrap() = Some(r);
        });
        SlowReader { port, outcome }
    }

    pub fn addr(&self) -> String {
        format!("slow@127.0.0.1:{}", self.port)
    }

    /// The outcome, once the reader is done.
    pub fn outcome(&self) -> Option<ReadOutcome> {
        self.outcome.lock().unwrap().clone()
    }
}

/// A publisher queues 4 MiB for a subscriber that reads slowly and sends
/// heartbeats, then closes. Before the close flushed properly, the
/// publisher's socket was closed with megabytes still unsent in the kernel:
/// the reader's next heartbeat met a closed socket, the kernel answered
/// with a reset, and the reader lost the tail and saw "connection reset by
/// peer". Now every message and the goodbye arrive, then a clean end of
/// stream, and `close` returns once the reader closed (well before
/// `close_timeout`).
pub async fn a_graceful_close_delivers_everything_to_a_slow_reader<R: Runtime>() {
    const N: usize = 4096;
    let reader = SlowReader::start("slow", Duration::from_millis(300), Duration::from_millis(1));
    let mut cfg = plain_config();
    cfg.session.close_timeout = Duration::from_secs(20);
    cfg.session.liveness_timeout = Duration::from_secs(10);
    let a = node::<R>("a", cfg).await;
    a.connect(reader.addr()).await.unwrap();
    a.wait_for_subscribers("slow", 1).await.unwrap();
    let payload = Bytes::from(vec![7u8; 1024]);
    for _ in 0..N {
        a.publish("slow", payload.clone()).await.unwrap();
    }
    let started = Instant::now();
    a.close().await;
    let took = started.elapsed();
    let mut outcome = None;
    for _ in 0..500 {
        outcome = reader.outcome();
        if outcome.is_some() {
            break;
        }
        sleep::<R>(Duration::from_millis(10)).await;
    }
    let o = outcome.expect("the reader finished");
    assert_eq!(o.error, None, "the reader met an error: {o:?}");
    assert_eq!(o.messages, N, "messages lost in the close: {o:?}");
    assert_eq!(o.goodbye, Some(1001), "the goodbye arrived: {o:?}");
    assert!(o.eof, "a clean end of stream after the goodbye: {o:?}");
    assert_eq!(a.stats().pubsub.dropped, 0, "nothing counted as dropped");
    assert!(took < Duration::from_secs(15), "close waited for the reader, not its timeout: {took:?}");
}
