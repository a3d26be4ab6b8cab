//! The driver task: waits on the listener, dials, sockets, the timer and the
//! application, and runs the core's [`Drain`] after each wake-up. It holds no
//! protocol logic: that is all in estafeta-core.

use crate::recv::{Plan, RecvState};
use crate::runtime::{ConnectFuture, Listener, Runtime, Socket, Timer};
use crate::state::{App, Drive, Shared, State};
use estafeta_core::transfer::{FileError, FileReply, FileReqId, FileRequest};
use estafeta_core::{Action, CloseReason, ConnId, Drain, Event, Sink, Step, Timestamp, WriteOutcome};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// Bytes read per socket read call.
const READ_CHUNK: usize = 64 << 10;
/// Bytes read across all sockets per wake-up before yielding.
const READ_BUDGET: usize = 1 << 20;
/// Connections accepted per wake-up before yielding.
const ACCEPT_BUDGET: usize = 64;

/// The driver task's own waker, shared with the [`Readiness`] wakers.
#[derive(Default)]
struct TaskWaker(Mutex<Option<Waker>>);

impl TaskWaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, cx: &Context<'_>) {
        let mut w = self.lock();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }
}

/// Completed file operations, waiting for the driver task to hand them to
/// the node; a completion wakes the task.
struct FileDone {
    done: Mutex<Vec<(FileReqId, Result<FileReply, FileError>)>>,
    task: Arc<TaskWaker>,
}

impl FileDone {
    fn push(&self, id: FileReqId, r: Result<FileReply, FileError>) {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).push((id, r));
        if let Some(w) = self.task.lock().as_ref() {
            w.wake_by_ref();
        }
    }

    fn take(&self) -> Vec<(FileReqId, Result<FileReply, FileError>)> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Whether the runtime may have input for one socket (or connections for
/// the listener). The runtime is handed a waker that sets the flag and wakes
/// the driver task, so the driver reads only what was reported ready since
/// its last read ended in `Pending`. Wake-ups for other reasons (a command
/// from the application, room in a queue) then cost no read attempt: on
/// async-io every attempt is a system call, and every `Pending` re-registers
/// interest (`epoll_ctl`).
struct Readiness {
    ready: AtomicBool,
    task: Arc<TaskWaker>,
}

impl Wake for Readiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::SeqCst);
        if let Some(w) = self.task.lock().as_ref() {
            w.wake_by_ref();
        }
    }
}

/// A socket or listener with its [`Readiness`].
struct Source<S> {
    io: S,
    readiness: Arc<Readiness>,
    waker: Waker,
}

impl<S> Source<S> {
    /// A new source is read once, which registers interest.
    fn new(io: S, task: &Arc<TaskWaker>) -> Self {
        let readiness = Arc::new(Readiness { ready: AtomicBool::new(true), task: task.clone() });
        Source { io, waker: Waker::from(readiness.clone()), readiness }
    }

    /// True if the runtime reported it ready since the last `Pending`.
    fn is_ready(&self) -> bool {
        self.readiness.ready.load(Ordering::SeqCst)
    }

    /// Runs `f` (one read or accept) with the source's own waker. The flag is
    /// cleared first: a `Pending` leaves it cleared (the runtime holds the
    /// waker), anything else sets it again.
    fn poll<T>(&mut self, f: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<T>) -> Poll<T> {
        self.readiness.ready.store(false, Ordering::SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        let r = f(&mut self.io, &mut cx);
        if r.is_ready() {
            self.readiness.ready.store(true, Ordering::SeqCst);
        }
        r
    }
}

/// A connected socket and how its reads have gone.
struct Connection<S> {
    sock: S,
    recv: RecvState,
    /// `conn{id, addr, peer}`: what concerns this socket is logged inside it.
    span: tracing::Span,
}

impl<S> Connection<S> {
    fn new(sock: S, span: tracing::Span) -> Self {
        Connection { sock, recv: RecvState::default(), span }
    }
}

/// The span of one connection: its id and address; the peer is recorded
/// once its handshake is done.
fn conn_span(conn: ConnId, addr: &dyn std::fmt::Display, dialed: bool) -> tracing::Span {
    tracing::info_span!("conn", id = conn.0, %addr, dialed, peer = tracing::field::Empty)
}

/// The driver of one node, shared by its task and the application's tasks
/// (which run it when they are about to wait: [`Drive`]). Spawn
/// [`DriverCell::task`] on the runtime.
pub(crate) struct DriverCell<R: Runtime> {
    driver: Mutex<Driver<R>>,
    /// The driver returned `Ready`: the node is closed.
    done: AtomicBool,
}

impl<R: Runtime> DriverCell<R> {
    /// The driver of `shared`, known to it.
    pub(crate) fn new(shared: Arc<Shared>, listener: Option<R::Listener>) -> Arc<Self> {
        let cell = Arc::new(DriverCell {
            driver: Mutex::new(Driver::new(shared.clone(), listener)),
            done: AtomicBool::new(false),
        });
        let weak: Weak<dyn Drive> = Arc::downgrade(&(cell.clone() as Arc<dyn Drive>));
        shared.set_driver(weak);
        cell
    }

