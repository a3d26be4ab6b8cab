//! The plain-TCP baseline, written once: length-prefixed frames, a writer
//! task that batches through a 64 KiB buffer and writes when its queue is
//! drained, and a reader that parses and counts every frame. Each runtime
//! supplies only the primitives in [`Plain`], in its own native API.

use super::*;

/// What a runtime supplies to the bench: the runtime our nodes run on, how
/// the two sides of a case run, and the baseline's primitives.
pub(crate) trait Plain: Sized + 'static {
    /// The runtime of our nodes.
    type Ours: Runtime;
    /// The reading side of a connection.
    type Reader: Send + 'static;
    /// The writing side of a connection.
    type Writer: Send + 'static;
    /// A bounded channel's sending end.
    type Tx: Send + Sync + 'static;
    /// A bounded channel's receiving end.
    type Rx: Send + 'static;
    /// A spawned writer task.
    type Join: Send;

    /// Runs the two sides of a case to their ends.
    fn pair<A: Send + 'static, B: Send + 'static>(a: BoxFut<A>, b: BoxFut<B>) -> (A, B);
    /// Runs `f` as a task of its own on the current side, from now on.
    fn spawn<T: Send + 'static>(f: BoxFut<T>) -> BoxFut<T>;

    fn accept(addr_tx: oneshot::Sender<String>) -> impl Future<Output = (Self::Reader, Self::Writer)> + Send;
    fn connect(addr_rx: oneshot::Receiver<String>) -> impl Future<Output = (Self::Reader, Self::Writer)> + Send;
    fn read(r: &mut Self::Reader, buf: &mut [u8]) -> impl Future<Output = usize> + Send;
    fn write_all(w: &mut Self::Writer, buf: &[u8]) -> impl Future<Output = ()> + Send;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx);
    fn send(tx: &Self::Tx, payload: Bytes) -> impl Future<Output = ()> + Send;
    fn recv(rx: &mut Self::Rx) -> impl Future<Output = Option<Bytes>> + Send;
    fn try_recv(rx: &mut Self::Rx) -> Option<Bytes>;
    /// Spawns [`writer`] for this runtime.
    fn spawn_writer(w: Self::Writer, rx: Self::Rx) -> Self::Join;
    fn join(j: Self::Join) -> impl Future<Output = ()> + Send;
}

/// The writer task: batches queued frames, writes when the queue is drained.
pub(crate) async fn writer<P: Plain>(mut sock: P::Writer, mut rx: P::Rx) {
    let mut w = FrameWriter::new();
    while let Some(first) = P::recv(&mut rx).await {
        let mut next = Some(first);
        while let Some(p) = next {
            if w.push(&p) {
                P::write_all(&mut sock, &w.out).await;
                w.out.clear();
            }
            next = P::try_recv(&mut rx);
        }
        // The queue is drained: write what is buffered.
        if !w.out.is_empty() {
            P::write_all(&mut sock, &w.out).await;
            w.out.clear();
        }
    }
}

async fn read_frames<P: Plain>(sock: &mut P::Reader, r: &mut FrameReader, n: usize) {
    let mut got = r.take(n);
    while got < n {
        let k = P::read(sock, r.spare()).await;
        r.filled(k);
        got += r.take(n - got);
    }
}

pub(crate) async fn base_receive<P: Plain>(run: Run, ends: RxEnds) -> Instant {
    let (Run { size, warm, n }, RxEnds { addr_tx, warm_tx, done_tx }) = (run, ends);
    let (mut rd, _wr) = P::accept(addr_tx).await;
    let mut r = FrameReader::new(size);
    read_frames::<P>(&mut rd, &mut r, warm).await;
    warm_tx.send(()).expect("sender waits");
    read_frames::<P>(&mut rd, &mut r, n).await;
    let t1 = Instant::now();
    assert_eq!(r.start, r.end, "more bytes than sent");
    done_tx.send(()).expect("sender waits");
    t1
}

pub(crate) async fn base_send<P: Plain>(run: Run, ends: TxEnds) -> Instant {
    let (Run { size, warm, n }, TxEnds { addr_rx, warm_rx, done_rx }) = (run, ends);
    let (_rd, wr) = P::connect(addr_rx).await;
    let (tx, rx) = P::channel(queue_capacity(size));
    let w = P::spawn_writer(wr, rx);
    let payload = Bytes::from(vec![0xA5; size]);
    for _ in 0..warm {
        P::send(&tx, payload.clone()).await;
    }
    warm_rx.await.expect("warm-up received");
    let t0 = Instant::now();
    for _ in 0..n {
        P::send(&tx, payload.clone()).await;
    }
    drop(tx);
    P::join(w).await;
    done_rx.await.expect("receiver done");
    t0
}

pub(crate) async fn base_echo<P: Plain>(
    total: usize,
    addr_tx: oneshot::Sender<String>,
    done_rx: oneshot::Receiver<()>,
) {
    let (mut rd, wr) = P::accept(addr_tx).await;
    let (tx, rx) = P::channel(queue_capacity(RTT_PAYLOAD));
    let w = P::spawn_writer(wr, rx);
    let mut r = FrameReader::new(RTT_PAYLOAD);
    for _ in 0..total {
        let p = loop {
            if let Some(p) = r.next_frame() {
                break Bytes::copy_from_slice(p);
            }
            let k = P::read(&mut rd, r.spare()).await;
            r.filled(k);
        };
        P::send(&tx, p).await;
    }
    done_rx.await.expect("pinger done");
    drop(tx);
    P::join(w).await;
}

pub(crate) async fn base_ping<P: Plain>(
    warm: usize,
    rounds: usize,
    addr_rx: oneshot::Receiver<String>,
    done_tx: oneshot::Sender<()>,
) -> Vec<Duration> {
    let (mut rd, wr) = P::connect(addr_rx).await;
    let (tx, rx) = P::channel(queue_capacity(RTT_PAYLOAD));
    let w = P::spawn_writer(wr, rx);
    let mut r = FrameReader::new(RTT_PAYLOAD);
    let payload = Bytes::from(vec![0x5A; RTT_PAYLOAD]);
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warm + rounds {
        let t = Instant::now();
        P::send(&tx, payload.clone()).await;
        while r.take(1) == 0 {
            let k = P::read(&mut rd, r.spare()).await;
            r.filled(k);
        }
        let d = t.elapsed();
        if i >= warm {
            rtts.push(d);
        }
    }
    done_tx.send(()).expect("echoer waits");
    drop(tx);
    P::join(w).await;
    rtts
}
