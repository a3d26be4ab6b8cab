//! Property tests of the wire codec: every frame type round-trips, any split
//! of a stream decodes to the same frames, and arbitrary bytes never panic
//! the decoder.

use bytes::BytesMut;
use estafeta_core::wire::transfer::TransferFrame;
use estafeta_core::wire::{
    check_preamble, decode_frame, encode_frame, encoded_len_hint, write_preamble, DiscoveryFrame, Header, Hello, Hint,
    ListenAddr, MembershipFrame, RefuseReason, RelayHead, StreamFrame, WireError, LEN_PREFIX, PREAMBLE_LEN, VERSION,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// An owned [`Header`], so proptest can generate it.
#[derive(Clone, Debug)]
enum OwnedHeader {
    Hello {
        version: u16,
        id: u128,
        name: String,
        caps: u64,
        listen: Option<(String, u16)>,
        subscriptions: Vec<String>,
    },
    Credit(String, u32, u64),
    Subscribe(String),
    Unsubscribe(String),
    Publish(String),
    Heartbeat,
    Goodbye(u16, String),
    /// Streams: (kind, id, a number, a flag, a text, ids).
    Stream(u8, u64, u64, bool, String, Vec<u64>),
    /// A membership frame: kind (0..5), group, seq, index, total, epoch, hint.
    Membership(u8, String, u64, u32, u32, u64, Option<(u32, u64)>),
    Relay(String, u128, u32, u64, u8),
    TOffer(u64, String, String, u64, [u8; 32], u32, Vec<(String, String)>),
    TAccept(u64, u64, [u8; 32], u64),
    TChunk(u64, u64),
    TCredit(u64, u64, u64, u64),
    TAbort(u64, bool, String),
    Overwritten(String, u64),
}

impl OwnedHeader {
    fn as_header(&self) -> Header<'_> {
        match self {
            OwnedHeader::Hello { version, id, name, caps, listen, subscriptions } => Header::Hello(Hello {
                version: *version,
                min_version: version.saturating_sub(1),
                id: *id,
                name,
                capabilities: *caps,
                listen: listen.as_ref().map(|(host, port)| ListenAddr { host, port: *port }),
                subscriptions: subscriptions.iter().map(|s| s.as_str()).collect(),
                session: None,
            }),
            OwnedHeader::Credit(t, m, b) => Header::Credit { topic: t, messages: *m, bytes: *b },
            OwnedHeader::Subscribe(t) => Header::Subscribe { topic: t },
            OwnedHeader::Unsubscribe(t) => Header::Unsubscribe { topic: t },
            OwnedHeader::Publish(t) => Header::Publish { topic: t },
            OwnedHeader::Heartbeat => Header::Heartbeat,
            OwnedHeader::Goodbye(code, reason) => Header::Goodbye { code: *code, reason },
            OwnedHeader::Stream(k, id, n, flag, t, ids) => Header::Stream(match k % 8 {
                0 => StreamFrame::Serve { topic: t },
                1 => StreamFrame::Unserve { topic: t },
                2 => StreamFrame::Open { id: *id, topic: t, window: *n, deadline_ms: flag.then_some(*n / 3) },
                3 => StreamFrame::Data { id: *id, more: *flag },
                4 => StreamFrame::Close { id: *id, code: *n as u16, text: t },
                5 => StreamFrame::Cancel { id: *id, code: *n as u16, text: t },
                6 => StreamFrame::Credit { id: *id, bytes: *n },
                _ => StreamFrame::Heartbeat { reply: *flag, seen: *n, held: ids.clone() },
            }),
            OwnedHeader::Membership(kind, group, seq, index, total, epoch, hint) => {
                let (seq, index, total, epoch) = (*seq, *index, *total, *epoch);
                Header::Membership(match kind % 5 {
                    0 => MembershipFrame::Join { group, seq, hint: hint.map(|(index, epoch)| Hint { index, epoch }) },
                    1 => MembershipFrame::Leave { group },
                    2 => MembershipFrame::Refused { group, reason: RefuseReason::GroupFull },
                    3 => MembershipFrame::Settling { group, seq },
                    _ => MembershipFrame::Assigned { group, seq, index, total, epoch },
                })
            }
            OwnedHeader::Relay(t, origin, epoch, seq, hops) => Header::Discovery(DiscoveryFrame::Relay {
                topic: t,
                origin: *origin,
                epoch: *epoch,
                seq: *seq,
                hops: *hops,
            }),
            OwnedHeader::TOffer(id, topic, name, size, hash, chunk, meta) => Header::Transfer(TransferFrame::Offer {
                id: *id,
                topic,
                name,
                size: *size,
                hash: *hash,
                chunk: *chunk,
                meta: meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            }),
            OwnedHeader::TAccept(id, offset, prefix, until) => {
                Header::Transfer(TransferFrame::Accept { id: *id, offset: *offset, prefix: *prefix, until: *until })
            }
            OwnedHeader::TChunk(id, offset) => Header::Transfer(TransferFrame::Chunk { id: *id, offset: *offset }),
            OwnedHeader::TCredit(id, synced, until, received) => {
                Header::Transfer(TransferFrame::Credit { id: *id, synced: *synced, until: *until, received: *received })
            }
            OwnedHeader::TAbort(id, by_sender, reason) => {
                Header::Transfer(TransferFrame::Abort { id: *id, by_sender: *by_sender, reason })
            }
            OwnedHeader::Overwritten(topic, count) => Header::Overwritten { topic, count: *count },
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z./_-]{0,12}",
        any::<String>(),
        // Long enough for a multi-byte varint length.
        "[a-z]{120,300}",
    ]
}

