//! The state shared by the driver task and the handles: the core node behind
//! one mutex, the application's bounded queues, and the wakers.

use estafeta_core::{DialEvent, Event, Message, Node, PubSubEvent, Timestamp, Topic};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

/// Limits of the application-side queues.
#[derive(Clone, Copy, Debug)]
pub struct AppLimits {
    /// Messages one subscription holds before the node stops reading its
    /// sockets (TCP then pushes back on the senders). Default 4096.
    pub subscription_messages: usize,
    /// Payload bytes one subscription holds before the same. Default 8 MiB.
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
    pub(crate) queue: VecDeque<Message>,
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
    /// True if messages on `topic` go to this queue.
    fn takes(&self, topic: &Topic) -> bool {
        self.topic.as_ref().is_none_or(|t| t == topic)
    }

    fn push(&mut self, m: Message) {
        self.bytes += m.payload.len();
        self.queue.push_back(m);
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
}

impl App {
    pub(crate) fn new(limits: AppLimits) -> Self {
        App {
            limits,
            driver: None,
            driver_notified: false,
            app_blocked: false,
            subs: BTreeMap::new(),
            topic_refs: BTreeMap::new(),
            event_queues: BTreeMap::new(),
            next_id: 1,
            writable: Wakers::default(),
            peers_changed: Wakers::default(),
            closed_waiters: Wakers::default(),
            finished: false,
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
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
                self.deliver_message(m).map_err(|m| Event::PubSub(PubSubEvent::Message(m)))
            }
            Event::PubSub(PubSubEvent::Writable) => {
                self.writable.wake_all();
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
                    Event::Dial(DialEvent::GaveUp { .. }) => self.peers_changed.wake_all(),
                    Event::Dial(DialEvent::Failed { .. })
                    | Event::PubSub(PubSubEvent::Dropped { .. } | PubSubEvent::Message(_) | PubSubEvent::Writable)
                    | Event::ProtocolViolation { .. }
                    | Event::Closed => {}
                }
                self.push_lifecycle(other);
                Ok(())
            }
        }
    }

    #[allow(clippy::result_large_err)]
    fn deliver_message(&mut self, m: Message) -> Result<(), Message> {
        let limits = self.limits;
        let size = m.payload.len();
        // One pass to check room and find the matching queues; the last one
        // takes the message itself, the others a clone.
        let mut last = None;
        let mut more_than_one = false;
        for (id, q) in &self.subs {
            if !q.takes(&m.topic) {
                continue;
            }
            if q.queue.len() + q.taken >= limits.subscription_messages
                || (q.bytes > 0 && q.bytes + size > limits.subscription_bytes)
            {
                self.app_blocked = true;
                return Err(m);
            }
            more_than_one |= last.is_some();
            last = Some(*id);
        }
        let Some(last) = last else { return Ok(()) };
        if more_than_one {
            for (_, q) in self.subs.range_mut(..last).filter(|(_, q)| q.takes(&m.topic)) {
                q.push(m.clone());
            }
        }
        if let Some(q) = self.subs.get_mut(&last) {
            q.push(m);
        }
        Ok(())
    }

    fn push_lifecycle(&mut self, ev: Event) {
        let cap = self.limits.events;
        for q in self.event_queues.values_mut() {
            if q.queue.len() >= cap {
                q.queue.pop_front();
                q.lagged += 1;
            }
            q.queue.push_back(ev.clone());
            if let Some(w) = q.waker.take() {
                w.wake();
            }
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
        self.writable.wake_all();
        self.peers_changed.wake_all();
        self.closed_waiters.wake_all();
    }
}

/// The shared state: one mutex, and the clock origin.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    origin: Instant,
}

impl Shared {
    pub(crate) fn new(state: State, origin: Instant) -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::new(state), origin })
    }

    /// Locks the state. The lock is never held across an await or a call into
    /// user code, so a poisoned lock can only come from a bug in estafeta
    /// itself; the state is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
