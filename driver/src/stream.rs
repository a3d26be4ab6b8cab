//! The streams a node hands out: messages of a subscription, and lifecycle events.

use crate::state::{Shared, SubQueue};
use estafeta_core::{Event, Message, Topic};
use futures_core::Stream;
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
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, topic: Option<Topic>) -> Subscription {
        let mut st = shared.lock();
        let id = st.app.next_id();
        st.app.subs.insert(
            id,
            SubQueue {
                topic: topic.clone(),
                queue: Default::default(),
                bytes: 0,
                waker: None,
            },
        );
        drop(st);
        Subscription { shared, id, topic }
    }

    /// The topic, or `None` for the stream of all messages.
    pub fn topic(&self) -> Option<&Topic> {
        self.topic.as_ref()
    }

    /// Takes a message if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Message> {
        let mut st = self.shared.lock();
        pop(&mut st, self.id)
    }

    /// Waits for the next message; `None` once the node is closed.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

fn pop(st: &mut crate::state::State, id: u64) -> Option<Message> {
    let q = st.app.subs.get_mut(&id)?;
    let m = q.queue.pop_front()?;
    q.bytes -= m.payload.len();
    if st.app.app_blocked {
        st.app.app_blocked = false;
        st.app.wake_driver();
    }
    Some(m)
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut st = self.shared.lock();
        if let Some(m) = pop(&mut st, self.id) {
            return Poll::Ready(Some(m));
        }
        if st.app.finished {
            return Poll::Ready(None);
        }
        if let Some(q) = st.app.subs.get_mut(&self.id) {
            q.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.app.subs.remove(&self.id);
        if let Some(t) = &self.topic {
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
        self.shared
            .lock()
            .app
            .event_queues
            .get(&self.id)
            .map_or(0, |q| q.lagged)
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
