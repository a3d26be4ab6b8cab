//! The streams a node hands out: messages of a subscription, and lifecycle events.

use crate::state::{Shared, State};
use estafeta_core::{Event, Message, Topic};
use futures_core::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A stream of received messages: one topic ([`Node::subscribe`](crate::Node::subscribe))
/// or all of them ([`Node::messages`](crate::Node::messages)).
///
/// Bounded ([`AppLimits`](crate::AppLimits)): while it is full the node stops
/// reading its sockets, so TCP pushes back on the publishers and nothing is
/// lost. Dropping the last subscription of a topic unsubscribes from it.
/// The stream ends when the node is closed.
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    id: u64,
    topic: Option<Topic>,
    /// Messages taken from the shared queue in one batch, handed out without
    /// the lock. They count against the limits until the next batch is taken.
    taken: VecDeque<Message>,
}

/// Messages a subscription takes from its shared queue per lock, at most.
const BATCH_MESSAGES: usize = 64;
/// Payload bytes it takes per lock, at most (but always one message).
const BATCH_BYTES: usize = 256 << 10;

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, topic: Option<Topic>) -> Subscription {
        let id = shared.lock().app.add_sub(topic.clone());
        Subscription { shared, id, topic, taken: VecDeque::new() }
    }

    /// The topic, or `None` for the stream of all messages.
    pub fn topic(&self) -> Option<&Topic> {
        self.topic.as_ref()
    }

    /// Takes a message if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Message> {
        if let Some(m) = self.taken.pop_front() {
            return Some(m);
        }
        let mut st = self.shared.lock();
        refill(&mut st, self.id, &mut self.taken);
        self.taken.pop_front()
    }

    /// Waits for the next message; `None` once the node is closed.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

/// Called with `taken` empty: the last batch was handed out, so its room is
/// given back (waking the driver if it waits for room), and the next batch
/// is moved out of the shared queue.
fn refill(st: &mut State, id: u64, taken: &mut VecDeque<Message>) {
    let Some(q) = st.app.subs.get_mut(&id) else {
        return;
    };
    let freed = q.taken > 0;
    q.bytes -= q.taken_bytes;
    q.taken = 0;
    q.taken_bytes = 0;
    while q.taken < BATCH_MESSAGES && q.taken_bytes < BATCH_BYTES {
        let Some(m) = q.queue.pop_front() else { break };
        q.taken += 1;
        q.taken_bytes += m.payload.len();
        taken.push_back(m);
    }
    if freed && st.app.app_blocked {
        st.app.app_blocked = false;
        st.app.wake_driver();
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = self.get_mut();
        if let Some(m) = this.taken.pop_front() {
            return Poll::Ready(Some(m));
        }
        let mut st = this.shared.lock();
        refill(&mut st, this.id, &mut this.taken);
        if let Some(m) = this.taken.pop_front() {
            return Poll::Ready(Some(m));
        }
        if st.app.finished {
            return Poll::Ready(None);
        }
        if let Some(q) = st.app.subs.get_mut(&this.id) {
            q.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let counted = st.app.remove_sub(self.id).is_some_and(|q| q.counted);
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
                let _ = st.node.unsubscribe(t.as_str());
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