fn header() -> impl Strategy<Value = OwnedHeader> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u128>(),
            text(),
            any::<u64>(),
            prop::option::of((text(), any::<u16>())),
            prop::collection::vec(text(), 0..8)
        )
            .prop_map(|(version, id, name, caps, listen, subscriptions)| {
                OwnedHeader::Hello { version, id, name, caps, listen, subscriptions }
            }),
        (text(), any::<u32>(), any::<u64>()).prop_map(|(t, m, b)| OwnedHeader::Credit(t, m, b)),
        text().prop_map(OwnedHeader::Subscribe),
        text().prop_map(OwnedHeader::Unsubscribe),
        text().prop_map(OwnedHeader::Publish),
        Just(OwnedHeader::Heartbeat),
        (any::<u16>(), text()).prop_map(|(c, r)| OwnedHeader::Goodbye(c, r)),
        (0u8..8, any::<u64>(), any::<u64>(), any::<bool>(), text(), prop::collection::vec(any::<u64>(), 0..8))
            .prop_map(|(k, id, n, f, t, ids)| OwnedHeader::Stream(k, id, n, f, t, ids)),
        (0u8..5, text(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<Option<(u32, u64)>>())
            .prop_map(|(k, g, s, i, t, e, h)| OwnedHeader::Membership(k, g, s, i, t, e, h)),
        (text(), any::<u128>(), any::<u32>(), any::<u64>(), any::<u8>())
            .prop_map(|(t, o, e, s, h)| OwnedHeader::Relay(t, o, e, s, h)),
        (
            any::<u64>(),
            text(),
            text(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<u32>(),
            prop::collection::vec((text(), text()), 0..4)
        )
            .prop_map(|(i, t, n, s, h, c, m)| OwnedHeader::TOffer(i, t, n, s, h, c, m)),
        (any::<u64>(), any::<u64>(), any::<[u8; 32]>(), any::<u64>())
            .prop_map(|(i, o, p, u)| OwnedHeader::TAccept(i, o, p, u)),
        (any::<u64>(), any::<u64>()).prop_map(|(i, o)| OwnedHeader::TChunk(i, o)),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(i, s, u, r)| OwnedHeader::TCredit(i, s, u, r)),
        (any::<u64>(), any::<bool>(), text()).prop_map(|(i, b, r)| OwnedHeader::TAbort(i, b, r)),
        (text(), any::<u64>()).prop_map(|(t, c)| OwnedHeader::Overwritten(t, c)),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..4096),
    ]
}

/// Flips the bytes `flips` names in `bytes`, and with two flips also cuts
/// it at `cut`: a frame as a shortcut may meet it.
fn tamper(bytes: &mut Vec<u8>, flips: &[(prop::sample::Index, u8)], cut: prop::sample::Index) {
    for (at, x) in flips {
        let i = at.index(bytes.len());
        bytes[i] ^= x;
    }
    let keep = if flips.len() == 2 { cut.index(bytes.len() + 1) } else { bytes.len() };
    bytes.truncate(keep);
}

