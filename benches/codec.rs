//! Micro benchmarks of the wire codec and of the core's input path.
//!
//! - `encode`: one Publish frame of 64 B, 1 KiB and 64 KiB into a reused buffer;
//! - `decode`: split one such frame off a read buffer and parse its header;
//! - `decode_stream`: a buffer holding many small frames, split and parsed in turn;
//! - `handle_bytes`: `Node::handle_bytes` on a connection whose handshake is
//!   done, fed a stream of Publish frames in 64 KiB reads, events taken as
//!   the application would.
//!
//! Run with `cargo bench --bench codec`.

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use estafeta_core::wire::{decode_frame, encode_frame, Header};
#[path = "support/pair.rs"]
mod support;

use estafeta_core::{ConnId, Event, Node, PubSubEvent, Timestamp};
use std::hint::black_box;

const TOPIC: &str = "bench/topic";
const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 << 10, "64KiB")];
/// Bytes handed to `handle_bytes` per call, as the driver reads them.
const READ_CHUNK: usize = 64 << 10;

fn frame(payload_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, &Header::Publish { topic: TOPIC }, &vec![0xA5; payload_len]);
    out
}

/// `count` Publish frames of `payload_len` bytes back to back.
fn stream(payload_len: usize, count: usize) -> Vec<u8> {
    let payload = vec![0x5A; payload_len];
    let mut out = Vec::new();
    for _ in 0..count {
        encode_frame(&mut out, &Header::Publish { topic: TOPIC }, &payload);
    }
    out
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (size, name) in SIZES {
        let payload = vec![0xA5; size];
        let mut buf = Vec::with_capacity(size + 64);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                let n = encode_frame(&mut buf, &Header::Publish { topic: black_box(TOPIC) }, black_box(&payload));
                black_box(n)
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (size, name) in SIZES {
        let encoded = frame(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&encoded[..]),
                |mut buf| {
                    let f = decode_frame(&mut buf, 8 << 20).expect("valid").expect("whole");
                    let (h, payload) = f.parse().expect("valid header");
                    black_box(&h);
                    black_box(payload.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn decode_stream(c: &mut Criterion) {
    const COUNT: usize = 1000;
    let mut g = c.benchmark_group("decode_stream");
    for (size, name) in [(16usize, "1000x16B"), (64, "1000x64B")] {
        let encoded = stream(size, COUNT);
        g.throughput(Throughput::Elements(COUNT as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&encoded[..]),
                |mut buf| {
                    let mut n = 0usize;
                    while let Some(f) = decode_frame(&mut buf, 8 << 20).expect("valid") {
                        let (h, payload) = f.parse().expect("valid header");
                        black_box(&h);
                        n += payload.len();
                    }
                    black_box(n)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A subscriber node with one open connection from a publisher; returns
/// the node and the connection to feed.
fn handshaken() -> (Node, ConnId) {
    let (sub, conn, _publisher, _) = support::connected(TOPIC, |_| {});
    (sub, conn)
}

fn handle_bytes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handle_bytes");
    for (size, name, count) in [(64usize, "64B", 4096usize), (1024, "1KiB", 1024), (64 << 10, "64KiB", 32)] {
        let (mut node, conn) = handshaken();
        let input = stream(size, count);
        let now = Timestamp::from_millis(2);
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut got = 0usize;
                for chunk in input.chunks(READ_CHUNK) {
                    node.handle_bytes(now, conn, chunk);
                    while let Some(ev) = node.poll_event() {
                        match ev {
                            Event::PubSub(PubSubEvent::Message(m)) => {
                                got += 1;
                                black_box(m.payload);
                            }
                            Event::PubSub(PubSubEvent::Messages(run)) => {
                                for m in run {
                                    got += 1;
                                    black_box(m.payload);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                assert_eq!(got, count);
            })
        });
        // Still connected: nothing was refused.
        assert_eq!(node.peers().count(), 1);
    }
    g.finish();
}

criterion_group!(benches, encode, decode, decode_stream, handle_bytes);
criterion_main!(benches);
