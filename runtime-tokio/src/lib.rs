//! # estafeta-tokio: estafeta on tokio
//!
//! Plugs tokio's TCP sockets, timer and `spawn` into the shared driver. The
//! API is that of [`estafeta_driver`], with the runtime filled in:
//!
//! ```no_run
//! # async fn demo() -> Result<(), estafeta_tokio::Error> {
//! use estafeta_tokio::Node;
//! let node = Node::builder("alice").bind("127.0.0.1:0").build().await?;
//! println!("listening at {}", node.address().unwrap());
//! # Ok(()) }
//! ```
//!
//! Needs a tokio runtime with the `net` and `time` drivers enabled.

#![forbid(unsafe_code)]

use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use estafeta_driver::*;

/// The tokio runtime for estafeta.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// A node on tokio.
pub type Node = estafeta_driver::Node<Tokio>;
/// A node builder on tokio.
pub type NodeBuilder = estafeta_driver::NodeBuilder<Tokio>;
/// A file being sent, on tokio.
pub type FileTransfer = estafeta_driver::FileTransfer<Tokio>;

/// A tokio TCP stream with Nagle off.
#[derive(Debug)]
pub struct TokioSocket(tokio::net::TcpStream);

impl Socket for TokioSocket {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        // tokio's shutdown of a TCP stream is `shutdown(Write)` at once: it
        // never returns `Pending`, so no waker is needed.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut self.0).poll_shutdown(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }
    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut, _: &mut [u8]) -> Poll<io::Result<usize>> {
        // Reads into the spare capacity without zeroing or copying it.
        if buf.capacity() - buf.len() < READ_SPARE_MIN {
            buf.reserve(READ_RESERVE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, buf)
    }
}

/// Spare room below which the receive buffer grows before a read.
const READ_SPARE_MIN: usize = 16 << 10;
/// How much the receive buffer grows by.
const READ_RESERVE: usize = 64 << 10;

fn socket(s: tokio::net::TcpStream) -> TokioSocket {
    // Frames are batched by the drain; Nagle would only add latency.
    let _ = s.set_nodelay(true);
    TokioSocket(s)
}

/// A tokio TCP listener.
#[derive(Debug)]
pub struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    type Socket = TokioSocket;
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TokioSocket, SocketAddr)>> {
        self.0.poll_accept(cx).map_ok(|(s, a)| (socket(s), a))
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A tokio sleep that can be reset.
#[derive(Debug)]
pub struct TokioTimer(Pin<Box<tokio::time::Sleep>>);

impl Timer for TokioTimer {
    fn reset(&mut self, at: Instant) {
        self.0.as_mut().reset(tokio::time::Instant::from_std(at));
    }
    fn poll_fire(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Runtime for Tokio {
    type Socket = TokioSocket;
    type Listener = TokioListener;
    type Timer = TokioTimer;

    fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F) {
        tokio::spawn(fut);
    }
    async fn spawn_blocking<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(f: F) -> T {
        match tokio::task::spawn_blocking(f).await {
            Ok(v) => v,
            // The closure panicked: carry the panic to the awaiting task.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    async fn bind(addr: &str) -> io::Result<TokioListener> {
        tokio::net::TcpListener::bind(addr).await.map(TokioListener)
    }
    fn connect(addr: String) -> ConnectFuture<TokioSocket> {
        Box::pin(async move { tokio::net::TcpStream::connect(addr).await.map(socket) })
    }
    fn timer() -> TokioTimer {
        TokioTimer(Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())))
    }
    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }
    /// Inside a tokio runtime (where the driver can spawn).
    fn may_drive_here() -> bool {
        tokio::runtime::Handle::try_current().is_ok()
    }
}
