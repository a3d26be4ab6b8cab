//! Messages received together: consecutive Publish frames from one peer on
//! one topic, handed out as one event ([`PubSubEvent::Messages`]) that
//! keeps the frames as they arrived and yields the messages on demand.
//!
//! The receiving core checks each frame (its header, the credit, the
//! sequence) as it splits the run off the read buffer, and spends credit and
//! sequence numbers for the run at once; whoever consumes the run builds the
//! messages, on its own thread, as it takes them.
//!
//! [`PubSubEvent::Messages`]: super::PubSubEvent::Messages

use super::Message;
use crate::event::PeerInfo;
use crate::id::Topic;
use crate::wire::{PublishRun, LEN_PREFIX};
use bytes::{Buf, Bytes};

/// Consecutive messages from one peer on one topic, in the order sent.
///
/// Take the messages one by one ([`MessageRun::iter`], or by value), or
/// only their payloads, without building a [`Message`] for each: as shared
/// [`Bytes`] ([`MessageRun::payloads`]) or borrowed slices
/// ([`MessageRun::payload_slices`], no reference counting at all).
///
/// ```
/// use estafeta_core::{Event, Message, PubSubEvent};
///
/// /// Every message an event carries, one by one.
/// fn messages(ev: Event) -> Vec<Message> {
///     match ev {
///         Event::PubSub(PubSubEvent::Message(m)) => vec![m],
///         Event::PubSub(PubSubEvent::Messages(run)) => run.into_iter().collect(),
///         _ => Vec::new(),
///     }
/// }
///
/// /// The payload bytes an event carries, looked at in place.
/// fn payload_bytes(ev: &Event) -> usize {
///     match ev {
///         Event::PubSub(PubSubEvent::Message(m)) => m.payload.len(),
///         Event::PubSub(PubSubEvent::Messages(run)) => run.payload_slices().map(<[u8]>::len).sum(),
///         _ => 0,
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRun {
    /// The topic every message was published on.
    pub topic: Topic,
    /// The connected peer they arrived from.
    pub from: PeerInfo,
    /// The frames, length prefixes included, as the core checked them; or
    /// for a run of one made from a [`Message`], its payload.
    frames: Bytes,
    /// Header bytes of each frame after its length prefix; `None`: `frames`
    /// is one message's payload.
    head: Option<usize>,
    count: usize,
    payload_bytes: u64,
    /// The relay identity of a run of one made from a relayed message.
    relayed: Option<super::Relayed>,
}

impl MessageRun {
    /// A run of the frames the core split off and checked.
    pub(crate) fn new(topic: Topic, from: PeerInfo, run: PublishRun) -> Self {
        let PublishRun { frames, head, count, payload_bytes } = run;
        MessageRun { topic, from, frames, head: Some(head), count, payload_bytes, relayed: None }
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if it holds no message (never, as the core hands it out).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload bytes of all its messages.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// The payload bytes of the first message, if there is one.
    pub fn first_len(&self) -> Option<usize> {
        (self.count > 0).then(|| self.bounds(0).1.len())
    }

    /// The messages, in order (each shares the run's bytes: no copy).
    pub fn iter(&self) -> Iter<'_> {
        Iter { run: self, spans: self.spans() }
    }

    /// The payloads, in order, each shared with the run (no copy, one
    /// reference count each, and no [`Message`] built).
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = Bytes> + '_ {
        self.spans().map(|r| self.frames.slice(r))
    }

    /// The payloads, in order, borrowed: the cheapest way to read a run.
    pub fn payload_slices(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.spans().map(|r| &self.frames[r])
    }

    /// Splits off the first `n` messages (all of them if there are fewer)
    /// and returns them as a run; `self` keeps the rest.
    pub fn split_to(&mut self, n: usize) -> MessageRun {
        let n = n.min(self.count);
        let (mut at, mut bytes) = (0, 0u64);
        for _ in 0..n {
            let (next, payload) = self.bounds(at);
            bytes += payload.len() as u64;
            at = next;
        }
        let frames = self.frames.split_to(at);
        self.count -= n;
        self.payload_bytes -= bytes;
        MessageRun {
            topic: self.topic.clone(),
            from: self.from.clone(),
            frames,
            head: self.head,
            count: n,
            payload_bytes: bytes,
            relayed: if self.count == 0 { self.relayed.take() } else { None },
        }
    }

    /// Where the message at `at` in `frames` ends (the next one starts),
    /// and where its payload lies.
    fn bounds(&self, at: usize) -> (usize, std::ops::Range<usize>) {
        match self.head {
            None => (self.frames.len(), 0..self.frames.len()),
            Some(head) => {
                let mut prefix = [0; LEN_PREFIX];
                prefix.copy_from_slice(&self.frames[at..at + LEN_PREFIX]);
                let next = at + LEN_PREFIX + u32::from_be_bytes(prefix) as usize;
                (next, at + LEN_PREFIX + head..next)
            }
        }
    }

    /// Where each payload lies in `frames`.
    fn spans(&self) -> Spans<'_> {
        Spans { run: self, at: 0, left: self.count }
    }

    fn message(&self, payload: Bytes) -> Message {
        Message { topic: self.topic.clone(), from: self.from.clone(), payload, relayed: self.relayed }
    }

    /// Takes the first message off the front.
    fn pop_front(&mut self) -> Option<Message> {
        if self.count == 0 {
            return None;
        }
        let (next, span) = self.bounds(0);
        let payload = self.frames.slice(span);
        self.frames.advance(next);
        self.count -= 1;
        self.payload_bytes -= payload.len() as u64;
        let m = self.message(payload);
        Some(m)
    }
}

