//! Sessions on real sockets: a proxy that resets the connection every
//! 50–200 ms stands between a publisher under load and its subscriber;
//! with sessions on, every message arrives exactly once and in order, and
//! the connection really was resumed many times. With sessions off
//! (`resume_window` 0), the same run loses messages: the control that shows
//! the first test can fail. A stream through the same proxy gets every reply
//! once, in order, and its producer's end.

use super::reset_proxy::ResetProxy;
use super::util::{self, fast_config, node, sleep};
use estafeta_core::{PublishError, SessionEvent};
use estafeta_driver::{DialEvent, Error, Event, Events, Message, Runtime, Subscription, Timer};
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Instantiates the session tests for one runtime (from tests/tokio.rs and
/// tests/smol.rs).
#[allow(unused_macros)]
macro_rules! sessions_io_suite {
    ($runtime:ty, $run:path) => {
        suite::sessions_io::sessions_io_suite!(@each $runtime, $run;
            a_proxy_resetting_every_50_to_200ms_loses_and_duplicates_nothing,
            without_sessions_the_resetting_proxy_loses_messages,
            a_stream_through_the_resetting_proxy_gets_every_reply_once,
            without_sessions_a_stream_through_the_resetting_proxy_ends_at_a_reset
        );
        #[test]
        fn resets_every_50_to_200ms_for_20s_never_make_the_dialer_give_up() {
            $run(async {
                suite::util::within::<$runtime, _>(
                    std::time::Duration::from_secs(90),
                    suite::sessions_io::resets_every_50_to_200ms_for_20s_never_make_the_dialer_give_up::<$runtime>(),
                )
                .await
            });
        }
    };
    (@each $runtime:ty, $run:path; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $run(async {
                    suite::util::within::<$runtime, _>(suite::util::test_limit(), suite::sessions_io::$name::<$runtime>())
                        .await
                });
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use sessions_io_suite;

/// Messages the publisher sends (`ESTAFETA_RESET_MESSAGES` to change).
fn messages() -> u64 {
    std::env::var("ESTAFETA_RESET_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000)
}

/// The least time the publisher takes (it is paced if faster).
const SPAN: Duration = Duration::from_secs(3);
/// Publishes refused in a row (2 ms apart) before the publisher stops.
const REFUSED_LIMIT: u64 = 5_000;

/// Payload bytes: an 8-byte big-endian number, padded.
const SIZE: usize = 256;
const TOPIC: &str = "reset";

/// What the subscriber saw and what the nodes reported.
#[derive(Debug, Default)]
pub struct ResetRun {
    /// Messages sent.
    pub sent: u64,
    /// Messages received (with duplicates).
    pub received: u64,
    /// Received again, or behind one already received.
    pub duplicates: u64,
    /// Numbers skipped (never received before a later one).
    pub missing: u64,
    /// `Resumed` seen at the publisher / at the subscriber.
    pub resumed_pub: u64,
    pub resumed_sub: u64,
    /// `Suspended` seen at the publisher.
    pub suspended_pub: u64,
    /// `Ended` or `PeerDown` at either end, with what they said.
    pub ended: Vec<String>,
    /// Connections the proxy reset.
    pub resets: u64,
    /// Publisher bytes the proxy dropped at resets (in flight, lost).
    pub swallowed: u64,
    /// Publishes refused with no subscriber (sessions off: the peer was down).
    pub refused: u64,
    /// Connections the proxy accepted.
    pub accepted: u64,
    /// From the first publish to the last message received.
    pub elapsed: Duration,
}

/// Paces item `i` of `k` so that they span at least `span` from `started`:
/// bursts of 64 as fast as the node takes them.
async fn pace<R: Runtime>(started: std::time::Instant, span: Duration, i: u64, k: u64) {
    if i % 64 == 0 {
        let due = started + span.mul_f64(i as f64 / k as f64);
        let now = std::time::Instant::now();
        if now < due {
            sleep::<R>(due - now).await;
        }
    }
}

/// Counts the session events waiting in `events`.
fn drain_events(events: &mut Events, resumed: &mut u64, suspended: &mut u64, ended: &mut Vec<String>, who: &str) {
    while let Some(e) = events.try_next() {
        match e {
            Event::Session(SessionEvent::Resumed { .. }) => *resumed += 1,
            Event::Session(SessionEvent::Suspended { .. }) => *suspended += 1,
            Event::Session(SessionEvent::Ended { reason, unacked, unsent, received, .. }) => {
                ended.push(format!("{who}: ended ({reason}) unacked {unacked:?} unsent {unsent} received {received}"))
            }
            Event::PeerDown { reason, .. } => ended.push(format!("{who}: peer down ({reason})")),
            Event::Dial(DialEvent::GaveUp { .. }) => ended.push(format!("{who}: the dialer gave up")),
            _ => {}
        }
    }
}

/// The next message, or `None` after `quiet` without one.
async fn recv_within<R: Runtime>(sub: &mut Subscription, quiet: Duration) -> Option<Message> {
    let mut t = R::timer();
    t.reset(R::now() + quiet);
    let mut next = pin!(sub.recv());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(m) = next.as_mut().poll(cx) {
            return Poll::Ready(m);
        }
        if t.poll_fire(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Publishes `k` numbered messages as fast as the node takes them (paced
/// to last at least `span`)
/// through a proxy resetting the connection every 50–200 ms, and receives
/// until the last one arrives (or 3 s pass without a message).
pub async fn through_resetting_proxy<R: Runtime>(resume_window: Duration, k: u64, span: Duration) -> ResetRun {
    let mut cfg = fast_config();
    cfg.session.resume_window = resume_window;
    let s = node::<R>("sub", cfg.clone()).await;
    let mut sub = s.subscribe(TOPIC).unwrap();
    let mut sub_events = s.events();
    let proxy =
        ResetProxy::start(&s.address().unwrap().host_port(), Duration::from_millis(50), Duration::from_millis(200), 0);
    // Each reset drops bytes the publisher sent: the publisher's traffic
    // comes in paced bursts, and a reset between two would lose nothing.
    proxy.set_swallowing(true);
    let p = node::<R>("pub", cfg).await;
    let mut pub_events = p.events();
    p.connect(proxy.host_port()).await.unwrap();
    p.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let mut run = ResetRun { sent: k, ..Default::default() };
    let started = std::time::Instant::now();
    let publisher = {
        let p = p.clone();
        async move {
            let mut refused = 0u64;
            let mut payload = vec![0u8; SIZE];
            'publish: for i in 0..k {
                // Paced so the run spans at least `span` (3 s: about twenty
                // connection lifetimes), however fast the machine.
                pace::<R>(started, span, i, k).await;
                payload[..8].copy_from_slice(&i.to_be_bytes());
                loop {
                    match p.publish(TOPIC, payload.clone()).await {
                        Ok(_) => break,
                        // Sessions off: the peer is down until the redial; wait for it.
                        Err(Error::Publish(PublishError::NoSubscribers(_))) => {
                            refused += 1;
                            if refused >= REFUSED_LIMIT {
                                break 'publish;
                            }
                            sleep::<R>(Duration::from_millis(2)).await;
                        }
                        Err(e) => panic!("publish {i}: {e}"),
                    }
                }
            }
            refused
        }
    };
    let receiver = async {
        let (mut next, mut resumed, mut suspended, mut ended) = (0u64, 0u64, 0u64, Vec::new());
        // (received, duplicates, missing): a number below the next expected
        // is a duplicate, one above it skips what lies between.
        let mut stats = (0u64, 0u64, 0u64);
        let mut count = |m: &Message, next: &mut u64| {
            let got = u64::from_be_bytes(m.payload[..8].try_into().unwrap());
            assert_eq!(m.payload.len(), SIZE);
            stats.0 += 1;
            if got < *next {
                stats.1 += 1;
            } else {
                stats.2 += got - *next;
                *next = got + 1;
            }
            (got, stats.0)
        };
        while let Some(m) = recv_within::<R>(&mut sub, Duration::from_secs(3)).await {
            let (got, received) = count(&m, &mut next);
            if received % 64 == 0 {
                drain_events(&mut sub_events, &mut resumed, &mut suspended, &mut ended, "sub");
            }
            if got == k - 1 {
                break;
            }
        }
        // Anything more is a duplicate.
        while let Some(m) = recv_within::<R>(&mut sub, Duration::from_millis(300)).await {
            count(&m, &mut next);
        }
        drain_events(&mut sub_events, &mut resumed, &mut suspended, &mut ended, "sub");
        (stats, next, resumed, ended)
    };
    let (refused, ((received, duplicates, gaps), next, resumed_sub, mut ended)) = util::join(publisher, receiver).await;
    let (mut resumed_pub, mut suspended_pub) = (0, 0);
    drain_events(&mut pub_events, &mut resumed_pub, &mut suspended_pub, &mut ended, "pub");
    run.received = received;
    run.duplicates = duplicates;
    run.missing = gaps + (k - next);
    run.resumed_pub = resumed_pub;
    run.resumed_sub = resumed_sub;
    run.suspended_pub = suspended_pub;
    run.ended = ended;
    run.resets = proxy.resets();
    run.swallowed = proxy.swallowed();
    run.refused = refused;
    run.accepted = proxy.accepted();
    run.elapsed = started.elapsed();
    eprintln!("{run:?}");
    drop(proxy);
    p.abort().await;
    s.abort().await;
    run
}

pub async fn a_proxy_resetting_every_50_to_200ms_loses_and_duplicates_nothing<R: Runtime>() {
    let run = through_resetting_proxy::<R>(Duration::from_secs(30), messages(), SPAN).await;
    assert_eq!(run.duplicates, 0, "duplicates: {run:?}");
    assert_eq!(run.missing, 0, "lost messages: {run:?}");
    assert_eq!(run.received, run.sent, "{run:?}");
    assert!(run.ended.is_empty(), "no session may end: {run:?}");
    assert!(run.resets >= 5, "the proxy reset the connection only {} times: {run:?}", run.resets);
    assert!(run.swallowed > 0, "no reset lost bytes in flight: {run:?}");
    assert!(run.resumed_pub >= 5 && run.resumed_sub >= 5, "too few resumes: {run:?}");
    assert_eq!(run.refused, 0, "a suspended subscriber still counts as one: {run:?}");
}

/// The control: the same run with resumption off loses messages at the
/// resets (the proxy drops publisher bytes at each; each reset ends the
/// session). If this ever passes with no
/// loss, the proxy no longer tests anything.
pub async fn without_sessions_the_resetting_proxy_loses_messages<R: Runtime>() {
    let run = through_resetting_proxy::<R>(Duration::ZERO, messages(), SPAN).await;
    assert!(run.resets >= 5, "{run:?}");
    assert!(run.swallowed > 0, "no reset lost bytes in flight: {run:?}");
    assert_eq!(run.resumed_pub + run.resumed_sub, 0, "{run:?}");
    assert!(run.missing > 0, "no loss without sessions: the proxy tests nothing: {run:?}");
    assert!(run.ended.iter().any(|e| e.contains("peer down")), "{run:?}");
}

/// The same for 20 s (some 50 resets): a connection that carried messages
/// and was reset is not a failed dial, so the dialer keeps redialing and
/// the session keeps resuming. Before the dialer counted such a
/// connection as a success, the subscriber got about the first 30 resets'
/// worth, then nothing: the dialer gave up and the session expired.
pub async fn resets_every_50_to_200ms_for_20s_never_make_the_dialer_give_up<R: Runtime>() {
    let run = through_resetting_proxy::<R>(Duration::from_secs(30), 200_000, Duration::from_secs(20)).await;
    assert!(run.ended.is_empty(), "no session may end and no dialer give up: {run:?}");
    assert_eq!((run.received, run.duplicates, run.missing), (run.sent, 0, 0), "{run:?}");
}

/// What a stream through the resetting proxy delivered.
struct StreamRun {
    received: u64,
    end: Option<estafeta_core::CloseCode>,
    resets: u64,
    resumed: u64,
    ended: Vec<String>,
}

/// A producer writes `REPLIES` numbered replies for about 3 s (some twenty
/// connection lifetimes, bytes swallowed at each reset), then ends with
/// 1000; the consumer reads until the stream ends, checking the order.
async fn stream_through_resetting_proxy<R: Runtime>(resume_window: Duration) -> StreamRun {
    let mut cfg = fast_config();
    cfg.session.resume_window = resume_window;
    let producer = node::<R>("producer", cfg.clone()).await;
    let mut server = producer.serve_streams("rows").unwrap();
    let proxy = ResetProxy::start(
        &producer.address().unwrap().host_port(),
        Duration::from_millis(50),
        Duration::from_millis(200),
        0,
    );
    proxy.set_swallowing(true);
    let consumer = node::<R>("consumer", cfg).await;
    let mut events = consumer.events();
    consumer.connect(proxy.host_port()).await.unwrap();
    consumer.wait_for_servers("rows", 1).await.unwrap();
    let mut stream = consumer.open_stream("rows", "all of them");
    let writer = async {
        let mut w = server.recv().await.expect("the request").writer;
        let started = std::time::Instant::now();
        let mut payload = vec![0u8; SIZE];
        for i in 0..REPLIES {
            pace::<R>(started, SPAN, i, REPLIES).await;
            payload[..8].copy_from_slice(&i.to_be_bytes());
            if w.write(payload.clone()).await.is_err() {
                return; // the stream ended (without sessions: at a reset)
            }
        }
        w.close();
    };
    let (mut resumed, mut suspended, mut ended) = (0, 0, Vec::new());
    let reader = async {
        let mut next = 0u64;
        while let Some(item) = stream.recv().await {
            let Ok(reply) = item else { break };
            let got = u64::from_be_bytes(reply[..8].try_into().unwrap());
            assert_eq!(got, next, "replies once and in order");
            next += 1;
            if next % 64 == 0 {
                drain_events(&mut events, &mut resumed, &mut suspended, &mut ended, "consumer");
            }
        }
        next
    };
    let ((), received) = util::join(writer, reader).await;
    drain_events(&mut events, &mut resumed, &mut suspended, &mut ended, "consumer");
    let run = StreamRun { received, end: stream.end().map(|e| e.code), resets: proxy.resets(), resumed, ended };
    eprintln!(
        "{} of {REPLIES} replies, end {:?}, {} resets, {} resumes",
        run.received, run.end, run.resets, run.resumed
    );
    drop(proxy);
    consumer.abort().await;
    producer.abort().await;
    run
}

/// Replies a stream through the resetting proxy carries.
const REPLIES: u64 = 30_000;

/// A stream outlives the resets with its session: every reply once, in
/// order, then the producer's end.
pub async fn a_stream_through_the_resetting_proxy_gets_every_reply_once<R: Runtime>() {
    let run = stream_through_resetting_proxy::<R>(Duration::from_secs(30)).await;
    assert_eq!(run.received, REPLIES);
    assert_eq!(run.end, Some(estafeta_core::CloseCode::NORMAL));
    assert!(run.ended.is_empty(), "the session never ended: {:?}", run.ended);
    assert!(run.resets >= 5 && run.resumed >= 5, "{} resets, {} resumes", run.resets, run.resumed);
}

/// The control: with resumption off the first reset ends the stream with
/// 1006 (if this ever passes whole, the proxy no longer tests anything).
pub async fn without_sessions_a_stream_through_the_resetting_proxy_ends_at_a_reset<R: Runtime>() {
    let run = stream_through_resetting_proxy::<R>(Duration::ZERO).await;
    assert!(run.received < REPLIES, "{} replies", run.received);
    assert_eq!(run.end, Some(estafeta_core::CloseCode::ABNORMAL));
}
