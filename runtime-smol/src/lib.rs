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
use smol::io::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
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
pub struct SmolSocket(Async<TcpStream>);

impl Socket for SmolSocket {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.get_ref().shutdown(std::net::Shutdown::Write)
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
        // Empty buffer: std fills a fresh Vec's spare capacity without zeroing
        // it, and the buffer takes the Vec over without a copy.
        loop {
            let mut v = Vec::with_capacity(READ_CHUNK);
            let res = (&mut self.0.get_ref()).take(READ_CHUNK as u64).read_to_end(&mut v);
            let n = v.len();
            match res {
                Ok(_) => {
                    *buf = BytesMut::from(bytes::Bytes::from(v));
                    return Poll::Ready(Ok(n));
                }
                Err(_) if n > 0 => {
                    // Data first; a real error shows again on the next read.
                    *buf = BytesMut::from(bytes::Bytes::from(v));
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match self.0.poll_readable(cx) {
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
    SmolSocket(s)
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
}
