//! The streams a node hands out: messages of a subscription, and lifecycle events.

use crate::entry::{Entry, Taken};
use crate::state::{Consumed, Shared, State, SubQueue};
use estafeta_core::{Event, Message, MessageRun, Topic};
use futures_core::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A stream of received messages: one topic ([`Node::subscribe`](crate::Node::subscribe))
/// or all of them ([`Node::messages`](crate::Node::messages)).
///
/// Bounded by credit: each sending peer may have at most one window
/// ([`PubSubConfig::window_messages`](crate::PubSubConfig) and `window_bytes`)
/// of messages on a topic that the application has not taken yet; the
/// senders hold the rest, so a subscription that is not read slows only its
/// own senders on its own topic and nothing is lost. A second stream of the
/// same topic (or [`Node::messages`](crate::Node::messages)) holds copies,
/// bounded by [`AppLimits`](crate::AppLimits). Dropping the last
/// subscription of a topic unsubscribes from it.
/// The stream ends when the node is closed.
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    id: u64,
    topic: Option<Topic>,
    /// Messages taken from the shared queue in one batch, handed out without
    /// the lock. They count against the limits until the next batch is taken.
    taken: Taken,
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, topic: Option<Topic>) -> Subscription {
        let id = shared.lock().app.add_sub(topic.clone());
        Subscription { shared, id, topic, taken: Taken::default() }
    }

    /// The topic, or `None` for the stream of all messages.
    pub fn topic(&self) -> Option<&Topic> {
        self.topic.as_ref()
    }

    /// Takes a message if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Message> {
        if let Some(m) = self.taken.pop() {
            return Some(m);
        }
        let mut st = self.shared.lock();
        refill(&mut st, self.id, |q, c| take_batch(q, self.taken.entries(), c));
        drop(st);
        self.taken.pop()
    }

    /// Waits for the next message; `None` once the node is closed.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits until messages are waiting, then appends all of them to `batch`
    /// at once (one lock, one wake-up) and returns how many: at least one,
    /// or 0 once the node is closed. The messages handed out count against
    /// the subscription's limits ([`AppLimits`](crate::AppLimits)) until the
    /// next call that takes messages (`next_batch`, [`Subscription::recv`],
    /// [`Subscription::try_next`]): process them, then come back.
    ///
    /// ```
    /// use estafeta_driver::{Message, Node, Runtime, Error};
    ///
    /// async fn consume<R: Runtime>(node: &Node<R>) -> Result<u64, Error> {
    ///     let mut ticks = node.subscribe("ticks")?;
    ///     let (mut batch, mut bytes) = (Vec::new(), 0u64);
    ///     while ticks.next_batch(&mut batch).await > 0 {
    ///         bytes += batch.iter().map(|m| m.payload.len() as u64).sum::<u64>();
    ///         batch.clear(); // the Vec is reused: no allocation per batch
    ///     }
    ///     Ok(bytes) // the node was closed
    /// }
    /// ```
    pub async fn next_batch(&mut self, batch: &mut Vec<Message>) -> usize {
        // The messages are built here, without the lock.
        self.take_everything(|taken| taken.drain_into(batch)).await
    }

    /// Waits until messages are waiting, takes all of them from the shared
    /// queue, and hands them out with `out` (returns what it returns; 0 once
    /// the node is closed).
    async fn take_everything(&mut self, mut out: impl FnMut(&mut Taken) -> usize) -> usize {
        std::future::poll_fn(|cx| {
            if self.taken.is_empty() {
                let entries = self.taken.entries();
                if std::task::ready!(poll_take(&self.shared, self.id, cx, |q, c| take_all(q, entries, c))).is_none() {
                    return Poll::Ready(0);
                }
            }
            Poll::Ready(out(&mut self.taken))
        })
        .await
    }
}