/// Runs a receiver's shortcut `take` on `bytes`. If it takes nothing, the
/// buffer must be as it was; if it takes a frame, the decoder must take the
/// same bytes, and `same` checks what the decoder read against what the
/// shortcut returned.
fn shortcut_agrees<T>(
    bytes: &[u8],
    max: usize,
    take: impl FnOnce(&mut BytesMut) -> Option<T>,
    same: impl FnOnce(T, Header<'_>, &[u8]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut fast = BytesMut::from(bytes);
    match take(&mut fast) {
        None => prop_assert_eq!(&fast[..], bytes, "nothing taken"),
        Some(got) => {
            let mut slow = BytesMut::from(bytes);
            let frame = decode_frame(&mut slow, max).unwrap().expect("a whole frame");
            prop_assert_eq!(fast.len(), slow.len(), "the same bytes taken");
            let (h, body) = frame.parse().unwrap();
            same(got, h, &body)?;
        }
    }
    Ok(())
}

/// Cuts `total` bytes into pieces at the given fractions.
fn cut_points(total: usize, fractions: &[u16]) -> Vec<usize> {
    let mut cuts: Vec<usize> =
        fractions.iter().map(|f| (*f as usize * (total + 1)) / (u16::MAX as usize + 1)).collect();
    cuts.push(0);
    cuts.push(total);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Decodes every whole frame of `stream` fed in pieces split at `cuts`.
fn decode_split(stream: &[u8], cuts: &[usize], max: usize) -> Vec<(OwnedHeader, Vec<u8>)> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        buf.extend_from_slice(&stream[w[0]..w[1]]);
        while let Some(frame) = decode_frame(&mut buf, max).expect("valid stream") {
            let (h, p) = frame.parse().expect("valid header");
            out.push((owned(&h), p.to_vec()));
        }
    }
    assert!(buf.is_empty(), "bytes left over: {}", buf.len());
    out
}

