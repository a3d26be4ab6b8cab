//! The tokio side of the end-to-end bench: one thread and runtime per side,
//! and the baseline's primitives in tokio's own API.

use super::baseline::{writer, Plain};
use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// A side's code runs as a spawned task, like the tasks it talks to
/// (our driver, the baseline's writer), not as the `block_on` future:
/// tokio polls that one only after parking on the I/O driver.
fn side<T: Send + 'static>(f: BoxFut<T>) -> T {
    let rt = runtime();
    let task = rt.spawn(f);
    rt.block_on(task).expect("side task")
}

/// The baseline's primitives on tokio.
pub(crate) struct TokioPlain;

impl Plain for TokioPlain {
    type Ours = estafeta_tokio::Tokio;
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;
    type Tx = mpsc::Sender<Bytes>;
    type Rx = mpsc::Receiver<Bytes>;
    type Join = tokio::task::JoinHandle<()>;

    /// Each side runs as a task on its own thread and runtime.
    fn pair<A: Send + 'static, B: Send + 'static>(a: BoxFut<A>, b: BoxFut<B>) -> (A, B) {
        let ta = std::thread::spawn(move || side(a));
        let tb = std::thread::spawn(move || side(b));
        (ta.join().expect("side a"), tb.join().expect("side b"))
    }
    fn spawn<T: Send + 'static>(f: BoxFut<T>) -> BoxFut<T> {
        let task = tokio::spawn(f);
        Box::pin(async move { task.await.expect("task") })
    }
    async fn accept(addr_tx: oneshot::Sender<String>) -> (OwnedReadHalf, OwnedWriteHalf) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("address").to_string();
        addr_tx.send(addr).expect("peer waits");
        let (s, _) = l.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        s.into_split()
    }
    async fn connect(addr_rx: oneshot::Receiver<String>) -> (OwnedReadHalf, OwnedWriteHalf) {
        let s = TcpStream::connect(addr_rx.await.expect("address")).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.into_split()
    }
    async fn read(r: &mut OwnedReadHalf, buf: &mut [u8]) -> usize {
        r.read(buf).await.expect("read")
    }
    async fn write_all(w: &mut OwnedWriteHalf, buf: &[u8]) {
        w.write_all(buf).await.expect("write");
    }
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        mpsc::channel(cap)
    }
    async fn send(tx: &Self::Tx, payload: Bytes) {
        tx.send(payload).await.expect("writer runs");
    }
    async fn recv(rx: &mut Self::Rx) -> Option<Bytes> {
        rx.recv().await
    }
    fn try_recv(rx: &mut Self::Rx) -> Option<Bytes> {
        rx.try_recv().ok()
    }
    fn spawn_writer(w: OwnedWriteHalf, rx: Self::Rx) -> Self::Join {
        tokio::spawn(writer::<Self>(w, rx))
    }
    async fn join(j: Self::Join) {
        j.await.expect("writer");
    }
}