    /// The driver's own task.
    pub(crate) fn task(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        std::future::poll_fn(move |cx| {
            if self.done.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            let mut d = self.driver.lock().unwrap_or_else(|e| e.into_inner());
            let r = Pin::new(&mut *d).poll(cx);
            if r.is_ready() {
                self.done.store(true, Ordering::Release);
            }
            r
        })
    }
}

impl<R: Runtime> Drive for DriverCell<R> {
    fn drive(&self) {
        if self.done.load(Ordering::Acquire) || !R::may_drive_here() {
            return;
        }
        // Busy: its task (or another application task) is running it.
        let Ok(mut d) = self.driver.try_lock() else { return };
        // Polled with the driver task's own waker: whatever the driver
        // waits for wakes its task, not the caller.
        let Some(waker) = d.task.lock().clone() else { return };
        let mut cx = Context::from_waker(&waker);
        if Pin::new(&mut *d).poll(&mut cx).is_ready() {
            self.done.store(true, Ordering::Release);
            // The task ends at its next poll.
            waker.wake();
        }
    }
}

/// The driver future of one node.
pub(crate) struct Driver<R: Runtime> {
    shared: Arc<Shared>,
    task: Arc<TaskWaker>,
    listener: Option<Source<R::Listener>>,
    sockets: BTreeMap<ConnId, Source<Connection<R::Socket>>>,
    dialing: BTreeMap<ConnId, (ConnectFuture<R::Socket>, tracing::Span)>,
    timer: R::Timer,
    /// Where `timer` is armed (at or before the node's deadline).
    timer_at: Option<Instant>,
    drain: Drain,
    read_buf: Vec<u8>,
    /// Sockets the last `read` skipped because the node wanted no input.
    unread: Vec<ConnId>,
    /// `node{name=…}`: every log line of this node is emitted inside it.
    span: tracing::Span,
    files: Arc<FileDone>,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(shared: Arc<Shared>, listener: Option<R::Listener>) -> Self {
        let task = Arc::new(TaskWaker::default());
        let span = {
            let st = shared.lock();
            tracing::info_span!("node", name = %st.node.name(), id = %st.node.id())
        };
        Driver {
            span,
            shared,
            listener: listener.map(|l| Source::new(l, &task)),
            task: task.clone(),
            sockets: BTreeMap::new(),
            dialing: BTreeMap::new(),
            timer: R::timer(),
            timer_at: None,
            drain: Drain::default(),
            read_buf: vec![0; READ_CHUNK],
            unread: Vec::new(),
            files: Arc::new(FileDone { done: Mutex::new(Vec::new()), task: task.clone() }),
        }
    }
}

/// The [`Sink`] the drain writes into: the driver's sockets and the app queues.
struct DriverSink<'a, 'c, R: Runtime> {
    cx: &'a mut Context<'c>,
    sockets: &'a mut BTreeMap<ConnId, Source<Connection<R::Socket>>>,
    dialing: &'a mut BTreeMap<ConnId, (ConnectFuture<R::Socket>, tracing::Span)>,
    app: &'a mut App,
    /// A dial started: its future must be polled once to register a waker.
    dialed: bool,
    files: &'a Arc<FileDone>,
}

impl<R: Runtime> Sink for DriverSink<'_, '_, R> {
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        let Some(sock) = self.sockets.get_mut(&conn) else {
            return WriteOutcome::Failed("socket is gone".into());
        };
        match sock.io.sock.poll_write(self.cx, bytes) {
            Poll::Ready(Ok(0)) => WriteOutcome::Failed("socket wrote zero bytes".into()),
            Poll::Ready(Ok(n)) => WriteOutcome::Wrote(n),
            Poll::Ready(Err(e)) => WriteOutcome::Failed(e.to_string()),
            Poll::Pending => WriteOutcome::Blocked,
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Dial { conn, addr } => {
                let span = conn_span(conn, &addr, true);
                span.in_scope(|| tracing::debug!("dialing"));
                self.dialing.insert(conn, (R::connect(addr.host_port()), span));
                self.dialed = true;
            }
            Action::HalfClose { conn } => {
                // The goodbye is written: send FIN, keep reading until the
                // peer closes too (the core then asks for `Close`).
                if let Some(sock) = self.sockets.get_mut(&conn) {
                    if let Err(e) = sock.io.sock.shutdown_write() {
                        // The socket failed already: its next read reports it.
                        sock.io.span.in_scope(|| tracing::debug!(error = %e, "half-close failed"));
                    }
                }
            }
            Action::Close { conn } => {
                self.sockets.remove(&conn);
                // A dial the core abandoned (its dial timeout): dropping the
                // connect future closes the pending socket.
                if let Some((_, span)) = self.dialing.remove(&conn) {
                    span.in_scope(|| tracing::debug!("dial abandoned"));
                }
            }
        }
    }

    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        // Messages are never logged: skip the call on the hot path.
        if !matches!(
            event,
            Event::PubSub(estafeta_core::PubSubEvent::Message(_) | estafeta_core::PubSubEvent::Messages(_))
                | Event::Stream(estafeta_core::StreamEvent::Data { .. })
        ) {
            // Connection events are logged inside their connection's span.
            let conn = match &event {
                Event::PeerUp { conn, peer, .. } => {
                    if let Some(s) = self.sockets.get(conn) {
                        s.io.span.record("peer", tracing::field::display(peer));
                    }
                    Some(*conn)
                }
                Event::ProtocolViolation { conn, .. } | Event::Refused { conn, .. } => Some(*conn),
                _ => None,
            };
            match conn.and_then(|c| self.sockets.get(&c)) {
                Some(s) => s.io.span.in_scope(|| crate::log::event(&event)),
                None => crate::log::event(&event),
            }
        }
        self.app.deliver(event)
    }

    fn file(&mut self, request: FileRequest) {
        let files = self.files.clone();
        let anchors = self.app.transfers.anchors.clone();
        R::spawn(async move {
            let FileRequest { id, op } = request;
            let r = R::spawn_blocking(move || crate::fileio::run(op, &anchors)).await;
            files.push(id, r);
        });
    }
}