fn owned(h: &Header<'_>) -> OwnedHeader {
    match h {
        Header::Hello(hello) => OwnedHeader::Hello {
            version: hello.version,
            id: hello.id,
            name: hello.name.to_string(),
            caps: hello.capabilities,
            listen: hello.listen.as_ref().map(|l| (l.host.to_string(), l.port)),
            subscriptions: hello.subscriptions.iter().map(|s| s.to_string()).collect(),
        },
        Header::Subscribe { topic } => OwnedHeader::Subscribe(topic.to_string()),
        Header::Unsubscribe { topic } => OwnedHeader::Unsubscribe(topic.to_string()),
        Header::Publish { topic } => OwnedHeader::Publish(topic.to_string()),
        Header::Heartbeat => OwnedHeader::Heartbeat,
        Header::Goodbye { code, reason } => OwnedHeader::Goodbye(*code, reason.to_string()),
        Header::Credit { topic, messages, bytes } => OwnedHeader::Credit(topic.to_string(), *messages, *bytes),
        Header::Stream(f) => {
            let s = |k, id, n, flag, t: &str, ids: Vec<u64>| OwnedHeader::Stream(k, id, n, flag, t.to_string(), ids);
            match f {
                StreamFrame::Serve { topic } => s(0, 0, 0, false, topic, vec![]),
                StreamFrame::Unserve { topic } => s(1, 0, 0, false, topic, vec![]),
                StreamFrame::Open { id, topic, window, deadline_ms } => {
                    s(2, *id, *window, deadline_ms.is_some(), topic, vec![])
                }
                StreamFrame::Data { id, more } => s(3, *id, 0, *more, "", vec![]),
                StreamFrame::Close { id, code, text } => s(4, *id, *code as u64, false, text, vec![]),
                StreamFrame::Cancel { id, code, text } => s(5, *id, *code as u64, false, text, vec![]),
                StreamFrame::Credit { id, bytes } => s(6, *id, *bytes, false, "", vec![]),
                StreamFrame::Heartbeat { reply, seen, held } => s(7, 0, *seen, *reply, "", held.clone()),
            }
        }
        Header::Membership(f) => {
            let g = f.group().to_string();
            match *f {
                MembershipFrame::Join { seq, hint, .. } => {
                    OwnedHeader::Membership(0, g, seq, 0, 0, 0, hint.map(|h| (h.index, h.epoch)))
                }
                MembershipFrame::Leave { .. } => OwnedHeader::Membership(1, g, 0, 0, 0, 0, None),
                MembershipFrame::Refused { .. } => OwnedHeader::Membership(2, g, 0, 0, 0, 0, None),
                MembershipFrame::Settling { seq, .. } => OwnedHeader::Membership(3, g, seq, 0, 0, 0, None),
                MembershipFrame::Assigned { seq, index, total, epoch, .. } => {
                    OwnedHeader::Membership(4, g, seq, index, total, epoch, None)
                }
            }
        }
        Header::Discovery(DiscoveryFrame::Relay { topic, origin, epoch, seq, hops }) => {
            OwnedHeader::Relay(topic.to_string(), *origin, *epoch, *seq, *hops)
        }
        Header::Discovery(other) => panic!("this test generates no {other:?}"),
        Header::Transfer(f) => match f {
            TransferFrame::Offer { id, topic, name, size, hash, chunk, meta } => OwnedHeader::TOffer(
                *id,
                topic.to_string(),
                name.to_string(),
                *size,
                *hash,
                *chunk,
                meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ),
            TransferFrame::Accept { id, offset, prefix, until } => OwnedHeader::TAccept(*id, *offset, *prefix, *until),
            TransferFrame::Chunk { id, offset } => OwnedHeader::TChunk(*id, *offset),
            TransferFrame::Credit { id, synced, until, received } => {
                OwnedHeader::TCredit(*id, *synced, *until, *received)
            }
            TransferFrame::Abort { id, by_sender, reason } => OwnedHeader::TAbort(*id, *by_sender, reason.to_string()),
            other => panic!("not generated: {other:?}"),
        },
        Header::SubscribeRefused { topic, reason } => OwnedHeader::Goodbye(0, format!("{topic}{reason}")),
        Header::Session(other) => panic!("not generated: {other:?}"),
        Header::Overwritten { topic, count } => OwnedHeader::Overwritten(topic.to_string(), *count),
    }
}

impl PartialEq for OwnedHeader {
    fn eq(&self, other: &Self) -> bool {
        self.as_header() == other.as_header()
    }
}

const BIG: usize = 1 << 20;

