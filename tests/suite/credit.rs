//! Credit flow control through the public API: a subscription the
//! application does not read stops nothing else.

use super::util::{fast_config, node, sleep};
use estafeta_driver::{Event, Runtime};
use std::time::{Duration, Instant};

/// A subscribes to `stalled` and `live` and never reads `stalled`; B keeps
/// publishing to both for three liveness timeouts. Every `live` message
/// arrives, `stalled` gets its window and then B's publishes to it are
/// `Full`, and neither side ever sees the other go down.
pub async fn a_stalled_subscription_stops_neither_another_topic_nor_heartbeats<R: Runtime>() {
    let mut a_cfg = fast_config();
    a_cfg.pubsub.window_messages = 64;
    let a = estafeta_driver::Node::<R>::builder("a").config(a_cfg.clone()).build().await.unwrap();
    let mut a_events = a.events();
    let _stalled = a.subscribe("stalled").unwrap();
    let mut live = a.subscribe("live").unwrap();
    let mut b_cfg = fast_config();
    b_cfg.pubsub.max_queued_frames_per_subscription = 100;
    let b = node::<R>("b", b_cfg).await;
    let mut b_events = b.events();
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("stalled", 1).await.unwrap();
    b.wait_for_subscribers("live", 1).await.unwrap();
    let until = Instant::now() + 3 * a_cfg.session.liveness_timeout;
    let (mut sent_live, mut got_live, mut stalled_ok, mut full) = (0u32, 0u32, 0u32, 0u32);
    while Instant::now() < until {
        match b.try_publish("stalled", vec![0u8; 100]) {
            Ok(_) => stalled_ok += 1,
            Err(e) if e.is_full() => full += 1,
            Err(e) => panic!("publish to the stalled topic: {e}"),
        }
        b.publish("live", sent_live.to_be_bytes().to_vec()).await.unwrap();
        sent_live += 1;
        while let Some(m) = live.try_next() {
            assert_eq!(m.payload[..], got_live.to_be_bytes(), "live messages in order");
            got_live += 1;
        }
        sleep::<R>(Duration::from_millis(5)).await;
    }
    while got_live < sent_live {
        let m = live.recv().await.unwrap();
        assert_eq!(m.payload[..], got_live.to_be_bytes());
        got_live += 1;
    }
    assert!(full > 0, "the stalled topic's queue filled: {stalled_ok} accepted");
    assert_eq!(stalled_ok, 64 + 100, "the stalled topic took its window, then its queue filled");
    for (who, events) in [("a", &mut a_events), ("b", &mut b_events)] {
        while let Some(ev) = events.try_next() {
            assert!(!matches!(ev, Event::PeerDown { .. }), "{who} saw {ev:?} while a topic was stalled");
        }
    }
    assert_eq!(a.peers().len(), 1);
    a.close().await;
    b.close().await;
}
