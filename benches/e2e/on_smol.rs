//! The smol side of the end-to-end bench: the global executor, and the
//! baseline's primitives in async-io's own API.

use super::baseline::{writer, Plain};
use super::*;
use smol::channel;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// The baseline's primitives on smol / async-io. `&Async<TcpStream>` reads
/// and writes, so both sides of a connection share it through an `Arc`.
pub(crate) struct SmolPlain;

impl Plain for SmolPlain {
    type Ours = estafeta_smol::Smol;
    type Reader = Arc<Async<TcpStream>>;
    type Writer = Arc<Async<TcpStream>>;
    type Tx = channel::Sender<Bytes>;
    type Rx = channel::Receiver<Bytes>;
    type Join = smol::Task<()>;

    /// Both sides run as tasks on smol's global executor.
    fn pair<A: Send + 'static, B: Send + 'static>(a: BoxFut<A>, b: BoxFut<B>) -> (A, B) {
        smol::block_on(async {
            let (ta, tb) = (smol::spawn(a), smol::spawn(b));
            (ta.await, tb.await)
        })
    }
    fn spawn<T: Send + 'static>(f: BoxFut<T>) -> BoxFut<T> {
        Box::pin(smol::spawn(f))
    }
    async fn accept(addr_tx: oneshot::Sender<String>) -> (Self::Reader, Self::Writer) {
        let l = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).expect("bind");
        let addr = l.get_ref().local_addr().expect("address").to_string();
        addr_tx.send(addr).expect("peer waits");
        let (s, _) = l.accept().await.expect("accept");
        s.get_ref().set_nodelay(true).expect("nodelay");
        let s = Arc::new(s);
        (s.clone(), s)
    }
    async fn connect(addr_rx: oneshot::Receiver<String>) -> (Self::Reader, Self::Writer) {
        let addr: std::net::SocketAddr = addr_rx.await.expect("address").parse().expect("socket address");
        let s = Async::<TcpStream>::connect(addr).await.expect("connect");
        s.get_ref().set_nodelay(true).expect("nodelay");
        let s = Arc::new(s);
        (s.clone(), s)
    }
    async fn read(r: &mut Self::Reader, buf: &mut [u8]) -> usize {
        (&**r).read(buf).await.expect("read")
    }
    async fn write_all(w: &mut Self::Writer, buf: &[u8]) {
        (&**w).write_all(buf).await.expect("write");
    }
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        channel::bounded(cap)
    }
    async fn send(tx: &Self::Tx, payload: Bytes) {
        tx.send(payload).await.expect("writer runs");
    }
    async fn recv(rx: &mut Self::Rx) -> Option<Bytes> {
        rx.recv().await.ok()
    }
    fn try_recv(rx: &mut Self::Rx) -> Option<Bytes> {
        rx.try_recv().ok()
    }
    fn spawn_writer(w: Self::Writer, rx: Self::Rx) -> Self::Join {
        smol::spawn(writer::<Self>(w, rx))
    }
    async fn join(j: Self::Join) {
        j.await;
    }
}
