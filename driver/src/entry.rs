//! What a subscription's queue holds: single messages and runs of them
//! ([`MessageRun`]: consecutive messages from one peer on one topic, as the
//! core received them). A run stays one entry until the application takes
//! its messages, which are built then, on the application's side.

use estafeta_core::{Message, MessageRun, NodeId, PubSubEvent, Topic};
use std::collections::VecDeque;

/// One delivery into a subscription's queue.
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    One(Message),
    Run(MessageRun),
}

impl Entry {
    /// Messages it holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Entry::One(_) => 1,
            Entry::Run(r) => r.len(),
        }
    }

    /// Their payload bytes.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Entry::One(m) => m.payload.len(),
            Entry::Run(r) => r.payload_bytes() as usize,
        }
    }

    /// The topic its messages were published on.
    pub(crate) fn topic(&self) -> &Topic {
        match self {
            Entry::One(m) => &m.topic,
            Entry::Run(r) => &r.topic,
        }
    }

    /// The peer its messages came from.
    pub(crate) fn from(&self) -> NodeId {
        match self {
            Entry::One(m) => m.from.id,
            Entry::Run(r) => r.from.id,
        }
    }

    /// The event it came as.
    pub(crate) fn into_event(self) -> PubSubEvent {
        match self {
            Entry::One(m) => PubSubEvent::Message(m),
            Entry::Run(r) => PubSubEvent::Messages(r),
        }
    }

    /// Splits off its first `n` messages (at least one): all of it if it
    /// holds no more.
    pub(crate) fn split_to(&mut self, n: usize) -> Option<Entry> {
        match self {
            Entry::Run(r) if n < r.len() => Some(Entry::Run(r.split_to(n.max(1)))),
            _ => None,
        }
    }
}

/// Messages a subscription took from its queue, handed out one by one
/// without the lock: runs are turned into messages as they are handed out.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    entries: VecDeque<Entry>,
    /// The run being handed out.
    current: Option<<MessageRun as IntoIterator>::IntoIter>,
}

impl Taken {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.current.as_ref().is_none_or(|it| it.len() == 0)
    }

    /// Where the queue's entries go when taken.
    pub(crate) fn entries(&mut self) -> &mut VecDeque<Entry> {
        &mut self.entries
    }

    /// The next message.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.current.as_mut().and_then(Iterator::next) {
                return Some(m);
            }
            self.current = None;
            match self.entries.pop_front()? {
                Entry::One(m) => return Some(m),
                Entry::Run(r) => self.current = Some(r.into_iter()),
            }
        }
    }

    /// Appends every message to `out` as runs (a single message as a run of
    /// one); returns how many messages.
    pub(crate) fn drain_runs(&mut self, out: &mut Vec<MessageRun>) -> usize {
        let mut n = 0;
        let rest = self.current.take().map(|it| it.into_rest()).filter(|r| !r.is_empty());
        let runs = rest.into_iter().chain(self.entries.drain(..).map(|e| match e {
            Entry::One(m) => MessageRun::from(m),
            Entry::Run(r) => r,
        }));
        for r in runs {
            n += r.len();
            out.push(r);
        }
        n
    }

    /// Appends every message to `out`; returns how many.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Message>) -> usize {
        let start = out.len();
        if let Some(it) = self.current.take() {
            out.extend(it);
        }
        for e in self.entries.drain(..) {
            match e {
                Entry::One(m) => out.push(m),
                Entry::Run(r) => out.extend(r),
            }
        }
        out.len() - start
    }
}
