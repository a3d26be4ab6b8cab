//! The state shared by the driver task and the handles: the core node behind
//! one mutex, the application's bounded queues, and the wakers.

use crate::entry::Entry;
use estafeta_core::{DialEvent, DiscoveryEvent, Event, MessageRun, Node, PubSubEvent, Timestamp, Topic};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use std::time::Instant;

/// Limits of the application-side queues.
///
/// # Memory held for received messages
///
/// A node whose application stops taking messages holds, at most:
///
/// - per subscription, per sending peer, one credit window of messages
///   ([`PubSubConfig::window_messages`](crate::PubSubConfig), 16 384, and
///   `window_bytes`, 8 MiB, plus one message): the senders hold the rest;
/// - per extra stream of the same topic (or [`Node::messages`](crate::Node::messages)
///   stream), which holds copies, `subscription_bytes` of payload in at most
///   `subscription_messages` messages;
/// - in the core, [`Config::max_pending_event_bytes`](crate::Config) of
///   payload in at most `max_pending_events` events (input stops there),
///   plus the one message the driver holds back for a full subscription;
/// - per connection, [`Config::max_read_buffer`](crate::Config) of received
///   bytes plus the one frame being completed (at most `max_frame_size`);
/// - a 64 KiB read buffer per node.
///
/// A held message weighs its frame (the payload, a 4-byte length prefix and
/// a header of 2 bytes plus the topic's length) and about 100 bytes of
/// bookkeeping, so the message-count limits bound what the payload limits
/// do not count. Nothing else grows with what is held: payloads are slices
/// of the allocations the driver reads into, and each allocation holds whole
/// frames only, sized exactly (a frame of 16 KiB or more has one of its own,
/// with the 4-byte length prefix of the frame after it).
///
/// Held messages keep alive the frames that arrived in the same socket read
/// (at most 64 KiB, plus the frame that read started). When a subscription
/// stalls those are held anyway (they are the messages that follow), but a
/// message kept out of a stream whose other messages are consumed keeps up
/// to 64 KiB plus its frame alive: copy small payloads you keep for long
/// (`Bytes::copy_from_slice`).
#[derive(Clone, Copy, Debug)]
pub struct AppLimits {
    /// Messages a stream that holds copies (a second stream of the same
    /// topic, or a `messages()` stream) holds before the driver stops
    /// delivering (the node then stops reading its sockets). The first
    /// stream of a topic is bounded by credit instead. Default 4096.
    pub subscription_messages: usize,
    /// Payload bytes such a stream holds before the same. Default 8 MiB.
    pub subscription_bytes: usize,
    /// Lifecycle events an events stream holds; older ones are dropped and
    /// counted (`Events::lagged`). Default 1024.
    pub events: usize,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits { subscription_messages: 4096, subscription_bytes: 8 << 20, events: 1024 }
    }
}

/// A set of wakers, woken all at once.
#[derive(Default, Debug)]
pub(crate) struct Wakers(Vec<Waker>);

impl Wakers {
    pub(crate) fn register(&mut self, w: &Waker) {
        if !self.0.iter().any(|x| x.will_wake(w)) {
            self.0.push(w.clone());
        }
    }
    pub(crate) fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            w.wake();
        }
    }
}

/// One subscription stream's queue.
#[derive(Debug)]
pub(crate) struct SubQueue {
    /// `None`: every message this node receives.
    pub(crate) topic: Option<Topic>,
    /// The stream holds one reference on its topic's subscription, until an
    /// explicit `Node::unsubscribe` of that topic releases them all.
    pub(crate) counted: bool,
    /// Single messages and runs of them, in order.
    pub(crate) queue: VecDeque<Entry>,
    /// Messages in `queue`.
    pub(crate) msgs: usize,
    /// Which messages of `queue` carry credit, as runs (owned?, count): a
    /// message delivered to several subscriptions carries its sender's credit
    /// in the first of them only; the others hold copies.
    pub(crate) owned: VecDeque<(bool, usize)>,
    /// Payload bytes held: in `queue` and taken by the subscription.
    pub(crate) bytes: usize,
    /// Messages the subscription took in its last batch: they count against
    /// the limits until it comes back for the next batch.
    pub(crate) taken: usize,
    /// Their payload bytes.
    pub(crate) taken_bytes: usize,
    pub(crate) waker: Option<Waker>,
}

