//! What a runtime supplies: TCP sockets, a listener, one timer, spawning and a clock.
//!
//! estafeta-tokio and estafeta-smol implement these in a few dozen lines each;
//! everything else (the drive loop, the handles, the streams) is shared.

use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A future that resolves to a connected socket.
pub type ConnectFuture<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;

/// An async runtime estafeta can run on.
pub trait Runtime: Send + Sync + Sized + 'static {
    /// A connected TCP stream.
    type Socket: Socket;
    /// A listening TCP socket.
    type Listener: Listener<Socket = Self::Socket>;
    /// A resettable timer.
    type Timer: Timer;

    /// Runs `fut` in the background.
    fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F);
    /// Runs blocking `f` (file I/O, hashing) on the runtime's blocking pool,
    /// never on the reactor, and resolves to its result.
    fn spawn_blocking<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(f: F) -> impl Future<Output = T> + Send;
    /// Binds a listener to `addr` (`host:port`, port 0 picks one).
    fn bind(addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to `addr` (`host:port`), resolving names.
    fn connect(addr: String) -> ConnectFuture<Self::Socket>;
    /// A new timer that has not fired.
    fn timer() -> Self::Timer;
    /// The runtime's clock (tokio's paused clock in tests, for example).
    fn now() -> Instant;
    /// True if the calling thread may run the driver: it can spawn here.
    /// A task about to wait runs the driver itself when the driver has work
    /// it did not pick up yet, so that a request leaves without a hop to the
    /// driver's task (see `Shared::wait`). The default says no, which is
    /// always safe: the driver's own task runs it.
    fn may_drive_here() -> bool {
        false
    }
}

/// A connected, non-blocking TCP stream.
pub trait Socket: Send + Unpin + 'static {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `buf`.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Shuts the socket down for writing (`shutdown(Write)`: the peer reads
    /// the end of the stream after what was written) and leaves it open for
    /// reading. The driver calls it for the core's `Action::HalfClose`,
    /// after the goodbye is written; the socket is still read until the
    /// peer closes too.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Reads by appending to `buf`. The driver calls it to read the rest of
    /// a long frame into room it made for exactly that (at least 16 KiB) in
    /// `buf`, with `scratch` cut to at most that length: read into `buf`'s
    /// spare room or into `scratch`, never more than the room (growing `buf`
    /// is allowed but wastes memory that received messages keep alive). The
    /// default reads into `scratch` and copies; a runtime that can read into
    /// spare capacity safely overrides it and saves the copy. Other reads
    /// go through [`Socket::poll_read`].
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        scratch: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        poll_read_copy(self, cx, buf, scratch)
    }
}

/// Reads into `scratch` and appends what came to `buf`: the copying way to
/// fill a receive buffer, for [`Socket::poll_read_buf`] implementations.
pub fn poll_read_copy<S: Socket + ?Sized>(
    sock: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    scratch: &mut [u8],
) -> Poll<io::Result<usize>> {
    match sock.poll_read(cx, scratch) {
        Poll::Ready(Ok(n)) => {
            buf.extend_from_slice(&scratch[..n]);
            Poll::Ready(Ok(n))
        }
        other => other,
    }
}

/// A listening TCP socket.
pub trait Listener: Send + Unpin + 'static {
    /// The accepted sockets' type.
    type Socket: Socket;
    /// Accepts the next connection.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Socket, SocketAddr)>>;
    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// One resettable timer.
pub trait Timer: Send + Unpin + 'static {
    /// Fires at `at` (replacing any earlier deadline).
    fn reset(&mut self, at: Instant);
    /// Ready once the deadline passed.
    fn poll_fire(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}
