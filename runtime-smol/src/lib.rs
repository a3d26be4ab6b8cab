//! # estafeta-smol: estafeta on smol / async-io
//!
//! Plugs async-io's TCP sockets and timer and smol's `spawn` into the shared
//! driver. The API is that of [`estafeta_driver`], with the runtime filled in:
//!
//! ```no_run
//! # async fn demo() -> Result<(), estafeta_smol::Error> {
//! use estafeta_smol::Node;
//! let node = Node::builder("alice").bind("127.0.0.1:0").build().await?;
//! println!("listening at {}", node.address().unwrap());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use async_io::{Async, Timer as IoTimer};
use bytes::BytesMut;
use smol::io::AsyncWrite;
use std::future::Future;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

pub use estafeta_driver::*;

/// The smol runtime for estafeta.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

/// A node on smol.
pub type Node = estafeta_driver::Node<Smol>;
/// A node builder on smol.
pub type NodeBuilder = estafeta_driver::NodeBuilder<Smol>;
/// A file being sent, on smol.
pub type FileTransfer = estafeta_driver::FileTransfer<Smol>;

/// An async-io TCP stream with Nagle off.
#[derive(Debug)]
pub struct SmolSocket {
    io: Async<TcpStream>,
    /// The last read ran until the socket had nothing more: the next one
    /// waits for readiness first instead of failing a system call.
    drained: bool,
}

impl SmolSocket {
    /// After a read that drained the socket: `Ready` once async-io reports
    /// it readable again (registering `cx` meanwhile). Saves the read that
    /// would fail with `WouldBlock`; every one costs a system call.
    fn poll_drained(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.drained {
            return Poll::Ready(Ok(()));
        }
        // The readiness that led to the draining read is still reported
        // once (async-io reports an event until it is polled for): take it
        // if it is there. Interest is one-shot and was not armed again
        // since, so it cannot stand for newer data. The next call arms
        // interest again, and data that came meanwhile is reported at once.
        // A later readiness is new, and the next read goes ahead.
        self.drained = false;
        ready!(self.io.poll_readable(cx))?;
        self.io.poll_readable(cx)
    }
}

impl Socket for SmolSocket {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_drained(cx))?;
        loop {
            match (&mut self.io.get_ref()).read(buf) {
                Ok(n) => {
                    // A short read took everything there was.
                    self.drained = n > 0 && n < buf.len();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(self.io.poll_readable(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.io.get_ref().shutdown(std::net::Shutdown::Write)
    }
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        scratch: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !buf.is_empty() {
            // A partial frame is waiting: append after it (one copy).
            return poll_read_copy(self, cx, buf, scratch);
        }
        ready!(self.poll_drained(cx))?;
        // Empty buffer: std fills a fresh Vec's spare capacity without zeroing
        // it, and the buffer takes the Vec over without a copy.
        loop {
            let mut v = Vec::with_capacity(READ_CHUNK);
            let res = (&mut self.io.get_ref()).take(READ_CHUNK as u64).read_to_end(&mut v);
            let n = v.len();
            match res {
                Ok(_) => {
                    *buf = BytesMut::from(bytes::Bytes::from(v));
                    return Poll::Ready(Ok(n));
                }
                Err(e) if n > 0 => {
                    // Data first; a real error shows again on the next read.
                    // `WouldBlock`: the socket is empty, the next read waits.
                    self.drained = e.kind() == io::ErrorKind::WouldBlock;
                    *buf = BytesMut::from(bytes::Bytes::from(v));
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match self.io.poll_readable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Bytes read per socket read.
const READ_CHUNK: usize = 64 << 10;

fn socket(s: Async<TcpStream>) -> SmolSocket {
    // Frames are batched by the drain; Nagle would only add latency.
    let _ = s.get_ref().set_nodelay(true);
    SmolSocket { io: s, drained: false }
}

/// An async-io TCP listener.
#[derive(Debug)]
pub struct SmolListener(Async<TcpListener>);

impl Listener for SmolListener {
    type Socket = SmolSocket;
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(SmolSocket, SocketAddr)>> {
        loop {
            match self.0.get_ref().accept() {
                Ok((s, a)) => return Poll::Ready(Async::new(s).map(|s| (socket(s), a))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.0.poll_readable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

/// An async-io timer that can be reset.
#[derive(Debug)]
pub struct SmolTimer(IoTimer);

impl Timer for SmolTimer {
    fn reset(&mut self, at: Instant) {
        self.0.set_at(at);
    }
    fn poll_fire(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for Smol {
    type Socket = SmolSocket;
    type Listener = SmolListener;
    type Timer = SmolTimer;

    fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F) {
        smol::spawn(fut).detach();
    }
    async fn spawn_blocking<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(f: F) -> T {
        smol::unblock(f).await
    }
    async fn bind(addr: &str) -> io::Result<SmolListener> {
        let addrs: Vec<SocketAddr> = smol::net::resolve(addr).await?;
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
        for a in addrs {
            match Async::<TcpListener>::bind(a) {
                Ok(l) => return Ok(SmolListener(l)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
    fn connect(addr: String) -> ConnectFuture<SmolSocket> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = smol::net::resolve(addr.as_str()).await?;
            let mut last = io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
            for a in addrs {
                match Async::<TcpStream>::connect(a).await {
                    Ok(s) => return Ok(socket(s)),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
    fn timer() -> SmolTimer {
        SmolTimer(IoTimer::never())
    }
    fn now() -> Instant {
        Instant::now()
    }
    /// smol spawns from any thread.
    fn may_drive_here() -> bool {
        true
    }
}