impl SubQueue {
    /// True if `n` more messages of `size` payload bytes in all would pass `limits`.
    fn has_room(&self, limits: &AppLimits, n: usize, size: usize) -> bool {
        self.msgs + self.taken + n <= limits.subscription_messages
            && (self.bytes == 0 || self.bytes + size <= limits.subscription_bytes)
    }

    fn push(&mut self, e: Entry, owned: bool) {
        let n = e.len();
        self.bytes += e.bytes();
        self.msgs += n;
        match self.owned.back_mut() {
            Some((o, k)) if *o == owned => *k += n,
            _ => self.owned.push_back((owned, n)),
        }
        self.queue.push_back(e);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// One events stream's queue.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    pub(crate) queue: VecDeque<Event>,
    pub(crate) lagged: u64,
    pub(crate) waker: Option<Waker>,
}

/// Everything behind the mutex: the core node and the application side.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) node: Node,
    pub(crate) app: App,
}

/// The application side: queues, wakers and flags.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) limits: AppLimits,
    pub(crate) driver: Option<Waker>,
    /// The driver was woken and has not run since.
    pub(crate) driver_notified: bool,
    /// The driver holds an event no subscription could take.
    pub(crate) app_blocked: bool,
    pub(crate) subs: BTreeMap<u64, SubQueue>,
    /// The ids of the subscriptions of each topic: delivery looks a
    /// message's queues up here, so its cost does not grow with the number
    /// of other subscriptions.
    by_topic: BTreeMap<Topic, Vec<u64>>,
    /// The ids of the subscriptions to every message.
    every: Vec<u64>,
    /// The topic of the last message delivered and the ids of the queues it
    /// went to, so a run of messages on one topic skips the lookup: the
    /// core hands out one `Topic` per subscription, compared by address.
    /// Cleared when subscriptions change.
    route: Option<(Topic, Vec<u64>)>,
    pub(crate) topic_refs: BTreeMap<Topic, usize>,
    pub(crate) event_queues: BTreeMap<u64, EventQueue>,
    next_id: u64,
    /// Publishers waiting for queue space.
    pub(crate) writable: Wakers,
    /// Tasks waiting for the peer or subscriber tables to change.
    pub(crate) peers_changed: Wakers,
    /// Tasks waiting for the driver to finish.
    pub(crate) closed_waiters: Wakers,
    /// The driver has exited: streams end, commands fail.
    pub(crate) finished: bool,
    /// Subscription queues examined to deliver messages, once per message
    /// (a run visits a queue once for all of its messages; a diagnostic,
    /// see `Node::queue_visits`).
    pub(crate) queue_visits: u64,
    /// When a close must be over: connections still lingering with an
    /// unwritten goodbye are dropped then (`close_timeout` after `close`,
    /// at once after `abort`).
    pub(crate) close_by: Option<Instant>,
    /// Streams: replies, writers, served topics.
    pub(crate) streams: crate::streams::StreamsApp,
    /// The change streams of this node's group memberships.
    pub(crate) membership: crate::membership::MemberQueues,
    /// File transfers: send handles and receive streams.
    pub(crate) transfers: crate::transfer::TransferApp,
}

impl App {
    pub(crate) fn new(limits: AppLimits) -> Self {
        App {
            limits,
            driver: None,
            driver_notified: false,
            app_blocked: false,
            subs: BTreeMap::new(),
            by_topic: BTreeMap::new(),
            every: Vec::new(),
            route: None,
            topic_refs: BTreeMap::new(),
            event_queues: BTreeMap::new(),
            next_id: 1,
            writable: Wakers::default(),
            peers_changed: Wakers::default(),
            closed_waiters: Wakers::default(),
            finished: false,
            queue_visits: 0,
            close_by: None,
            streams: Default::default(),
            membership: Default::default(),
            transfers: Default::default(),
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Opens a subscription queue for `topic` (`None`: every message) and returns its id.
    pub(crate) fn add_sub(&mut self, topic: Option<Topic>) -> u64 {
        let id = self.next_id();
        self.route = None;
        match &topic {
            Some(t) => self.by_topic.entry(t.clone()).or_default().push(id),
            None => self.every.push(id),
        }
        let counted = topic.is_some();
        let q = SubQueue {
            topic,
            counted,
            queue: VecDeque::new(),
            msgs: 0,
            owned: VecDeque::new(),
            bytes: 0,
            taken: 0,
            taken_bytes: 0,
            waker: None,
        };
        self.subs.insert(id, q);
        id
    }

    /// Closes subscription queue `id`; returns it.
    pub(crate) fn remove_sub(&mut self, id: u64) -> Option<SubQueue> {
        let q = self.subs.remove(&id)?;
        self.route = None;
        match &q.topic {
            Some(t) => {
                if let Some(ids) = self.by_topic.get_mut(t) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        self.by_topic.remove(t);
                    }
                }
            }
            None => self.every.retain(|i| *i != id),
        }
        Some(q)
    }