proptest! {
    /// Every header variant, with its payload, survives encode -> decode -> parse.
    #[test]
    fn every_frame_round_trips(h in header(), p in payload(), prefix in prop::collection::vec(any::<u8>(), 0..8)) {
        // Encoding appends: whatever was in the buffer before stays.
        let mut out = prefix.clone();
        let n = encode_frame(&mut out, &h.as_header(), &p);
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(n, out.len() - prefix.len());
        let len = u32::from_be_bytes(out[prefix.len()..prefix.len() + 4].try_into().unwrap()) as usize;
        prop_assert_eq!(len + LEN_PREFIX, n);

        let mut buf = BytesMut::from(&out[prefix.len()..]);
        let frame = decode_frame(&mut buf, BIG).unwrap().expect("a whole frame");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame.bytes().len(), len);
        let (back, body) = frame.parse().unwrap();
        prop_assert_eq!(back, h.as_header());
        prop_assert_eq!(&body[..], &p[..]);

        // One byte short is "need more", never an error or a wrong frame.
        let mut short = BytesMut::from(&out[prefix.len()..out.len() - 1]);
        prop_assert!(decode_frame(&mut short, BIG).unwrap().is_none());
        prop_assert_eq!(short.len(), n - 1, "nothing consumed while incomplete");

        // The limit is checked against the length prefix, exactly.
        let mut exact = BytesMut::from(&out[prefix.len()..]);
        prop_assert!(decode_frame(&mut exact, len).unwrap().is_some());
        if len > 1 {
            let mut over = BytesMut::from(&out[prefix.len()..]);
            prop_assert_eq!(
                decode_frame(&mut over, len - 1).unwrap_err(),
                WireError::FrameTooLarge { len, max: len - 1 }
            );
        }
    }

    /// The size hint used for queue accounting and the publish limit is an
    /// upper bound of the real Publish frame.
    #[test]
    fn publish_hint_is_an_upper_bound(topic in text(), p in payload()) {
        let mut out = Vec::new();
        let n = encode_frame(&mut out, &Header::Publish { topic: &topic }, &p);
        prop_assert!(n <= encoded_len_hint(topic.len(), p.len()), "{} > hint", n);
    }

    /// A stream of many frames decodes to the same frames however it is split.
    #[test]
    fn any_split_decodes_the_same(
        frames in prop::collection::vec((header(), payload()), 1..24),
        fractions in prop::collection::vec(any::<u16>(), 0..40),
    ) {
        let mut stream = Vec::new();
        for (h, p) in &frames {
            encode_frame(&mut stream, &h.as_header(), p);
        }
        let expected: Vec<(OwnedHeader, Vec<u8>)> = frames.clone();
        let whole = decode_split(&stream, &[0, stream.len()], BIG);
        prop_assert_eq!(&whole, &expected);
        let cuts = cut_points(stream.len(), &fractions);
        prop_assert_eq!(&decode_split(&stream, &cuts, BIG), &expected);
        // Byte by byte, too.
        let every: Vec<usize> = (0..=stream.len()).collect();
        prop_assert_eq!(&decode_split(&stream, &every, BIG), &expected);
    }

    /// Arbitrary bytes never panic the decoder; what it returns is consistent.
    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..600) {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut consumed = 0;
        loop {
            let before = buf.len();
            match decode_frame(&mut buf, max) {
                Ok(Some(frame)) => {
                    let len = frame.bytes().len();
                    prop_assert!(len > 0 && len <= max);
                    prop_assert_eq!(before - buf.len(), len + LEN_PREFIX);
                    consumed += len + LEN_PREFIX;
                    // Parsing may fail, but never panics, and a payload is
                    // always a tail of the frame.
                    if let Ok((_, payload)) = frame.parse() {
                        prop_assert!(payload.len() < len);
                        prop_assert_eq!(&frame.bytes()[len - payload.len()..], &payload[..]);
                    }
                }
                Ok(None) => {
                    prop_assert_eq!(buf.len(), before, "nothing consumed on Ok(None)");
                    break;
                }
                Err(e) => {
                    prop_assert_eq!(buf.len(), before, "nothing consumed on error");
                    let known = matches!(e, WireError::EmptyFrame | WireError::FrameTooLarge { .. });
                    prop_assert!(known, "unexpected error {:?}", e);
                    let _ = e.to_string();
                    break;
                }
            }
        }
        prop_assert!(consumed <= bytes.len());
    }

    /// Arbitrary bytes never panic the header parser.
    #[test]
    fn header_parser_never_panics(body in prop::collection::vec(any::<u8>(), 1..256)) {
        let mut stream = (body.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&body);
        let mut buf = BytesMut::from(&stream[..]);
        let frame = decode_frame(&mut buf, BIG).unwrap().unwrap();
        match frame.parse() {
            Ok((h, payload)) => {
                // Whatever parsed re-encodes to the same bytes (postcard is canonical
                // for what it accepts, except for over-long varints, so compare by re-parsing).
                let mut again = Vec::new();
                encode_frame(&mut again, &h, &payload);
                let mut b2 = BytesMut::from(&again[..]);
                let f2 = decode_frame(&mut b2, BIG).unwrap().unwrap();
                let (h2, p2) = f2.parse().unwrap();
                prop_assert_eq!(h2, h);
                prop_assert_eq!(p2, payload);
            }
            Err(e) => {
                let bad_header = matches!(e, WireError::BadHeader(_));
                prop_assert!(bad_header, "unexpected error {:?}", e);
            }
        }
    }

    /// The hand-written Relay encoding is postcard's, byte for byte, for
    /// any origin, epoch, sequence number and hops.
    #[test]
    fn relay_frames_are_postcards(topic in text(), origin in any::<u128>(), epoch in any::<u32>(), seq in any::<u64>(), hops in any::<u8>(), p in payload()) {
        let h = Header::Discovery(DiscoveryFrame::Relay { topic: &topic, origin, epoch, seq, hops });
        let mut ours = Vec::new();
        encode_frame(&mut ours, &h, &p);
        let mut theirs = postcard::to_allocvec(&h).unwrap();
        theirs.extend_from_slice(&p);
        prop_assert_eq!(&ours[LEN_PREFIX..], &theirs[..]);
    }

    /// The receiver's shortcut for a relayed copy on a known topic takes
    /// exactly what the decoder takes, and reads it the same; on anything
    /// else (bytes changed anywhere, another topic, a frame cut short) it
    /// leaves the buffer as it was.
    #[test]
    fn the_relay_shortcut_agrees_with_the_decoder(
        topic in "[a-z]{1,6}",
        (other, same) in ("[a-z]{1,6}", prop::bool::weighted(0.8)),
        (origin, epoch, seq, hops) in (any::<u128>(), any::<u32>(), any::<u64>(), any::<u8>()),
        p in payload(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        max in prop_oneof![Just(BIG), 0usize..200],
    ) {
        let other = if same { topic.clone() } else { other };
        let mut bytes = Vec::new();
        let h = Header::Discovery(DiscoveryFrame::Relay { topic: &topic, origin, epoch, seq, hops });
        encode_frame(&mut bytes, &h, &p);
        tamper(&mut bytes, &flips, cut);
        let take = |b: &mut BytesMut| estafeta_core::wire::take_relay_on(b, &other, max);
        shortcut_agrees(&bytes, max, take, |(got, payload), h, body| {
            let RelayHead { origin, epoch, seq, hops } = got;
            prop_assert_eq!(h, Header::Discovery(DiscoveryFrame::Relay { topic: &other, origin, epoch, seq, hops }));
            prop_assert_eq!(body, &payload[..]);
            Ok(())
        })?;
    }

    /// The receiver's Publish shortcut takes a frame only if the decoder
    /// reads the same Publish on the same topic with the same payload, and
    /// the same bytes; otherwise it leaves the buffer as it was.
    #[test]
    fn the_publish_shortcut_agrees_with_the_decoder(
        topic in "[a-z]{1,6}",
        (other, same) in ("[a-z]{1,6}", prop::bool::weighted(0.8)),
        p in payload(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        max in prop_oneof![Just(BIG), 0usize..200],
    ) {
        let other = if same { topic.clone() } else { other };
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, &Header::Publish { topic: &topic }, &p);
        tamper(&mut bytes, &flips, cut);
        let take = |b: &mut BytesMut| estafeta_core::wire::take_publish_on(b, &other, max);
        shortcut_agrees(&bytes, max, take, |payload, h, body| {
            prop_assert_eq!(h, Header::Publish { topic: &other });
            prop_assert_eq!(body, &payload[..]);
            Ok(())
        })?;
    }

    /// A run taken by the receiver's batch path is exactly the frames the
    /// decoder reads one by one from the front, while they are Publish
    /// frames on the run's topic within the limits: the same payloads, the
    /// same bytes; fewer than two such frames take nothing. Frames of other
    /// topics, other kinds, a flipped or cut byte end the run.
    #[test]
    fn a_run_is_what_the_decoder_reads_frame_by_frame(
        frames in prop::collection::vec((prop::bool::weighted(0.85), payload()), 1..12),
        kinds in prop::collection::vec(0u8..8, 12),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
        cut in any::<prop::sample::Index>(),
        max in prop_oneof![Just(BIG), 0usize..200],
        (limit_msgs, limit_bytes) in (0u64..14, prop_oneof![Just(u64::MAX), 0u64..400]),
    ) {
        let mut bytes = Vec::new();
        for (i, (on_topic, p)) in frames.iter().enumerate() {
            match (on_topic, kinds[i]) {
                (true, _) => encode_frame(&mut bytes, &Header::Publish { topic: "t" }, p),
                (false, 0) => encode_frame(&mut bytes, &Header::Heartbeat, &[]),
                (false, 1) => encode_frame(&mut bytes, &Header::Credit { topic: "t", messages: 1, bytes: 2 }, &[]),
                (false, _) => encode_frame(&mut bytes, &Header::Publish { topic: "tt" }, p),
            };
        }
        tamper(&mut bytes, &flips, cut);
        let limit = estafeta_core::wire::RunLimit { msgs: limit_msgs, bytes: limit_bytes };
        let mut fast = BytesMut::from(&bytes[..]);
        let run = estafeta_core::wire::take_publish_run(&mut fast, "t", max, limit);
        // What the decoder reads, frame by frame, under the same rule.
        let mut slow = BytesMut::from(&bytes[..]);
        let (mut want, mut taken_bytes) = (Vec::new(), 0u64);
        while (want.len() as u64) < limit_msgs && taken_bytes < limit_bytes {
            let mut peek = slow.clone();
            let Ok(Some(frame)) = decode_frame(&mut peek, max) else { break };
            match frame.parse() {
                Ok((Header::Publish { topic: "t" }, body)) => {
                    taken_bytes += body.len() as u64;
                    want.push(body.to_vec());
                    slow = peek;
                }
                _ => break,
            }
        }
        match run {
            None => {
                prop_assert!(want.len() < 2, "the decoder reads a run of {}", want.len());
                prop_assert_eq!(&fast[..], &bytes[..], "nothing taken");
            }
            Some(run) => {
                prop_assert_eq!(run.count, want.len());
                prop_assert_eq!(run.payload_bytes, taken_bytes);
                prop_assert_eq!(fast.len(), slow.len(), "the same bytes taken");
                prop_assert_eq!(run.frames.len(), bytes.len() - fast.len());
            }
        }
    }

    /// A Relay frame's header with arbitrary varint bytes (mostly
    /// continuing ones: long, overlong and overflowing varints) parses to
    /// what postcard reads from it, through the decoder and the shortcut.
    #[test]
    fn relay_varints_read_as_postcard_reads_them(
        tail in prop::collection::vec(prop_oneof![0x80u8..=0xff, any::<u8>(), Just(0x80u8), 0u8..4], 0..48),
    ) {
        let mut body = vec![9, 2, 1, b't'];
        body.extend_from_slice(&tail);
        let theirs = postcard::take_from_bytes::<Header<'_>>(&body).ok();
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        let mut buf = BytesMut::from(&framed[..]);
        let frame = decode_frame(&mut buf, BIG).unwrap().unwrap();
        let ours = frame.parse().ok();
        prop_assert_eq!(ours.as_ref().map(|(h, p)| (h.clone(), &p[..])), theirs.clone());
        let mut buf = BytesMut::from(&framed[..]);
        let taken = estafeta_core::wire::take_relay_on(&mut buf, "t", BIG);
        match (&taken, &theirs) {
            (Some((got, payload)), Some((Header::Discovery(DiscoveryFrame::Relay { origin, epoch, seq, hops, .. }), rest))) => {
                prop_assert_eq!((got.origin, got.epoch, got.seq, got.hops), (*origin, *epoch, *seq, *hops));
                prop_assert_eq!(&payload[..], *rest);
            }
            (None, None) => {}
            _ => prop_assert!(false, "the shortcut read {:?}, postcard {:?}", taken, theirs),
        }
    }

    /// The preamble check accepts exactly magic + our version.
    #[test]
    fn preamble_check(bytes in prop::collection::vec(any::<u8>(), 0..10)) {
        let mut good = Vec::new();
        write_preamble(&mut good);
        let r = check_preamble(&bytes);
        if bytes.len() >= PREAMBLE_LEN && bytes[..PREAMBLE_LEN] == good[..] {
            prop_assert!(r.is_ok());
        } else {
            prop_assert!(r.is_err());
        }
    }
}

