//! A TCP proxy on std threads, standing between a dialer and a node: it
//! forwards both directions, and can record what the dialer sends or flip
//! one bit of it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the proxy does to the dialer's bytes.
#[derive(Clone, Copy, Debug)]
pub enum Tamper {
    /// Forward unchanged.
    None,
    /// Flip the lowest bit of the byte at this offset of the dialer's stream.
    FlipAt(usize),
}

/// A proxy listening on a local port, forwarding to `target`.
pub struct Proxy {
    port: u16,
    /// Everything the dialers sent through it, per connection.
    pub recorded: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Proxy {
    pub fn start(target: String, tamper: Tamper) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = recorded.clone();
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else { continue };
                let idx = {
                    let mut r = rec.lock().unwrap();
                    r.push(Vec::new());
                    r.len() - 1
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let rec = rec.clone();
                std::thread::spawn(move || pump(client, server, tamper, Some((rec, idx))));
                std::thread::spawn(move || pump(s2, c2, Tamper::None, None));
            }
        });
        Proxy { port, recorded }
    }

    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

type Record = (Arc<Mutex<Vec<Vec<u8>>>>, usize);

fn pump(mut from: TcpStream, mut to: TcpStream, tamper: Tamper, record: Option<Record>) {
    let mut buf = [0u8; 16 << 10];
    let mut offset = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((rec, i)) = &record {
            rec.lock().unwrap()[*i].extend_from_slice(&buf[..n]);
        }
        if let Tamper::FlipAt(at) = tamper {
            if at >= offset && at < offset + n {
                buf[at - offset] ^= 1;
            }
        }
        offset += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Connects to `addr`, writes `bytes`, and returns what comes back until the
/// peer closes (or 2 s pass).
pub fn replay(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}