    /// After an explicit unsubscribe: the open subscriptions of `topic` no
    /// longer hold a reference on it.
    pub(crate) fn uncount(&mut self, topic: &str) {
        for id in self.by_topic.get(topic).into_iter().flatten() {
            if let Some(q) = self.subs.get_mut(id) {
                q.counted = false;
            }
        }
    }

    /// Wakes the driver after a command changed the node.
    pub(crate) fn wake_driver(&mut self) {
        if !self.driver_notified {
            self.driver_notified = true;
            if let Some(w) = &self.driver {
                w.wake_by_ref();
            }
        }
    }

    /// Delivers one event to the application's queues, or gives it back if a
    /// subscription that must take it is full.
    // The event is handed back by value so the drain can retry it later
    // without an allocation; boxing it would cost one per message.
    #[allow(clippy::result_large_err)]
    pub(crate) fn deliver(&mut self, event: Event) -> Result<(), Event> {
        match event {
            Event::PubSub(PubSubEvent::Message(m)) => {
                self.deliver_entry(Entry::One(m)).map_err(|e| Event::PubSub(e.into_event()))
            }
            Event::PubSub(PubSubEvent::Messages(run)) => {
                self.deliver_run(run).map_err(|r| Event::PubSub(PubSubEvent::Messages(r)))
            }
            Event::PubSub(PubSubEvent::Writable) => {
                self.writable.wake_all();
                Ok(())
            }
            Event::Stream(ev) => {
                if self.streams.deliver(ev) {
                    self.peers_changed.wake_all();
                }
                Ok(())
            }
            Event::Transfer(t) => {
                self.transfers.deliver(t.clone(), &mut self.peers_changed);
                self.push_lifecycle(Event::Transfer(t));
                Ok(())
            }
            other => {
                // Every event is named: a new one fails to compile here.
                match &other {
                    Event::PeerUp { .. }
                    | Event::PeerDown { .. }
                    | Event::Dial(DialEvent::Connected { .. })
                    | Event::PubSub(PubSubEvent::Subscribed { .. } | PubSubEvent::Unsubscribed { .. }) => {
                        self.peers_changed.wake_all();
                        // A peer that left may have been the full one.
                        self.writable.wake_all();
                    }
                    Event::Dial(DialEvent::GaveUp { .. })
                    | Event::Discovery(DiscoveryEvent::Paired { .. } | DiscoveryEvent::Unpaired { .. }) => {
                        self.peers_changed.wake_all()
                    }
                    Event::Discovery(DiscoveryEvent::RelayLost { .. } | DiscoveryEvent::DialFailed { .. }) => {}
                    Event::Dial(DialEvent::Failed { .. })
                    | Event::PubSub(
                        PubSubEvent::Dropped { .. }
                        | PubSubEvent::Overwritten { .. }
                        | PubSubEvent::Skipped { .. }
                        | PubSubEvent::Message(_)
                        | PubSubEvent::Messages(_)
                        | PubSubEvent::Writable,
                    )
                    | Event::Stream(_)
                    | Event::ProtocolViolation { .. }
                    | Event::Transfer(_)
                    | Event::Refused { .. }
                    | Event::Session(_)
                    | Event::Closed => {}
                    Event::Membership(ev) => self.membership.deliver(ev, self.limits.events),
                }
                self.push_lifecycle(other);
                Ok(())
            }
        }
    }

    #[allow(clippy::result_large_err)]
    /// Delivers a run whole if every queue that takes a copy has room for
    /// it, else message by message while they have; gives back the rest.
    fn deliver_run(&mut self, mut run: MessageRun) -> Result<(), MessageRun> {
        loop {
            if run.len() <= 1 || self.copies_fit(&run.topic, run.len(), run.payload_bytes() as usize) {
                return self.deliver_entry(Entry::Run(run)).map_err(|e| match e {
                    Entry::Run(r) => r,
                    Entry::One(_) => unreachable!("a run is given back as a run"),
                });
            }
            let first = run.first_len().unwrap_or(0);
            if !self.copies_fit(&run.topic, 1, first) {
                self.app_blocked = true;
                return Err(run);
            }
            // Fits: delivered.
            let _ = self.deliver_entry(Entry::Run(run.split_to(1)));
        }
    }

