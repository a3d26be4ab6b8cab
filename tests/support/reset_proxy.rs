//! A TCP proxy that resets the connections it carries.
//!
//! It listens on a local port and forwards each accepted connection to a
//! target, both directions, on a thread of its own (a current-thread tokio
//! runtime, so it serves tests on any runtime). Each connection lives a
//! time drawn uniformly from `min..=max` and is then *reset*: both sockets
//! are dropped with `SO_LINGER` 0, so each end gets a real RST and whatever
//! sat in the proxy's buffers or the kernel's is lost, as on a network that
//! fails. [`ResetProxy::reset_now`] resets every live connection at once;
//! [`ResetProxy::set_resetting`] pauses or resumes the timed resets.
//! [`ResetProxy::set_swallowing`] makes each timed reset lose bytes for
//! sure: the proxy first reads what the client sends next and drops it.
//!
//! Used by the behaviour suite (`tests/suite/sessions_io.rs`) and the e2e
//! bench (`benches/e2e/session.rs`), which include this file by path.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

/// What the proxy did so far.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    /// Connections accepted (and forwarded).
    pub accepted: AtomicU64,
    /// Connections reset (by the timer or by `reset_now`).
    pub resets: AtomicU64,
    /// Connections that ended on their own (an end closed).
    pub ended: AtomicU64,
    /// Accepted connections whose target refused the dial.
    pub refused: AtomicU64,
    /// Client bytes read and dropped at a reset (see `set_swallowing`).
    pub swallowed: AtomicU64,
}

/// State shared by the handle and the proxy's thread.
struct Shared {
    counts: ProxyCounts,
    /// Timed resets happen while this is true.
    resetting: AtomicBool,
    /// A timed reset first swallows the client's next bytes.
    swallowing: AtomicBool,
    /// Wakes every live connection to reset it now.
    reset_now: Notify,
    /// When each connection was accepted, in order.
    accepts: Mutex<Vec<Instant>>,
    /// Draws lifetimes.
    rng: Mutex<u64>,
    min: Duration,
    max: Duration,
}

impl Shared {
    /// A lifetime in `min..=max` (xorshift64*; the seed is printed at start).
    fn lifetime(&self) -> Duration {
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let span = (self.max - self.min).as_micros() as u64 + 1;
        self.min + Duration::from_micros(r % span)
    }
}

/// A resetting proxy; dropping it stops it (live connections are reset).
pub struct ResetProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ResetProxy {
    /// Starts forwarding `127.0.0.1:<port>` to `target`, resetting each
    /// connection after a lifetime drawn from `min..=max`. `seed` (non-zero)
    /// makes the lifetimes repeatable; 0 takes one from the clock.
    pub fn start(target: &str, min: Duration, max: Duration, seed: u64) -> ResetProxy {
        assert!(min <= max && !max.is_zero(), "lifetimes {min:?}..={max:?}");
        let seed = if seed != 0 {
            seed
        } else {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (t.as_nanos() as u64) | 1
        };
        let target: SocketAddr = target.parse().expect("target is host:port");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            counts: ProxyCounts::default(),
            resetting: AtomicBool::new(true),
            swallowing: AtomicBool::new(false),
            reset_now: Notify::new(),
            accepts: Mutex::new(Vec::new()),
            rng: Mutex::new(seed),
            min,
            max,
        });
        let (stop, stopped) = oneshot::channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("reset-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                    tokio::select! {
                        _ = accept_loop(listener, target, sh) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every connection's task and sockets.
            })
            .expect("proxy thread");
        eprintln!("reset proxy {addr} -> {target}: lifetimes {min:?}..={max:?}, seed {seed}");
        ResetProxy { addr, shared, stop: Some(stop), thread: Some(thread) }
    }

    /// `127.0.0.1:<port>`, to give to `Node::connect`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The counters.
    pub fn counts(&self) -> &ProxyCounts {
        &self.shared.counts
    }

    /// Connections reset so far.
    pub fn resets(&self) -> u64 {
        self.shared.counts.resets.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.counts.accepted.load(Ordering::Relaxed)
    }

    /// When each connection was accepted.
    pub fn accept_times(&self) -> Vec<Instant> {
        self.shared.accepts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Pauses (false) or resumes (true) the timed resets. A connection
    /// whose lifetime ends while paused draws another one.
    pub fn set_resetting(&self, on: bool) {
        self.shared.resetting.store(on, Ordering::SeqCst);
    }

    /// With `on`, a timed reset first waits (up to 100 ms) for the next
    /// bytes the client (the dialing end) sends, reads them and drops them:
    /// the client's kernel took them, so they are in flight and lost, and
    /// every reset costs the client something even when its traffic comes
    /// in bursts with idle gaps between. Without it a reset in a gap loses
    /// nothing.
    pub fn set_swallowing(&self, on: bool) {
        self.shared.swallowing.store(on, Ordering::SeqCst);
    }

    /// Client bytes dropped at resets so far.
    pub fn swallowed(&self) -> u64 {
        self.shared.counts.swallowed.load(Ordering::Relaxed)
    }

    /// Resets every live connection now (whether or not timed resets run).
    pub fn reset_now(&self) {
        self.shared.reset_now.notify_waiters();
    }
}

impl Drop for ResetProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let sh = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                sh.counts.refused.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_zero_linger();
                return;
            };
            sh.accepts.lock().unwrap_or_else(|e| e.into_inner()).push(Instant::now());
            sh.counts.accepted.fetch_add(1, Ordering::Relaxed);
            carry(client, server, sh).await;
        });
    }
}

/// Forwards until an end closes or the connection's time is up; then
/// drops both sockets (with `SO_LINGER` 0 when resetting: an RST each way).
async fn carry(mut client: TcpStream, mut server: TcpStream, shared: Arc<Shared>) {
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
        let _ = s.set_zero_linger();
    }
    let timed = async {
        loop {
            tokio::time::sleep(shared.lifetime()).await;
            if shared.resetting.load(Ordering::SeqCst) {
                return;
            }
        }
    };
    enum End {
        Closed,
        Timed,
        Now,
    }
    let end = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => End::Closed,
        _ = timed => End::Timed,
        _ = shared.reset_now.notified() => End::Now,
    };
    if matches!(end, End::Timed) && shared.swallowing.load(Ordering::SeqCst) {
        let mut buf = vec![0u8; 64 * 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), client.read(&mut buf)).await {
            shared.counts.swallowed.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    if !matches!(end, End::Closed) {
        shared.counts.resets.fetch_add(1, Ordering::Relaxed);
    } else {
        // Both ends closed in order: close in order too (no RST).
        shared.counts.ended.fetch_add(1, Ordering::Relaxed);
        for s in [&client, &server] {
            let _ = s.set_linger_none();
        }
    }
}

/// Restores the default linger on a socket that closes in order.
trait LingerNone {
    fn set_linger_none(&self) -> std::io::Result<()>;
}

impl LingerNone for TcpStream {
    #[allow(deprecated)] // `set_linger(None)` is the default, which never blocks
    fn set_linger_none(&self) -> std::io::Result<()> {
        self.set_linger(None)
    }
}