impl<R: Runtime> Driver<R> {
    fn accept(&mut self, st: &mut State, now: Timestamp) -> bool {
        let Some(listener) = self.listener.as_mut() else {
            return false;
        };
        for _ in 0..ACCEPT_BUDGET {
            if !listener.is_ready() {
                return false;
            }
            match listener.poll(|l, cx| l.poll_accept(cx)) {
                Poll::Ready(Ok((sock, addr))) => {
                    if let Ok(conn) = st.node.handle_accepted(now) {
                        let span = conn_span(conn, &addr, false);
                        span.in_scope(|| tracing::debug!("accepted"));
                        self.sockets.insert(conn, Source::new(Connection::new(sock, span), &self.task));
                    } else {
                        tracing::debug!(%addr, "accepted socket dropped: closing, or too many refusals in flight");
                    } // else: closing, or too many refusals in flight; dropping the socket refuses it.
                      // (Over the connection limit the node takes the socket to refuse it with a goodbye.)
                }
                // Accept errors (e.g. too many open files) concern one socket; keep listening.
                Poll::Ready(Err(e)) => tracing::warn!(error = %e, "accept failed"),
                Poll::Pending => return false,
            }
        }
        true
    }

    fn poll_dials(&mut self, st: &mut State, cx: &mut Context<'_>, now: Timestamp) {
        let mut done = Vec::new();
        for (conn, (fut, _)) in self.dialing.iter_mut() {
            if let Poll::Ready(res) = fut.as_mut().poll(cx) {
                done.push((*conn, res));
            }
        }
        for (conn, res) in done {
            let Some((_, span)) = self.dialing.remove(&conn) else { continue };
            match res {
                Ok(sock) => {
                    span.in_scope(|| tracing::debug!("connected"));
                    self.sockets.insert(conn, Source::new(Connection::new(sock, span), &self.task));
                    st.node.handle_connected(now, conn);
                }
                Err(e) => {
                    span.in_scope(|| tracing::debug!(error = %e, "dial failed"));
                    st.node.handle_closed(now, conn, CloseReason::Io(e.to_string()))
                }
            }
        }
    }