    /// True if every queue of `topic` that takes copies (all but the first)
    /// has room for `n` messages of `size` bytes in all.
    fn copies_fit(&mut self, topic: &Topic, n: usize, size: usize) -> bool {
        self.route_of(topic);
        let App { limits, subs, route, .. } = self;
        let ids = route.as_ref().map_or(&[][..], |(_, ids)| &ids[..]);
        ids.iter().skip(1).all(|id| subs.get(id).is_none_or(|q| q.has_room(limits, n, size)))
    }

    /// Makes `route` hold the ids of the queues of `topic` (its own, then
    /// those of every topic), kept for the next delivery.
    fn route_of(&mut self, topic: &Topic) {
        let App { by_topic, every, route, .. } = self;
        if !route.as_ref().is_some_and(|(t, _)| std::ptr::eq(t.as_str(), topic.as_str())) {
            let found = by_topic.get(topic).into_iter().flatten().chain(every.iter()).copied();
            match route {
                Some((t, ids)) => {
                    *t = topic.clone();
                    ids.clear();
                    ids.extend(found);
                }
                None => *route = Some((topic.clone(), found.collect())),
            }
        }
    }

    // Handed back by value, like `deliver`'s event.
    #[allow(clippy::result_large_err)]
    fn deliver_entry(&mut self, e: Entry) -> Result<(), Entry> {
        let (n, size) = (e.len(), e.bytes());
        // The first queue carries the message's credit: the core bounds it
        // (one window per sending peer), so it never refuses. The others
        // hold copies, bounded by `limits`: one pass checks their room, then
        // the last queue takes the message itself and the others a clone.
        if !self.copies_fit(e.topic(), n, size) {
            self.app_blocked = true;
            return Err(e);
        }
        let App { subs, route, queue_visits, .. } = self;
        let ids = route.as_ref().map_or(&[][..], |(_, ids)| &ids[..]);
        let Some((&last, _)) = ids.split_last() else { return Ok(()) };
        // One visit per queue and message: a run's stands for each of its messages.
        *queue_visits += (n * ids.len()) as u64;
        let owner = ids[0];
        for id in &ids[..ids.len() - 1] {
            if let Some(q) = subs.get_mut(id) {
                q.push(e.clone(), *id == owner);
            }
        }
        if let Some(q) = subs.get_mut(&last) {
            q.push(e, last == owner);
        }
        Ok(())
    }

    fn push_lifecycle(&mut self, ev: Event) {
        let cap = self.limits.events;
        for q in self.event_queues.values_mut() {
            push_lagging(&mut q.queue, &mut q.lagged, cap, ev.clone(), &mut q.waker);
        }
    }