#[test]
fn preamble_is_magic_and_version() {
    let mut p = Vec::new();
    write_preamble(&mut p);
    assert_eq!(p.len(), PREAMBLE_LEN);
    assert_eq!(&p[..4], b"ESTF");
    assert_eq!(u16::from_be_bytes([p[4], p[5]]), VERSION);
}

#[test]
fn header_variant_tags_are_stable() {
    // Variants are numbered by position on the wire; appending is allowed,
    // reordering is not. The first header byte is the variant index.
    let hello = Hello::new(0, "", estafeta_core::Capabilities::NONE, vec![]);
    let cases: [(Header<'_>, u8); 7] = [
        (Header::Hello(hello), 0),
        (Header::Subscribe { topic: "t" }, 1),
        (Header::Unsubscribe { topic: "t" }, 2),
        (Header::Publish { topic: "t" }, 3),
        (Header::Heartbeat, 4),
        (Header::Goodbye { code: 1000, reason: "" }, 5),
        (Header::Credit { topic: "t", messages: 1, bytes: 1 }, 6),
    ];
    for (h, tag) in cases {
        let mut out = Vec::new();
        encode_frame(&mut out, &h, b"");
        assert_eq!(out[LEN_PREFIX], tag, "{h:?}");
    }
    // A heartbeat is the smallest frame: length 1, tag 4.
    let mut hb = Vec::new();
    encode_frame(&mut hb, &Header::Heartbeat, b"");
    assert_eq!(hb, [0, 0, 0, 1, 4]);
}

#[test]
fn empty_and_oversized_frames_are_errors() {
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 9][..]);
    assert_eq!(decode_frame(&mut buf, 100).unwrap_err(), WireError::EmptyFrame);
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(decode_frame(&mut buf, 100), Err(WireError::FrameTooLarge { max: 100, .. })));
    // Fewer than four bytes is never an error.
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff][..]);
    assert!(decode_frame(&mut buf, 100).unwrap().is_none());
}

