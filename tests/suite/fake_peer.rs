//! Peers that misbehave, written with std sockets on their own threads.

use estafeta_core::wire::{encode_frame, write_preamble, Capabilities, Header, Hello};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A peer that accepts connections and then says nothing more, keeping the
/// sockets open. With `handshake`, it first sends a valid preamble and Hello.
pub struct SilentPeer {
    port: u16,
}

impl SilentPeer {
    pub fn start(handshake: bool) -> SilentPeer {
        Self::start_with(handshake, &[])
    }

    /// A peer that completes the handshake announcing `subscriptions`, then
    /// never reads nor writes: whatever is sent to it backs up.
    pub fn subscriber(subscriptions: &[&'static str]) -> SilentPeer {
        Self::start_with(true, subscriptions)
    }

    fn start_with(handshake: bool, subscriptions: &[&'static str]) -> SilentPeer {
        let subscriptions = subscriptions.to_vec();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                if handshake {
                    let mut out = Vec::new();
                    write_preamble(&mut out);
                    let hello = Hello::new(0xfeed, "silent", Capabilities::PUBSUB, subscriptions.clone());
                    encode_frame(&mut out, &Header::Hello(hello), &[]);
                    // Unlimited credit: what holds the sender back is TCP
                    // (this peer never reads), not the protocol.
                    for topic in &subscriptions {
                        let credit = Header::Credit { topic, messages: u32::MAX, bytes: u64::MAX / 2 };
                        encode_frame(&mut out, &credit, &[]);
                    }
                    let _ = s.write_all(&out);
                }
                held.push(s);
            }
        });
        SilentPeer { port }
    }

    pub fn addr(&self) -> String {
        format!("silent@127.0.0.1:{}", self.port)
    }
}

/// Deterministic pseudo-random bytes that do not start with the magic.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8 | 0x80
        })
        .collect()
}

/// A valid preamble followed by a length prefix of 4 GiB - 1.
pub fn oversized_frame() -> Vec<u8> {
    let mut out = Vec::new();
    write_preamble(&mut out);
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    out
}

/// Connects to `addr`, writes `bytes`, and reads until the node closes the
/// connection (on a helper thread, so no runtime is blocked).
pub async fn send_and_read_reply(addr: &str, bytes: Vec<u8>) -> Vec<u8> {
    let result = Arc::new(Mutex::new(None::<Vec<u8>>));
    let (r, addr) = (result.clone(), addr.to_string());
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bytes).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        *r.lock().unwrap() = Some(reply);
    });
    loop {
        if let Some(reply) = result.lock().unwrap().take() {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A publisher written by hand: it says hello, then sends `size`-byte
/// messages on `topic` to the node at `addr`, `count` of them one by one
/// with `pause` between them, or (`count` of `None`) in 64 KiB writes until
/// the node stops reading for a second. Returns the bytes written.
pub fn publish_raw(
    addr: &str,
    topic: &'static str,
    size: usize,
    count: Option<usize>,
    pause: Duration,
) -> std::thread::JoinHandle<usize> {
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut out = Vec::new();
        write_preamble(&mut out);
        let hello = Hello::new(0xbeef, "raw", Capabilities::PUBSUB, vec![]);
        encode_frame(&mut out, &Header::Hello(hello), &[]);
        s.write_all(&out).unwrap();
        let payload = vec![0x5a; size];
        let mut written = 0;
        match count {
            Some(n) => {
                for _ in 0..n {
                    out.clear();
                    encode_frame(&mut out, &Header::Publish { topic }, &payload);
                    s.write_all(&out).unwrap();
                    written += out.len();
                    std::thread::sleep(pause);
                }
            }
            None => {
                s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                loop {
                    out.clear();
                    while out.len() < 64 << 10 {
                        encode_frame(&mut out, &Header::Publish { topic }, &payload);
                    }
                    if s.write_all(&out).is_err() {
                        break;
                    }
                    written += out.len();
                }
            }
        }
        // Keep the connection open (the node would drop what it holds).
        std::mem::forget(s);
        written
    })
}
