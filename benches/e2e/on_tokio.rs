//! The tokio side of the end-to-end bench: runtimes per side and the plain
//! tokio TCP baseline.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// Runs each side as a task on its own thread and runtime.
pub fn pair<A, FA, B, FB>(a: A, b: B) -> (FA::Output, FB::Output)
where
    A: FnOnce() -> FA + Send + 'static,
    FA: Future + Send + 'static,
    FA::Output: Send + 'static,
    B: FnOnce() -> FB + Send + 'static,
    FB: Future + Send + 'static,
    FB::Output: Send + 'static,
{
    let ta = std::thread::spawn(move || side(a));
    let tb = std::thread::spawn(move || side(b));
    (ta.join().expect("side a"), tb.join().expect("side b"))
}

/// A side's code runs as a spawned task, like the tasks it talks to
/// (our driver, the baseline's writer), not as the `block_on` future:
/// tokio polls that one only after parking on the I/O driver.
fn side<F: FnOnce() -> Fut, Fut: Future + Send + 'static>(f: F) -> Fut::Output
where
    Fut::Output: Send + 'static,
{
    let rt = runtime();
    let task = rt.spawn(f());
    rt.block_on(task).expect("side task")
}

async fn writer<W: AsyncWrite + Unpin>(mut sock: W, mut rx: mpsc::Receiver<Bytes>) {
    let mut w = FrameWriter::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(p) = next {
            if w.push(&p) {
                sock.write_all(&w.out).await.expect("write");
                w.out.clear();
            }
            next = rx.try_recv().ok();
        }
        // The queue is drained: write what is buffered.
        if !w.out.is_empty() {
            sock.write_all(&w.out).await.expect("write");
            w.out.clear();
        }
    }
}

async fn read_frames(sock: &mut TcpStream, r: &mut FrameReader, n: usize) {
    let mut got = r.take(n);
    while got < n {
        let k = sock.read(r.spare()).await.expect("read");
        r.filled(k);
        got += r.take(n - got);
    }
}

async fn accept(addr_tx: oneshot::Sender<String>) -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("address").to_string();
    addr_tx.send(addr).expect("peer waits");
    let (s, _) = l.accept().await.expect("accept");
    s.set_nodelay(true).expect("nodelay");
    s
}

async fn connect(addr_rx: oneshot::Receiver<String>) -> TcpStream {
    let s = TcpStream::connect(addr_rx.await.expect("address")).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

pub async fn base_receive(
    size: usize,
    warm: usize,
    n: usize,
    addr_tx: oneshot::Sender<String>,
    warm_tx: oneshot::Sender<()>,
    done_tx: oneshot::Sender<()>,
) -> Instant {
    let mut s = accept(addr_tx).await;
    let mut r = FrameReader::new(size);
    read_frames(&mut s, &mut r, warm).await;
    warm_tx.send(()).expect("sender waits");
    read_frames(&mut s, &mut r, n).await;
    let t1 = Instant::now();
    assert_eq!(r.start, r.end, "more bytes than sent");
    done_tx.send(()).expect("sender waits");
    t1
}

pub async fn base_send(
    size: usize,
    warm: usize,
    n: usize,
    addr_rx: oneshot::Receiver<String>,
    warm_rx: oneshot::Receiver<()>,
    done_rx: oneshot::Receiver<()>,
) -> Instant {
    let s = connect(addr_rx).await;
    let (tx, rx) = mpsc::channel(queue_capacity(size));
    let w = tokio::spawn(writer(s, rx));
    let payload = Bytes::from(vec![0xA5; size]);
    for _ in 0..warm {
        tx.send(payload.clone()).await.expect("writer runs");
    }
    warm_rx.await.expect("warm-up received");
    let t0 = Instant::now();
    for _ in 0..n {
        tx.send(payload.clone()).await.expect("writer runs");
    }
    drop(tx);
    w.await.expect("writer");
    done_rx.await.expect("receiver done");
    t0
}

pub async fn base_echo(total: usize, addr_tx: oneshot::Sender<String>, done_rx: oneshot::Receiver<()>) {
    let s = accept(addr_tx).await;
    let (mut rd, wr) = s.into_split();
    let (tx, rx) = mpsc::channel(queue_capacity(RTT_PAYLOAD));
    let w = tokio::spawn(writer(wr, rx));
    let mut r = FrameReader::new(RTT_PAYLOAD);
    for _ in 0..total {
        let p = loop {
            if let Some(p) = r.next_frame() {
                break Bytes::copy_from_slice(p);
            }
            let k = rd.read(r.spare()).await.expect("read");
            r.filled(k);
        };
        tx.send(p).await.expect("writer runs");
    }
    done_rx.await.expect("pinger done");
    drop(tx);
    w.await.expect("writer");
}

pub async fn base_ping(
    warm: usize,
    rounds: usize,
    addr_rx: oneshot::Receiver<String>,
    done_tx: oneshot::Sender<()>,
) -> Vec<Duration> {
    let s = connect(addr_rx).await;
    let (mut rd, wr) = s.into_split();
    let (tx, rx) = mpsc::channel(queue_capacity(RTT_PAYLOAD));
    let w = tokio::spawn(writer(wr, rx));
    let mut r = FrameReader::new(RTT_PAYLOAD);
    let payload = Bytes::from(vec![0x5A; RTT_PAYLOAD]);
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warm + rounds {
        let t = Instant::now();
        tx.send(payload.clone()).await.expect("writer runs");
        while r.take(1) == 0 {
            let k = rd.read(r.spare()).await.expect("read");
            r.filled(k);
        }
        let d = t.elapsed();
        if i >= warm {
            rtts.push(d);
        }
    }
    done_tx.send(()).expect("echoer waits");
    drop(tx);
    w.await.expect("writer");
    rtts
}