/// Hello fields are appended, never inserted: a decoder that knows fewer
/// fields (an older peer) reads the ones it knows and leaves the rest in the
/// frame's payload, which a Hello ignores.
#[test]
fn an_older_decoder_reads_a_newer_hello() {
    #[derive(serde::Serialize)]
    struct NewerHello<'a> {
        version: u16,
        min_version: u16,
        id: u128,
        name: &'a str,
        capabilities: u64,
        listen: Option<ListenAddr<'a>>,
        subscriptions: Vec<&'a str>,
        session: Option<estafeta_core::wire::HelloSession>,
        a_field_from_the_future: (u64, &'a str),
    }
    #[derive(serde::Serialize)]
    enum NewerHeader<'a> {
        Hello(NewerHello<'a>),
    }
    let newer = NewerHeader::Hello(NewerHello {
        version: 9,
        min_version: 2,
        id: 5,
        name: "future",
        capabilities: 1 << 40 | 1,
        listen: None,
        subscriptions: vec!["t"],
        session: None,
        a_field_from_the_future: (7, "x"),
    });
    let mut frame = vec![0; LEN_PREFIX];
    frame.extend_from_slice(&postcard::to_allocvec(&newer).unwrap());
    let len = (frame.len() - LEN_PREFIX) as u32;
    frame[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    let mut buf = BytesMut::from(&frame[..]);
    let raw = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    let (h, rest) = raw.parse().unwrap();
    match h {
        Header::Hello(hello) => {
            assert_eq!((hello.version, hello.id, hello.name), (9, 5, "future"));
            assert_eq!(hello.subscriptions, vec!["t"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(!rest.is_empty(), "the newer field is left as payload");
}

/// A Hello from a build before sessions (no `session` field) still decodes:
/// the missing field reads as `None`.
#[test]
fn a_hello_without_the_session_field_decodes() {
    #[derive(serde::Serialize)]
    struct OlderHello<'a> {
        version: u16,
        min_version: u16,
        id: u128,
        name: &'a str,
        capabilities: u64,
        listen: Option<ListenAddr<'a>>,
        subscriptions: Vec<&'a str>,
    }
    #[derive(serde::Serialize)]
    enum OlderHeader<'a> {
        Hello(OlderHello<'a>),
    }
    let older = OlderHeader::Hello(OlderHello {
        version: 2,
        min_version: 2,
        id: 5,
        name: "older",
        capabilities: 1,
        listen: None,
        subscriptions: vec!["t"],
    });
    let mut frame = vec![0; LEN_PREFIX];
    frame.extend_from_slice(&postcard::to_allocvec(&older).unwrap());
    let len = (frame.len() - LEN_PREFIX) as u32;
    frame[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    let mut buf = BytesMut::from(&frame[..]);
    let raw = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    match raw.parse().unwrap().0 {
        Header::Hello(hello) => assert_eq!((hello.id, hello.session), (5, None)),
        other => panic!("{other:?}"),
    }
}