    /// Reads every socket the node wants input for and the runtime reported
    /// ready. Returns true if the budget ran out with sockets still readable.
    /// Sockets left unread because the node did not want input (so no read
    /// interest is registered for them) are noted in `self.unread`.
    fn read(&mut self, st: &mut State, now: Timestamp) -> bool {
        let mut budget = READ_BUDGET;
        let mut closed: Vec<(ConnId, CloseReason)> = Vec::new();
        self.unread.clear();
        for (conn, sock) in self.sockets.iter_mut() {
            loop {
                if !st.node.wants_read(*conn) {
                    self.unread.push(*conn);
                    break;
                }
                if !sock.is_ready() {
                    break;
                }
                if budget == 0 {
                    return true;
                }
                let scratch = &mut self.read_buf;
                let plan = sock.io.recv.plan(&mut st.node, *conn, READ_CHUNK);
                let read = match plan {
                    Plan::Room(room) => {
                        let Some(rx) = st.node.recv_buffer(*conn) else { break };
                        let scratch = &mut scratch[..room.min(READ_CHUNK)];
                        sock.poll(|s, cx| s.sock.poll_read_buf(cx, rx, scratch))
                    }
                    Plan::Copy(max) => sock.poll(|s, cx| s.sock.poll_read(cx, &mut scratch[..max])),
                };
                match read {
                    Poll::Ready(Ok(0)) => {
                        closed.push((*conn, CloseReason::Io("end of stream".into())));
                        break;
                    }
                    Poll::Ready(Ok(n)) => {
                        budget = budget.saturating_sub(n);
                        match plan {
                            Plan::Room(_) => sock.io.recv.received(&mut st.node, now, *conn, n),
                            Plan::Copy(_) => sock.io.recv.feed(&mut st.node, now, *conn, &scratch[..n]),
                        }
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Poll::Ready(Err(e)) => {
                        closed.push((*conn, CloseReason::Io(e.to_string())));
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        for (conn, reason) in closed {
            if let Some(sock) = self.sockets.remove(&conn) {
                sock.io.span.in_scope(|| tracing::debug!(%reason, "socket closed"));
            }
            st.node.handle_closed(now, conn, reason);
        }
        false
    }
}

impl<R: Runtime> Future for Driver<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let span = this.span.clone();
        let _entered = span.enter();
        let shared = this.shared.clone();
        let mut guard = shared.lock();
        let st = &mut *guard;
        st.app.driver_notified = false;
        st.app.app_blocked = false;
        if !st.app.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.app.driver = Some(cx.waker().clone());
        }
        this.task.set(cx);
        // One reading of the clock serves the whole wake-up.
        let clock = R::now();
        let now = shared.timestamp(clock);
        let mut more = this.accept(st, now);
        this.poll_dials(st, cx, now);
        more |= this.read(st, now);
        for (id, r) in this.files.take() {
            st.node.handle_file(now, id, r);
        }
        for path in std::mem::take(&mut st.app.transfers.cleanup) {
            R::spawn(async move {
                let _ = R::spawn_blocking(move || std::fs::remove_file(path)).await;
            });
        }
        let State { node, app } = st;
        let mut sink = DriverSink::<R> {
            cx,
            sockets: &mut this.sockets,
            dialing: &mut this.dialing,
            app,
            dialed: false,
            files: &this.files,
        };
        let step = this.drain.run(node, now, &mut sink);
        more |= sink.dialed;
        if !app.streams.refuse.is_empty() {
            crate::streams::refuse_pending(node, app);
            more = true;
        }
        // Delivering events may have made room for input on a socket that
        // was skipped above: no read interest is registered for it, so
        // nothing else would wake us to read it.
        more |= this.unread.iter().any(|c| node.wants_read(*c));
        // A close is over once no connection lingers with an unwritten
        // goodbye, or when its time is up (Config::close_timeout).
        let close_due = app.close_by.is_some_and(|by| clock >= by);
        if node.is_closed() && (!this.drain.is_lingering() || close_due) {
            // Release the port and the sockets before anyone hears we are
            // done, so a restart on the same port cannot race the drop.
            this.listener = None;
            this.sockets.clear();
            this.dialing.clear();
            app.finish();
            return Poll::Ready(());
        }
        match step {
            Step::Yield => more = true,
            Step::Idle { deadline } => {
                // The timer is moved only when the deadline comes earlier than
                // where it is armed. Deadlines mostly move later (every send
                // and receive pushes the heartbeat and liveness deadlines), and
                // re-arming a runtime timer is not free (async-io wakes its
                // reactor for every one). A timer that fires before the
                // deadline only runs the drain once more, which re-arms it.
                let mut deadline = deadline.map(|d| shared.instant(d));
                if this.drain.is_lingering() {
                    // Lingering sockets are dropped at the close deadline.
                    deadline = deadline.into_iter().chain(app.close_by).min();
                }
                if let Some(at) = deadline {
                    if this.timer_at.is_none_or(|armed| at < armed) {
                        this.timer.reset(at);
                        this.timer_at = Some(at);
                    }
                }
                if let Some(at) = this.timer_at {
                    // An elapsed timer may not report ready under a cooperative
                    // budget (tokio): read the clock first.
                    if clock >= at || this.timer.poll_fire(cx).is_ready() {
                        this.timer_at = None;
                        more = true;
                    }
                }
            }
        }
        drop(guard);
        if more {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