    /// The driver exited: end every stream and wake every waiter.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
        for q in self.subs.values_mut() {
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        for q in self.event_queues.values_mut() {
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        self.streams.finish();
        self.writable.wake_all();
        self.peers_changed.wake_all();
        self.closed_waiters.wake_all();
        self.membership.finish();
        self.transfers.finish();
    }
}

/// The driver, run in the calling task if it is free (see [`Shared::wait`]).
pub(crate) trait Drive: Send + Sync {
    /// Runs the driver once here, unless its own task is running it now,
    /// it finished, or this thread may not run it.
    fn drive(&self);
}

/// The shared state: one mutex, the clock origin and the runtime's clock.
pub(crate) struct Shared {
    state: Mutex<State>,
    origin: Instant,
    clock: fn() -> Instant,
    /// The driver (weak: the driver holds the shared state).
    driver: OnceLock<Weak<dyn Drive>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("state", &self.state).field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(state: State, clock: fn() -> Instant) -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::new(state), origin: clock(), clock, driver: OnceLock::new() })
    }

    /// Tells the shared state where its driver is.
    pub(crate) fn set_driver(&self, driver: Weak<dyn Drive>) {
        let _ = self.driver.set(driver);
    }

    /// A task that registered its waker in `st` is about to wait. If the
    /// driver was told of work and has not run since (this task published,
    /// opened a stream, wrote a reply, gave credit back), the task runs the
    /// driver itself before it waits: its bytes leave now, not after a
    /// wake-up of the driver's task, which on a multi-threaded runtime is a
    /// hop to another thread. A task that does not wait (a publishing loop)
    /// leaves the driver to its task, which batches what it writes.
    pub(crate) fn wait(&self, st: MutexGuard<'_, State>) {
        let due = st.app.driver_notified;
        drop(st);
        if due {
            if let Some(d) = self.driver.get().and_then(Weak::upgrade) {
                d.drive();
            }
        }
    }

    /// Starts closing the node (gracefully, or at once with `abort`) and
    /// sets when the close must be over.
    pub(crate) fn begin_close(&self, st: &mut State, abort: bool) {
        let clock = (self.clock)();
        // The core's clock moves only with inputs: bring it to now, so that
        // its close deadline counts from this call.
        st.node.handle_timeout(self.timestamp(clock));
        let by = if abort {
            st.node.abort();
            clock
        } else {
            st.node.close();
            clock + st.node.config().session.close_timeout
        };
        st.app.close_by = Some(st.app.close_by.map_or(by, |t| t.min(by)));
        st.app.wake_driver();
    }

    /// Locks the state. The lock is never held across an await or a call into
    /// user code, so a poisoned lock can only come from a bug in estafeta
    /// itself; the state is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state if it is free; if the driver holds it (it does
    /// while it reads and writes sockets), asks to be polled again and
    /// returns `None`, so the task yields to the executor instead of
    /// blocking its thread on the lock.
    pub(crate) fn lock_or_yield(&self, cx: &mut std::task::Context<'_>) -> Option<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                cx.waker().wake_by_ref();
                None
            }
        }
    }

    /// The runtime clock now, as the core's time.
    pub(crate) fn now(&self) -> Timestamp {
        self.timestamp((self.clock)())
    }

    /// Converts the runtime clock to the core's time.
    pub(crate) fn timestamp(&self, at: Instant) -> Timestamp {
        let us = at.saturating_duration_since(self.origin).as_micros();
        Timestamp::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    /// Converts the core's time to the runtime clock.
    pub(crate) fn instant(&self, t: Timestamp) -> Instant {
        self.origin + t.saturating_since(Timestamp::ZERO)
    }
}

/// Messages that carried credit, as they leave a subscription's queue:
/// runs of (sender, topic, messages, payload bytes), reported to the core
/// with [`Consumed::report`].
#[derive(Debug, Default)]
pub(crate) struct Consumed(Vec<(estafeta_core::NodeId, Topic, u64, u64)>);

impl Consumed {
    /// `entries` just left `q` from its front (in order): counts the
    /// messages that carry credit. An entry was pushed with one mark, so
    /// its messages all carry credit or none does.
    pub(crate) fn count<'a>(&mut self, q: &mut SubQueue, entries: impl Iterator<Item = &'a Entry>) {
        for e in entries {
            let n = e.len();
            q.msgs -= n;
            let owned = match q.owned.front_mut() {
                Some((o, k)) => {
                    let o = *o;
                    *k -= n;
                    if *k == 0 {
                        q.owned.pop_front();
                    }
                    o
                }
                None => false,
            };
            if !owned {
                continue;
            }
            let (from, topic, len) = (e.from(), e.topic(), e.bytes() as u64);
            match self.0.last_mut() {
                Some((id, t, k, b)) if *id == from && std::ptr::eq(t.as_str(), topic.as_str()) => {
                    *k += n as u64;
                    *b += len;
                }
                _ => self.0.push((from, topic.clone(), n as u64, len)),
            }
        }
    }

    /// Gives the credit back to the senders; wakes the driver if a grant is due.
    pub(crate) fn report(self, st: &mut State) {
        let mut due = false;
        for (id, topic, n, bytes) in self.0 {
            due |= st.node.pubsub().consumed(id, &topic, n, bytes);
        }
        if due {
            st.app.wake_driver();
        }
    }
}

/// Appends `ev` to a stream's queue of at most `cap` items, dropping (and
/// counting in `lagged`) the oldest when full, and wakes the stream.
pub(crate) fn push_lagging<T>(queue: &mut VecDeque<T>, lagged: &mut u64, cap: usize, ev: T, waker: &mut Option<Waker>) {
    if queue.len() >= cap {
        queue.pop_front();
        *lagged += 1;
    }
    queue.push_back(ev);
    if let Some(w) = waker.take() {
        w.wake();
    }
}