impl Subscription {
    /// Waits until messages are waiting, then appends all of them to `runs`
    /// as they arrived: runs of consecutive messages from one peer (a
    /// message that came alone is a run of one). Returns how many messages:
    /// at least one, or 0 once the node is closed. The batch path that
    /// costs least per message: read each run's payloads in place
    /// ([`MessageRun::payload_slices`]) or as shared `Bytes`
    /// ([`MessageRun::payloads`]), without a [`Message`] for each. Like
    /// [`Subscription::next_batch`], the messages handed out count against
    /// the subscription's limits until the next call that takes messages.
    ///
    /// ```
    /// use estafeta_driver::{MessageRun, Node, Runtime, Error};
    ///
    /// async fn count_bytes<R: Runtime>(node: &Node<R>) -> Result<u64, Error> {
    ///     let mut ticks = node.subscribe("ticks")?;
    ///     let (mut runs, mut bytes) = (Vec::new(), 0u64);
    ///     while ticks.next_runs(&mut runs).await > 0 {
    ///         for run in runs.drain(..) {
    ///             // One topic and one sender per run: `run.topic`, `run.from`.
    ///             bytes += run.payload_slices().map(|p| p.len() as u64).sum::<u64>();
    ///         }
    ///     }
    ///     Ok(bytes) // the node was closed
    /// }
    /// ```
    pub async fn next_runs(&mut self, runs: &mut Vec<MessageRun>) -> usize {
        self.take_everything(|taken| taken.drain_runs(runs)).await
    }
}

/// Messages `recv` moves out of the shared queue per lock, at most.
const BATCH_MESSAGES: usize = 64;
/// Payload bytes it moves, at most, counted per entry: the last entry may
/// pass it by one run of messages (those of one socket read, at most).
const BATCH_BYTES: usize = 256 << 10;

/// Moves up to a batch of messages from `q` to `taken` (splitting a run
/// if need be); returns how many and their payload bytes.
fn take_batch(q: &mut SubQueue, taken: &mut VecDeque<Entry>, consumed: &mut Consumed) -> (usize, usize) {
    let (mut n, mut bytes) = (0, 0);
    let start = taken.len();
    while n < BATCH_MESSAGES && bytes < BATCH_BYTES {
        let Some(front) = q.queue.front_mut() else { break };
        let e = match front.split_to(BATCH_MESSAGES - n) {
            Some(part) => part,
            None => q.queue.pop_front().expect("front checked"),
        };
        n += e.len();
        bytes += e.bytes();
        taken.push_back(e);
    }
    consumed.count(q, taken.range(start..));
    (n, bytes)
}

/// Moves every entry from `q` to the end of `out`; returns how many
/// messages and their payload bytes.
fn take_all(q: &mut SubQueue, out: &mut VecDeque<Entry>, consumed: &mut Consumed) -> (usize, usize) {
    let n = q.msgs;
    let start = out.len();
    if out.is_empty() {
        std::mem::swap(out, &mut q.queue);
    } else {
        out.extend(q.queue.drain(..));
    }
    consumed.count(q, out.range(start..));
    // With the last batch given back, `bytes` counts the queue only.
    (n, q.bytes)
}

/// Called once the previous messages were handed out: their room is given
/// back (waking the driver if it waits for room), and `take` moves the
/// next ones out of the shared queue. Returns how many.
/// Messages that carry credit give it back to their senders as they leave
/// the queue.
fn refill(st: &mut State, id: u64, take: impl FnOnce(&mut SubQueue, &mut Consumed) -> (usize, usize)) -> usize {
    let Some(q) = st.app.subs.get_mut(&id) else {
        return 0;
    };
    let freed = q.taken > 0;
    q.bytes -= q.taken_bytes;
    let mut consumed = Consumed::default();
    (q.taken, q.taken_bytes) = take(q, &mut consumed);
    let n = q.taken;
    if freed && st.app.app_blocked {
        st.app.app_blocked = false;
        st.app.wake_driver();
    }
    consumed.report(st);
    n
}

