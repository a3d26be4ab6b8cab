//! One connection's outbound queue: a control lane that always goes first and
//! a data lane, bounded in bytes and frames. Frames are encoded only when the
//! driver pulls bytes, straight into the driver's buffer.

use crate::id::Topic;
use crate::wire::{encode_frame, encoded_len_hint, write_preamble, Header};
use bytes::Bytes;
use std::collections::VecDeque;

/// A frame waiting to be sent.
#[derive(Debug)]
pub(crate) enum Out {
    /// An already encoded frame (the handshake).
    Encoded(Vec<u8>),
    Subscribe(Topic),
    Unsubscribe(Topic),
    Heartbeat,
    Goodbye(u16, String),
    Publish(Topic, Bytes),
}

impl Out {
    fn encode(&self, buf: &mut Vec<u8>) -> usize {
        match self {
            Out::Encoded(bytes) => {
                buf.extend_from_slice(bytes);
                bytes.len()
            }
            Out::Subscribe(t) => encode_frame(buf, &Header::Subscribe { topic: t.as_str() }, &[]),
            Out::Unsubscribe(t) => encode_frame(buf, &Header::Unsubscribe { topic: t.as_str() }, &[]),
            Out::Heartbeat => encode_frame(buf, &Header::Heartbeat, &[]),
            Out::Goodbye(code, reason) => encode_frame(buf, &Header::Goodbye { code: *code, reason }, &[]),
            Out::Publish(t, p) => encode_frame(buf, &Header::Publish { topic: t.as_str() }, p),
        }
    }
}

/// Bytes a queued data frame counts against the per-peer limit.
pub(crate) fn data_cost(topic: &Topic, payload: &Bytes) -> usize {
    encoded_len_hint(topic.as_str().len(), payload.len())
}

#[derive(Debug, Default)]
pub(crate) struct Outbound {
    preamble_pending: bool,
    control: VecDeque<Out>,
    data: VecDeque<Out>,
    data_bytes: usize,
}

impl Outbound {
    pub(crate) fn new() -> Self {
        Outbound { preamble_pending: true, ..Default::default() }
    }

    pub(crate) fn push_control(&mut self, out: Out) {
        self.control.push_back(out);
    }

    pub(crate) fn push_data(&mut self, topic: Topic, payload: Bytes) {
        self.data_bytes += data_cost(&topic, &payload);
        self.data.push_back(Out::Publish(topic, payload));
    }

    /// True if `extra` more bytes in one more frame fit under the limits.
    pub(crate) fn has_room(&self, extra: usize, max_bytes: usize, max_frames: usize) -> bool {
        self.data.len() < max_frames && (self.data_bytes == 0 || self.data_bytes + extra <= max_bytes)
    }

    /// True once the queue fell to half its limits (the "writable again" mark).
    pub(crate) fn below_low_water(&self, max_bytes: usize, max_frames: usize) -> bool {
        self.data.len() <= max_frames / 2 && self.data_bytes <= max_bytes / 2
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.preamble_pending && self.control.is_empty() && self.data.is_empty()
    }

    pub(crate) fn data_is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn control_is_empty(&self) -> bool {
        self.control.is_empty()
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.data_bytes
    }

    /// Encodes queued frames into `buf` until it grew by at least `limit` bytes
    /// or the queue is empty. Control frames go before data. Returns
    /// (bytes written, data frames written).
    pub(crate) fn fill(&mut self, buf: &mut Vec<u8>, limit: usize) -> (usize, u64) {
        let start = buf.len();
        let mut data_frames = 0;
        if self.preamble_pending {
            write_preamble(buf);
            self.preamble_pending = false;
        }
        while buf.len() - start < limit {
            if let Some(out) = self.control.pop_front() {
                out.encode(buf);
            } else if let Some(out) = self.data.pop_front() {
                if let Out::Publish(t, p) = &out {
                    self.data_bytes -= data_cost(t, p);
                }
                out.encode(buf);
                data_frames += 1;
            } else {
                break;
            }
        }
        (buf.len() - start, data_frames)
    }

    /// Empties the queue; returns how many data frames were discarded.
    pub(crate) fn clear(&mut self) -> u64 {
        let n = self.data.len() as u64;
        self.control.clear();
        self.data.clear();
        self.data_bytes = 0;
        n
    }
}