impl From<Message> for MessageRun {
    /// A run of one message.
    fn from(m: Message) -> Self {
        let Message { topic, from, payload, relayed } = m;
        let payload_bytes = payload.len() as u64;
        MessageRun { topic, from, frames: payload, head: None, count: 1, payload_bytes, relayed }
    }
}

/// The payload ranges of a run.
#[derive(Debug)]
struct Spans<'a> {
    run: &'a MessageRun,
    at: usize,
    left: usize,
}

impl Iterator for Spans<'_> {
    type Item = std::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (next, span) = self.run.bounds(self.at);
        self.at = next;
        Some(span)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Spans<'_> {}

/// The messages of a [`MessageRun`], by reference.
#[derive(Debug)]
pub struct Iter<'a> {
    run: &'a MessageRun,
    spans: Spans<'a>,
}

impl Iterator for Iter<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.spans.next().map(|span| self.run.message(self.run.frames.slice(span)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// The messages of a [`MessageRun`], by value.
#[derive(Debug)]
pub struct IntoIter {
    run: MessageRun,
}

impl IntoIter {
    /// The messages not taken yet, as a run.
    pub fn into_rest(self) -> MessageRun {
        self.run
    }
}

impl Iterator for IntoIter {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.run.pop_front()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.run.count, Some(self.run.count))
    }
}

impl ExactSizeIterator for IntoIter {}

impl IntoIterator for MessageRun {
    type Item = Message;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter { run: self }
    }
}

impl<'a> IntoIterator for &'a MessageRun {
    type Item = Message;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::wire::{encode_frame, take_publish_run, Header, RunLimit};
    use bytes::BytesMut;

    fn run_of(payloads: &[&[u8]]) -> MessageRun {
        let mut out = Vec::new();
        for p in payloads {
            encode_frame(&mut out, &Header::Publish { topic: "news" }, p);
        }
        let mut buf = BytesMut::from(&out[..]);
        let run = take_publish_run(&mut buf, "news", 1 << 20, RunLimit { msgs: 100, bytes: 1 << 20 }).unwrap();
        assert!(buf.is_empty());
        let from = PeerInfo { id: NodeId::from_u128(7), name: "p".into() };
        MessageRun::new(Topic::from("news"), from, run)
    }

    #[test]
    fn yields_each_payload_in_order_with_topic_and_sender() {
        let run = run_of(&[b"one", b"", b"three"]);
        assert_eq!((run.len(), run.payload_bytes()), (3, 8));
        let got: Vec<Message> = run.iter().collect();
        assert_eq!(got.iter().map(|m| &m.payload[..]).collect::<Vec<_>>(), [&b"one"[..], b"", b"three"]);
        assert!(got
            .iter()
            .all(|m| m.topic.as_str() == "news" && m.from.id == NodeId::from_u128(7) && m.relayed.is_none()));
        assert_eq!(run.into_iter().collect::<Vec<_>>(), got);
    }

    #[test]
    fn split_to_keeps_order_and_counts() {
        let mut run = run_of(&[b"a", b"bb", b"ccc", b"dddd"]);
        let front = run.split_to(3);
        assert_eq!((front.len(), front.payload_bytes(), run.len(), run.payload_bytes()), (3, 6, 1, 4));
        assert_eq!(front.iter().map(|m| m.payload).collect::<Vec<_>>(), [&b"a"[..], b"bb", b"ccc"]);
        assert_eq!(run.iter().map(|m| m.payload).collect::<Vec<_>>(), [&b"dddd"[..]]);
        let rest = run.split_to(5);
        assert_eq!(rest.payload_slices().collect::<Vec<_>>(), [&b"dddd"[..]]);
        assert_eq!((rest.len(), run.len(), run.is_empty()), (1, 0, true));
        assert_eq!(run.iter().next(), None);
    }

    #[test]
    fn payloads_match_the_messages() {
        let run = run_of(&[b"x", b"yy", b"zzz"]);
        let slices: Vec<&[u8]> = run.payload_slices().collect();
        assert_eq!(slices, [&b"x"[..], b"yy", b"zzz"]);
        assert_eq!(run.payloads().collect::<Vec<_>>(), run.iter().map(|m| m.payload).collect::<Vec<_>>());
        let mut it = run.clone().into_iter();
        it.next();
        let rest = it.into_rest();
        assert_eq!((rest.len(), rest.payload_bytes()), (2, 5));
        assert_eq!(rest.first_len(), Some(2));
    }

    #[test]
    fn a_message_is_a_run_of_one() {
        let m = run_of(&[b"solo", b"x"]).iter().next().unwrap();
        let relayed = crate::pubsub::Relayed { origin: NodeId::from_u128(9), epoch: 1, seq: 3, hops: 0 };
        let m = Message { relayed: Some(relayed), ..m };
        let mut run = MessageRun::from(m.clone());
        assert_eq!((run.len(), run.payload_bytes(), run.first_len()), (1, 4, Some(4)));
        assert_eq!(run.payload_slices().collect::<Vec<_>>(), [&b"solo"[..]]);
        assert_eq!(run.iter().collect::<Vec<_>>(), std::slice::from_ref(&m));
        assert_eq!(run.split_to(1).into_iter().collect::<Vec<_>>(), [m]);
        assert!(run.is_empty());
    }
}