/// Takes the next messages (see [`refill`]): `Some(n)` with `n > 0`,
/// `None` once the node is closed, or `Pending` with the task registered
/// to be woken when messages come.
fn poll_take(
    shared: &Shared,
    id: u64,
    cx: &mut Context<'_>,
    take: impl FnOnce(&mut SubQueue, &mut Consumed) -> (usize, usize),
) -> Poll<Option<usize>> {
    let Some(mut st) = shared.lock_or_yield(cx) else { return Poll::Pending };
    let n = refill(&mut st, id, take);
    if n > 0 {
        return Poll::Ready(Some(n));
    }
    if st.app.finished {
        return Poll::Ready(None);
    }
    if let Some(q) = st.app.subs.get_mut(&id) {
        q.waker = Some(cx.waker().clone());
    }
    shared.wait(st);
    Poll::Pending
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = self.get_mut();
        if this.taken.is_empty() {
            let taken = this.taken.entries();
            let took = std::task::ready!(poll_take(&this.shared, this.id, cx, |q, c| take_batch(q, taken, c)));
            if took.is_none() {
                return Poll::Ready(None);
            }
        }
        Poll::Ready(this.taken.pop())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let removed = st.app.remove_sub(self.id);
        let counted = removed.as_ref().is_some_and(|q| q.counted);
        // Messages it still held give their credit back.
        if let Some(mut q) = removed {
            let msgs = std::mem::take(&mut q.queue);
            let mut consumed = Consumed::default();
            consumed.count(&mut q, msgs.iter());
            consumed.report(&mut st);
        }
        if let (Some(t), true) = (&self.topic, counted) {
            let last = match st.app.topic_refs.get_mut(t) {
                Some(n) => {
                    *n -= 1;
                    *n == 0
                }
                None => false,
            };
            if last {
                st.app.topic_refs.remove(t);
                let _ = st.node.pubsub().unsubscribe(t.as_str());
            }
        }
        // Messages it held no longer block the driver.
        st.app.app_blocked = false;
        st.app.wake_driver();
    }
}

/// A stream of lifecycle events: peers up and down (with the reason),
/// subscriptions of peers, dial failures, protocol violations, drops.
///
/// Bounded: when the application falls behind, the oldest events are dropped
/// and counted in [`Events::lagged`]; the node never waits for this stream.
#[derive(Debug)]
pub struct Events {
    shared: Arc<Shared>,
    id: u64,
}

impl Events {
    pub(crate) fn new(shared: Arc<Shared>) -> Events {
        let mut st = shared.lock();
        let id = st.app.next_id();
        st.app.event_queues.insert(id, Default::default());
        drop(st);
        Events { shared, id }
    }

    /// Events dropped because this stream was full.
    pub fn lagged(&self) -> u64 {
        self.shared.lock().app.event_queues.get(&self.id).map_or(0, |q| q.lagged)
    }

    /// Waits for the next event; `None` once the node is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Takes an event if one is waiting, without waiting.
    ///
    /// ```
    /// use estafeta_driver::{Event, Events};
    /// fn peers_went_down(events: &mut Events) -> usize {
    ///     std::iter::from_fn(|| events.try_next()).filter(|e| matches!(e, Event::PeerDown { .. })).count()
    /// }
    /// ```
    pub fn try_next(&mut self) -> Option<Event> {
        self.shared.lock().app.event_queues.get_mut(&self.id)?.queue.pop_front()
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut st = self.shared.lock();
        let finished = st.app.finished;
        let Some(q) = st.app.event_queues.get_mut(&self.id) else {
            return Poll::Ready(None);
        };
        if let Some(ev) = q.queue.pop_front() {
            return Poll::Ready(Some(ev));
        }
        if finished {
            return Poll::Ready(None);
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.shared.lock().app.event_queues.remove(&self.id);
    }
}
