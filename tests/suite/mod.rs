//! The behaviour suite: each test is written once, generic over the runtime,
//! and instantiated for tokio (tests/tokio.rs) and smol (tests/smol.rs).

#![allow(dead_code)]

pub mod child;
pub mod close;
pub mod credit;
pub mod discovery;
pub mod fake_peer;
pub mod membership;
pub mod proxy;
pub mod relay_ring;
#[path = "../support/reset_proxy.rs"]
pub mod reset_proxy;
#[path = "../support/role_process.rs"]
pub mod role_process;
pub mod security;
pub mod sessions_io;
pub mod streams;
pub mod transfer;
pub mod util;

#[allow(unused_imports)] // used by the suite macro, not by every test crate
pub use child::a_child_process_is_killed_by_sigkill;
#[allow(unused_imports)]
pub use close::*;
#[allow(unused_imports)]
pub use credit::*;
#[allow(unused_imports)]
pub use discovery::*;
#[allow(unused_imports)]
pub use membership::*;
#[allow(unused_imports)]
pub use relay_ring::*;
#[allow(unused_imports)]
pub use security::*;
#[allow(unused_imports)]
pub use streams::*;
#[allow(unused_imports)]
pub use transfer::*;

use estafeta_core::PublishError;
use estafeta_driver::{AppLimits, CloseReason, DialEvent, Error, Event, Node, PeerRef, Runtime, SendMode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::{collect, fast_config, node, plain_config, sleep, wait_until};

/// Instantiates every behaviour test for one runtime.
#[allow(unused_macros)]
macro_rules! behaviour_suite {
    ($runtime:ty, $run:path) => {
        suite::behaviour_suite!(@each $runtime, $run;
            two_nodes_exchange_100k_in_order_without_duplicates,
            round_robin_splits_evenly_over_three,
            send_to_one_peer_by_id_and_name,
            connect_to_a_peer_that_dialed_us_returns_it_at_once,
            unsubscribe_stops_and_late_subscribe_starts_delivery,
            restarted_peer_is_reconnected_and_resubscribed,
            silent_peer_is_declared_down_by_liveness_timeout,
            silent_socket_fails_the_handshake_timeout,
            stalled_consumer_blocks_publisher_within_budget_then_nothing_is_lost,
            garbage_is_refused_with_a_reason_while_others_are_served,
            typed_messages_round_trip,
            close_flushes_and_ends_streams,
            publish_to_nobody_is_an_error,
            dropping_the_last_handle_closes_gracefully,
            a_tiny_event_queue_never_waits_for_a_timer,
            an_old_subscription_dropped_after_resubscribing_does_not_unsubscribe,
            delivery_visits_only_the_matching_subscriptions,
            close_returns_by_close_timeout_when_a_peer_reads_nothing,
            a_stalled_subscriber_holds_what_its_limits_allow_and_no_more,
            batches_are_published_and_received_in_order_through_backpressure,
            runs_reach_a_copy_stream_with_little_room_whole_and_in_order,
            a_stalled_subscription_stops_neither_another_topic_nor_heartbeats,
            a_child_process_is_killed_by_sigkill,
            ten_thousand_concurrent_streams_share_one_connection,
            a_stalled_stream_does_not_stop_another_on_the_same_connection,
            normal_end_no_server_bad_request_and_limits_have_their_codes,
            a_failed_or_panicking_handler_ends_the_stream_with_5000,
            cancel_undecodable_data_and_deadline_reach_the_producer,
            request_returns_the_single_reply_or_times_out,
            closing_the_producer_ends_its_streams_with_1001,
            a_killed_producer_ends_its_streams_with_1006,
            a_vanished_consumer_frees_the_producers_stream,
            membership_three_members_settle_to_distinct_indexes,
            membership_a_killed_member_is_removed_and_at_most_one_moves,
            membership_a_member_cut_from_its_coordinator_reports_none_within_its_lease,
            membership_a_restarted_coordinator_keeps_indexes_with_a_higher_epoch,
            membership_200_members_on_one_coordinator_settle,
            thirty_nodes_knowing_only_a_root_pair_up_on_five_topics,
            a_root_limited_to_four_connections_still_gets_everyone_paired,
            the_root_dropped_after_pairing_traffic_keeps_flowing,
            a_triangle_with_relay_delivers_each_message_once_and_never_back,
            an_accept_over_the_limit_is_refused_with_a_reason_the_dialler_reports,
            relay_carries_messages_through_one_intermediate_node,
            a_saturated_ring_of_relays_keeps_making_progress_and_reports_every_loss,
            a_big_file_reaches_three_receivers_verified,
            a_killed_receiver_resumes_where_it_synced,
            a_restarted_sender_offers_again_and_resumes,
            a_flipped_byte_in_a_partial_file_is_detected,
            hostile_names_are_refused_with_nothing_written_outside,
            a_disk_error_is_reported_and_the_node_keeps_serving,
            a_moved_receive_directory_or_a_planted_symlink_redirects_nothing,
            a_hundred_small_files_in_parallel,
            a_file_from_a_stream_is_sent_and_its_spool_removed,
            a_wrong_key_is_refused_at_both_ends_with_code_and_text,
            a_replayed_handshake_is_refused,
            a_man_in_the_middle_is_refused_by_pin_allow_list_and_network_key,
            a_plaintext_peer_is_refused_with_a_reason,
            a_flipped_bit_ends_the_connection_and_nothing_corrupt_is_delivered,
            an_impostor_is_refused_and_does_not_end_the_victims_session,
            a_graceful_close_delivers_everything_to_a_slow_reader,
            messages_of_every_size_cross_a_secure_connection_intact
        );
    };
    (@each $runtime:ty, $run:path; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $run(async { suite::util::within::<$runtime, _>(suite::util::test_limit(), suite::$name::<$runtime>()).await });
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use behaviour_suite;

pub async fn two_nodes_exchange_100k_in_order_without_duplicates<R: Runtime>() {
    const N: u64 = 100_000;
    let a = node::<R>("a", fast_config()).await;
    let mut sub = a.subscribe("seq").unwrap();
    let b = node::<R>("b", fast_config()).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("seq", 1).await.unwrap();
    let publisher = {
        let b = b.clone();
        async move {
            for i in 0..N {
                b.publish("seq", i.to_be_bytes().to_vec()).await.unwrap();
            }
        }
    };
    let receiver = async {
        let mut next = 0u64;
        while next < N {
            let m = sub.recv().await.expect("stream ended early");
            let got = u64::from_be_bytes(m.payload[..].try_into().unwrap());
            assert_eq!(got, next, "out of order or duplicated");
            assert_eq!(&*m.from.name, "b");
            next += 1;
        }
    };
    util::join(publisher, receiver).await;
    sleep::<R>(Duration::from_millis(50)).await;
    assert!(sub.try_next().is_none(), "a message arrived twice");
    assert_eq!(a.stats().pubsub.received, N);
}

pub async fn round_robin_splits_evenly_over_three<R: Runtime>() {
    let p = node::<R>("p", fast_config()).await;
    let mut subs = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let s = node::<R>(&format!("s{i}"), fast_config()).await;
        subs.push(s.subscribe("work").unwrap());
        p.connect(s.address().unwrap().to_string()).await.unwrap();
        nodes.push(s);
    }
    p.wait_for_subscribers("work", 3).await.unwrap();
    for i in 0..1000u32 {
        p.publish_round_robin("work", i.to_be_bytes().to_vec()).await.unwrap();
    }
    let mut counts = Vec::new();
    let mut all = Vec::new();
    for s in subs.iter_mut() {
        let got = collect(s, Duration::from_millis(300)).await;
        counts.push(got.len());
        all.extend(got.iter().map(|m| u32::from_be_bytes(m.payload[..].try_into().unwrap())));
    }
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>(), "each message exactly once");
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 1, "uneven split {counts:?}");
}

pub async fn send_to_one_peer_by_id_and_name<R: Runtime>() {
    let p = node::<R>("p", fast_config()).await;
    let x = node::<R>("x", fast_config()).await;
    let y = node::<R>("y", fast_config()).await;
    let (mut sx, mut sy) = (x.subscribe("direct").unwrap(), y.subscribe("direct").unwrap());
    p.connect(x.address().unwrap().to_string()).await.unwrap();
    p.connect(y.address().unwrap().to_string()).await.unwrap();
    p.wait_for_subscribers("direct", 2).await.unwrap();
    p.send_to(x.id(), "direct", "by id").await.unwrap();
    p.send_to("y", "direct", "by name").await.unwrap();
    let m = sx.recv().await.unwrap();
    assert_eq!(&m.payload[..], b"by id");
    let m = sy.recv().await.unwrap();
    assert_eq!(&m.payload[..], b"by name");
    // The receiver sees who sent it and can reply.
    assert_eq!(m.from.id, p.id());
    let mut replies = p.subscribe("replies").unwrap();
    y.wait_for_subscribers("replies", 1).await.unwrap();
    y.send_to(m.from.id, "replies", "pong").await.unwrap();
    assert_eq!(&replies.recv().await.unwrap().payload[..], b"pong");
    assert!(collect(&mut sx, Duration::from_millis(100)).await.is_empty(), "x got y's message");
    match p.send_to("nobody", "direct", "lost?").await {
        Err(Error::Publish(PublishError::UnknownPeer(PeerRef::Name(n)))) => assert_eq!(n, "nobody"),
        other => panic!("expected UnknownPeer, got {other:?}"),
    }
    match p.try_send_to(x.id(), "not-subscribed", "x") {
        Err(Error::Publish(PublishError::NotSubscribed { .. })) => {}
        other => panic!("expected NotSubscribed, got {other:?}"),
    }
}

/// `connect` to a peer that already dialed this node returns that peer at
/// once, opens no second connection, and the one session carries on.
pub async fn connect_to_a_peer_that_dialed_us_returns_it_at_once<R: Runtime>() {
    let a = node::<R>("a", fast_config()).await;
    let b = node::<R>("b", fast_config()).await;
    let mut t = b.subscribe("t").unwrap();
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    a.wait_for_subscribers("t", 1).await.unwrap();
    let limit = Duration::from_millis(500);
    let p = util::within::<R, _>(limit, a.connect(b.address().unwrap().to_string())).await.unwrap();
    assert_eq!(p.id, b.id());
    // Again: the same answer.
    let p = util::within::<R, _>(limit, a.connect(b.address().unwrap().to_string())).await.unwrap();
    assert_eq!(p.id, b.id());
    for i in 0..1000u32 {
        a.publish("t", i.to_be_bytes().to_vec()).await.unwrap();
    }
    for i in 0..1000u32 {
        assert_eq!(&t.recv().await.unwrap().payload[..], &i.to_be_bytes());
    }
    for n in [&a, &b] {
        let s = n.stats();
        assert_eq!((s.session.suspended, s.session.not_resumed, s.pubsub.dropped), (0, 0, 0));
        assert_eq!(n.peers().len(), 1);
    }
    assert_eq!((a.stats().dialer.dials, b.stats().dialer.dials), (0, 1), "one connection, b's");
}

pub async fn unsubscribe_stops_and_late_subscribe_starts_delivery<R: Runtime>() {
    let a = node::<R>("a", fast_config()).await;
    let b = node::<R>("b", fast_config()).await;
    let mut t = a.subscribe("t").unwrap();
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    b.publish("t", "one").await.unwrap();
    assert_eq!(&t.recv().await.unwrap().payload[..], b"one");
    drop(t);
    wait_until::<R>(|| b.subscriber_count("t") == 0, "b learns of the unsubscribe").await;
    assert!(matches!(b.publish("t", "two").await, Err(Error::Publish(PublishError::NoSubscribers(_)))));
    // Subscribing after the connection exists starts delivery.
    let mut u = a.subscribe("u").unwrap();
    b.wait_for_subscribers("u", 1).await.unwrap();
    b.publish("u", "late").await.unwrap();
    assert_eq!(&u.recv().await.unwrap().payload[..], b"late");
    // Explicit unsubscribe ends delivery even with the stream still open.
    a.unsubscribe("u").unwrap();
    wait_until::<R>(|| b.subscriber_count("u") == 0, "b learns of the unsubscribe").await;
    assert!(collect(&mut u, Duration::from_millis(50)).await.is_empty());
}

pub async fn restarted_peer_is_reconnected_and_resubscribed<R: Runtime>() {
    use estafeta_driver::{Identity, LossReason, SessionEvent};
    // a keeps its identity, so its id, across the restart.
    let secret = [7u8; 32];
    let build = |port: u16| {
        Node::<R>::builder("a")
            .identity(Identity::from_secret(secret))
            .bind(format!("127.0.0.1:{port}"))
            .config(fast_config())
            .build()
    };
    let a = build(0).await.unwrap();
    let (port, a_id) = (a.address().unwrap().port, a.id());
    let _t = a.subscribe("t").unwrap();
    let b = node::<R>("b", fast_config()).await;
    let mut events = b.events();
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    a.abort().await;
    drop(_t);
    // The lost connection suspends the session; it does not end it.
    loop {
        match events.recv().await.unwrap() {
            Event::Session(SessionEvent::Suspended { peer, .. }) => {
                assert_eq!(peer.id, a_id);
                break;
            }
            Event::PeerDown { peer, .. } => panic!("{} down on a lost connection: it should be suspended", peer.name),
            _ => continue,
        }
    }
    // Published while a is away: queued for its session.
    b.publish("t", "queued while away").await.unwrap();
    // A new process with the same id on the same port (a new incarnation).
    let a2 = build(port).await.unwrap();
    assert_eq!(a2.id(), a_id);
    let mut t2 = a2.subscribe("t").unwrap();
    // It never resumes: the old session ends with its reason and the range
    // of what is lost, then a new session starts.
    let mut ended = false;
    loop {
        match events.recv().await.unwrap() {
            Event::Session(SessionEvent::Resumed { .. }) => panic!("a restarted peer resumed"),
            Event::Session(SessionEvent::Ended { peer, reason, unacked, unsent, .. }) => {
                assert_eq!(peer.id, a_id);
                assert_eq!(reason, LossReason::PeerRestarted);
                assert_eq!(
                    unacked.end - unacked.start + unsent,
                    1,
                    "the message queued while away: {unacked:?} + {unsent}"
                );
                ended = true;
            }
            Event::PeerUp { peer, .. } if peer.id == a_id => {
                assert!(ended, "the new session started before the old one ended");
                break;
            }
            _ => continue,
        }
    }
    // No user code: b redialed and a2's subscription reached it.
    b.wait_for_subscribers("t", 1).await.unwrap();
    b.publish("t", "again").await.unwrap();
    let m = t2.recv().await.unwrap();
    assert_eq!(&m.payload[..], b"again", "nothing of the old session reaches the new process");
    assert_eq!(&*m.from.name, "b");
    assert!(b.stats().dialer.reconnects >= 1);
}

pub async fn silent_peer_is_declared_down_by_liveness_timeout<R: Runtime>() {
    let silent = fake_peer::SilentPeer::start(true);
    let cfg = plain_config();
    let a = node::<R>("a", cfg.clone()).await;
    let mut events = a.events();
    // The silence starts with the last byte the peer sent (its Hello), which
    // arrives before `connect` returns: measured from after it, the timeout
    // fired "early" by the few µs between the two (CI: 499.97 ms of 500).
    let started = R::now();
    let peer = a.connect(silent.addr()).await.unwrap();
    assert_eq!(&*peer.name, "silent");
    loop {
        match events.recv().await.unwrap() {
            Event::PeerDown { peer, reason } => {
                assert_eq!(&*peer.name, "silent");
                assert_eq!(reason, CloseReason::LivenessTimeout);
                break;
            }
            _ => continue,
        }
    }
    let took = R::now() - started;
    assert!(took >= cfg.session.liveness_timeout, "declared down too early: {took:?}");
}

pub async fn silent_socket_fails_the_handshake_timeout<R: Runtime>() {
    let silent = fake_peer::SilentPeer::start(false);
    let cfg = {
        let mut c = plain_config();
        c.dialer.reconnect_max_attempts = Some(1);
        c
    };
    let a = node::<R>("a", cfg).await;
    let mut events = a.events();
    assert!(matches!(a.connect(silent.addr()).await, Err(Error::ConnectFailed(_))));
    let reason = loop {
        if let Event::Dial(DialEvent::Failed { reason, .. }) = events.recv().await.unwrap() {
            break reason;
        }
    };
    assert_eq!(reason, CloseReason::HandshakeTimeout);
}

pub async fn stalled_consumer_blocks_publisher_within_budget_then_nothing_is_lost<R: Runtime>() {
    const N: usize = 50_000;
    const SIZE: usize = 1024;
    let sub_limits = AppLimits { subscription_messages: 256, subscription_bytes: 1 << 20, events: 64 };
    let a_cfg = {
        let mut c = fast_config();
        c.session.max_pending_events = 256;
        c.session.max_read_buffer = 64 << 10;
        c
    };
    let a = Node::<R>::builder("a").config(a_cfg).app_limits(sub_limits).build().await.unwrap();
    let mut sub = a.subscribe("bulk").unwrap();
    let b_cfg = {
        let mut c = fast_config();
        c.pubsub.max_queued_bytes_per_peer = 256 << 10;
        c
    };
    let b = node::<R>("b", b_cfg.clone()).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("bulk", 1).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (b, sent) = (b.clone(), sent.clone());
        async move {
            for i in 0..N {
                let mut payload = vec![0u8; SIZE];
                payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
                b.publish("bulk", payload).await.unwrap();
                sent.store(i + 1, Ordering::Relaxed);
            }
        }
    };
    let consumer = async {
        // Stall: read nothing for a while; the publisher must wait, not buffer.
        sleep::<R>(Duration::from_millis(1500)).await;
        let stalled_at = sent.load(Ordering::Relaxed);
        assert!(stalled_at < N, "publisher never waited: all {N} accepted while the consumer was stalled");
        let queued = b.queued_bytes(a.id()).unwrap();
        assert!(queued <= b_cfg.pubsub.max_queued_bytes_per_peer, "publisher queue {queued} over its budget");
        // The stall is also not a dead peer.
        assert_eq!(b.peers().len(), 1);
        let mut next = 0usize;
        while next < N {
            let m = sub.recv().await.unwrap();
            assert_eq!(u64::from_be_bytes(m.payload[..8].try_into().unwrap()) as usize, next);
            next += 1;
        }
        stalled_at
    };
    let ((), stalled_at) = util::join(publisher, consumer).await;
    assert!(stalled_at * SIZE < 32 << 20, "accepted {stalled_at} messages during the stall");
    assert_eq!(b.stats().pubsub.dropped, 0);
}

pub async fn garbage_is_refused_with_a_reason_while_others_are_served<R: Runtime>() {
    // Plaintext: the cases test the framing (a secure node refuses a plaintext preamble first).
    let a = node::<R>("a", plain_config()).await;
    let mut events = a.events();
    let mut t = a.subscribe("t").unwrap();
    let b = node::<R>("b", plain_config()).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("random bytes", fake_peer::random_bytes(4096), "bad magic"),
        ("wrong magic", b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), "bad magic"),
        // A newer peer is fine (versions are negotiated); an older one is not.
        ("too old a version", b"ESTF\x00\x01\x00".to_vec(), "unsupported protocol version 1"),
        ("oversized length", fake_peer::oversized_frame(), "exceeds the maximum"),
    ];
    let addr = a.address().unwrap().host_port();
    for (i, (what, bytes, reason)) in cases.into_iter().enumerate() {
        let reply = fake_peer::send_and_read_reply(&addr, bytes).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with(b"ESTF"), "{what}: no preamble in reply {text:?}");
        assert!(text.contains(reason), "{what}: reply {text:?} lacks {reason:?}");
        // The node keeps serving its other peer.
        b.publish("t", format!("still here {i}")).await.unwrap();
        assert_eq!(t.recv().await.unwrap().payload, format!("still here {i}").as_bytes());
    }
    let mut violations = 0;
    while violations < 4 {
        if let Event::ProtocolViolation { .. } = events.recv().await.unwrap() {
            violations += 1;
        }
    }
    assert_eq!(a.stats().session.malformed, 4);
}

pub async fn typed_messages_round_trip<R: Runtime>() {
    use estafeta_driver::MessageExt;
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u32,
        item: String,
    }
    let a = node::<R>("a", fast_config()).await;
    let mut orders = a.subscribe("orders").unwrap();
    let b = node::<R>("b", fast_config()).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("orders", 1).await.unwrap();
    let sent = Order { id: 7, item: "tea".into() };
    b.publish_value("orders", &sent).await.unwrap();
    let got: Order = orders.recv().await.unwrap().decode().unwrap();
    assert_eq!(got, sent);
    b.publish("orders", vec![0xff]).await.unwrap();
    assert!(matches!(orders.recv().await.unwrap().decode::<Order>(), Err(Error::Format(_))));
}

pub async fn close_flushes_and_ends_streams<R: Runtime>() {
    let a = node::<R>("a", fast_config()).await;
    let mut t = a.subscribe("t").unwrap();
    let b = node::<R>("b", fast_config()).await;
    let mut a_events = a.events();
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    for i in 0..1000u32 {
        b.try_publish("t", i.to_be_bytes().to_vec()).unwrap();
    }
    b.close().await;
    let got = collect(&mut t, Duration::from_millis(200)).await;
    assert_eq!(got.len(), 1000, "close flushed what was queued");
    let reason = loop {
        if let Event::PeerDown { reason, .. } = a_events.recv().await.unwrap() {
            break reason;
        }
    };
    assert_eq!(reason.code(), estafeta_driver::CloseCode::GOING_AWAY);
    assert!(matches!(b.publish("t", "x").await, Err(Error::Closed)));
    a.close().await;
    assert!(t.recv().await.is_none(), "streams end when the node closes");
}

pub async fn publish_to_nobody_is_an_error<R: Runtime>() {
    let a = node::<R>("a", fast_config()).await;
    for mode in [SendMode::All, SendMode::RoundRobin] {
        match a.try_publish_with("void", "x", mode) {
            Err(Error::Publish(PublishError::NoSubscribers(t))) => assert_eq!(t.as_str(), "void"),
            other => panic!("expected NoSubscribers, got {other:?}"),
        }
    }
}

pub async fn dropping_the_last_handle_closes_gracefully<R: Runtime>() {
    let a = node::<R>("a", fast_config()).await;
    let mut t = a.subscribe("t").unwrap();
    let mut events = a.events();
    let b = node::<R>("b", fast_config()).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    let b2 = b.clone();
    b.publish("t", "queued before the drop").await.unwrap();
    drop(b);
    // A clone keeps the node alive.
    b2.publish("t", "from the clone").await.unwrap();
    drop(b2);
    assert_eq!(&t.recv().await.unwrap().payload[..], b"queued before the drop");
    assert_eq!(&t.recv().await.unwrap().payload[..], b"from the clone");
    let reason = loop {
        if let Event::PeerDown { reason, .. } = events.recv().await.unwrap() {
            break reason;
        }
    };
    assert_eq!(reason.code(), estafeta_driver::CloseCode::GOING_AWAY, "{reason}");
}

pub async fn a_tiny_event_queue_never_waits_for_a_timer<R: Runtime>() {
    // Timers far beyond the test's 60 s limit: if the driver ever stopped
    // reading a socket and waited for a timer to look again, this would hang.
    // 1 KiB messages keep each read to a few dozen frames, so the drain never
    // runs out of budget and yields (which would hide such a stall).
    let slow_timers = {
        let mut c = fast_config();
        c.session.heartbeat_interval = Duration::from_secs(300);
        c.session.liveness_timeout = Duration::from_secs(900);
        c.session.max_pending_events = 8;
        c
    };
    let a = node::<R>("a", slow_timers.clone()).await;
    let mut sub = a.subscribe("t").unwrap();
    let b = node::<R>("b", slow_timers).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    const N: u64 = 5_000;
    let publisher = async {
        for i in 0..N {
            let mut payload = vec![0u8; 1024];
            payload[..8].copy_from_slice(&i.to_be_bytes());
            b.publish("t", payload).await.unwrap();
        }
    };
    let receiver = async {
        for i in 0..N {
            assert_eq!(sub.recv().await.unwrap().payload[..8], i.to_be_bytes());
        }
    };
    util::join(publisher, receiver).await;
}

pub async fn an_old_subscription_dropped_after_resubscribing_does_not_unsubscribe<R: Runtime>() {
    let a = node::<R>("a", fast_config()).await;
    let b = node::<R>("b", fast_config()).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    let old = a.subscribe("t").unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    a.unsubscribe("t").unwrap();
    wait_until::<R>(|| b.subscriber_count("t") == 0, "b learns of the unsubscribe").await;
    let mut new = a.subscribe("t").unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    // The stream from before the unsubscribe no longer counts.
    drop(old);
    sleep::<R>(Duration::from_millis(100)).await;
    assert_eq!(b.subscriber_count("t"), 1, "dropping the old stream unsubscribed the new one");
    b.publish("t", "still subscribed").await.unwrap();
    assert_eq!(&new.recv().await.unwrap().payload[..], b"still subscribed");
}

pub async fn delivery_visits_only_the_matching_subscriptions<R: Runtime>() {
    // Ten thousand subscriptions on other topics must not make a message
    // cost more: delivery looks its topic's queues up instead of walking
    // them all. (A peer may announce that many topics only if allowed to.)
    const OTHERS: usize = 10_000;
    const N: u64 = 500;
    let cfg = {
        let mut c = fast_config();
        c.pubsub.max_subscriptions_per_peer = 2 * OTHERS;
        c
    };
    let a = node::<R>("a", cfg.clone()).await;
    let mut t = a.subscribe("t").unwrap();
    let mut all = a.messages();
    let others: Vec<_> = (0..OTHERS).map(|i| a.subscribe(&format!("other/{i}")).unwrap()).collect();
    let b = node::<R>("b", cfg).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("t", 1).await.unwrap();
    let before = a.queue_visits();
    let publisher = async {
        for i in 0..N {
            b.publish("t", i.to_be_bytes().to_vec()).await.unwrap();
        }
    };
    let receiver = async {
        for i in 0..N {
            assert_eq!(t.recv().await.unwrap().payload[..], i.to_be_bytes());
            assert_eq!(all.recv().await.unwrap().payload[..], i.to_be_bytes());
        }
    };
    util::join(publisher, receiver).await;
    // Each message visits the queue of "t" and the catch-all one, and only those.
    assert_eq!(a.queue_visits() - before, 2 * N, "delivery walked other subscriptions' queues");
    drop(others);
}

pub async fn close_returns_by_close_timeout_when_a_peer_reads_nothing<R: Runtime>() {
    // The peer never reads: the queue cannot flush, the socket stays
    // blocked with the goodbye unwritten. close() must still return by
    // close_timeout. (Long liveness: the silent peer must not be declared
    // down first, which would end the connection early.)
    let close_timeout = Duration::from_millis(500);
    let mut cfg = plain_config();
    cfg.session.close_timeout = close_timeout;
    cfg.session.heartbeat_interval = Duration::from_secs(5);
    cfg.session.liveness_timeout = Duration::from_secs(30);
    let sink = fake_peer::SilentPeer::subscriber(&["bulk"]);
    let a = node::<R>("a", cfg).await;
    a.connect(sink.addr()).await.unwrap();
    a.wait_for_subscribers("bulk", 1).await.unwrap();
    // Publish until the queue stays full: the kernel's buffers are full too.
    let payload = estafeta_driver::Bytes::from(vec![0u8; 64 << 10]);
    let mut full_in_a_row = 0;
    while full_in_a_row < 5 {
        match a.try_publish("bulk", payload.clone()) {
            Ok(_) => full_in_a_row = 0,
            Err(e) if e.is_full() => {
                full_in_a_row += 1;
                sleep::<R>(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
    let started = std::time::Instant::now();
    a.close().await;
    let took = started.elapsed();
    assert!(took >= close_timeout - Duration::from_millis(50), "close gave up flushing early: {took:?}");
    assert!(
        took < close_timeout + Duration::from_millis(300),
        "close took {took:?}, close_timeout is {close_timeout:?}"
    );
    assert!(a.stats().pubsub.dropped > 0, "what could not be flushed is counted");
}

pub async fn a_stalled_subscriber_holds_what_its_limits_allow_and_no_more<R: Runtime>() {
    // Measures the process's memory: runs alone in a child process.
    if !util::isolated("a_stalled_subscriber_holds_what_its_limits_allow_and_no_more") {
        return;
    }
    const MIB: usize = 1 << 20;
    let limits = AppLimits { subscription_messages: 4096, subscription_bytes: 4 * MIB, events: 64 };
    let cfg = {
        let mut c = plain_config();
        c.session.max_pending_event_bytes = 8 * MIB;
        c.session.max_read_buffer = 256 << 10;
        c
    };
    let a = Node::<R>::builder("a").config(cfg.clone()).app_limits(limits).build().await.unwrap();
    let (_small, _big) = (a.subscribe("small").unwrap(), a.subscribe("big").unwrap());
    let addr = a.address().unwrap().host_port();
    let base = util::resident_bytes();
    // 1. A trickle: 2000 small messages, each in a read of its own, held by
    // a subscription nobody reads. Each pinned a 64 KiB read chunk (smol).
    let n = 2000;
    fake_peer::publish_raw(&addr, "small", 64, Some(n), Duration::from_micros(200)).join().unwrap();
    wait_until::<R>(|| a.stats().pubsub.received == n as u64, "the trickle arrives").await;
    let trickle = util::resident_bytes().saturating_sub(base);
    // What each held message weighs: its frame (64 + 11 bytes) and its
    // bookkeeping (a Message in a queue), well under 1 KiB; plus 1 MiB.
    assert!(trickle < n * 1024 + MIB, "{n} held messages of 64 B take {} KiB", trickle >> 10);
    // 2. 64 KiB messages until the node stops reading: it then holds what
    // its limits allow: the subscription's bytes, the core's pending event
    // bytes, the read buffer and one frame. Frames cut by reads were kept
    // twice (tokio): about twice that.
    fake_peer::publish_raw(&addr, "big", 64 << 10, None, Duration::ZERO).join().unwrap();
    let held = util::resident_bytes().saturating_sub(base) - trickle;
    let allowed =
        limits.subscription_bytes + cfg.session.max_pending_event_bytes + cfg.session.max_read_buffer + (64 << 10);
    assert!(
        held < allowed + 2 * MIB,
        "a stalled subscriber holds {} KiB; its limits allow {} KiB",
        held >> 10,
        allowed >> 10
    );
    eprintln!(
        "held {} KiB after the trickle, then {} KiB more (limits {} KiB)",
        trickle >> 10,
        held >> 10,
        allowed >> 10
    );
}

pub async fn runs_reach_a_copy_stream_with_little_room_whole_and_in_order<R: Runtime>() {
    use estafeta_driver::Bytes;
    const N: u64 = 20_000;
    const ROOM: usize = 16;
    // The messages() stream holds copies in at most 16 messages: runs of
    // messages that arrived together (hundreds at a time here) must reach
    // it split, message by message while it has room, and whole and in
    // order everywhere.
    let limits = AppLimits { subscription_messages: ROOM, subscription_bytes: 1 << 20, events: 64 };
    let a = Node::<R>::builder("a").config(fast_config()).app_limits(limits).build().await.unwrap();
    let mut sub = a.subscribe("seq").unwrap();
    let mut all = a.messages();
    let b = node::<R>("b", fast_config()).await;
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("seq", 1).await.unwrap();
    let publisher = async {
        let mut batch = Vec::new();
        for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
            batch.extend(chunk.iter().map(|i| Bytes::copy_from_slice(&i.to_be_bytes())));
            b.publish_batch("seq", &mut batch).await.unwrap();
        }
    };
    // Reads runs as they came; returns the longest.
    async fn read_runs(s: &mut estafeta_driver::Subscription, bound: usize) -> usize {
        let (mut next, mut runs, mut longest) = (0u64, Vec::new(), 0);
        while next < N {
            assert!(s.next_runs(&mut runs).await > 0, "stream open");
            for r in runs.drain(..) {
                assert!(r.len() <= bound, "a run of {} in a stream of {bound}", r.len());
                assert_eq!(r.topic.as_str(), "seq");
                longest = longest.max(r.len());
                for p in r.payload_slices() {
                    assert_eq!(p, next.to_be_bytes(), "out of order or duplicated");
                    next += 1;
                }
            }
        }
        longest
    }
    let ((), (longest, longest_copy)) =
        util::join(publisher, util::join(read_runs(&mut sub, usize::MAX), read_runs(&mut all, ROOM))).await;
    assert!(longest > 1, "no message arrived in a run");
    println!("longest run {longest}, in the copy stream {longest_copy}");
}

pub async fn batches_are_published_and_received_in_order_through_backpressure<R: Runtime>() {
    use estafeta_driver::Bytes;
    const N: u64 = 30_000;
    // Small queues on both sides, so batches wait for room again and again:
    // a's credit window lets b have 512 messages untaken at most.
    let mut a_cfg = fast_config();
    a_cfg.pubsub.window_messages = 512;
    let a = Node::<R>::builder("a").config(a_cfg).build().await.unwrap();
    let mut sub = a.subscribe("seq").unwrap();
    let b = node::<R>("b", {
        let mut c = fast_config();
        c.pubsub.max_queued_frames_per_peer = 1000;
        c
    })
    .await;
    let mut refused = vec![Bytes::from_static(b"nobody listens")];
    match b.publish_batch("seq", &mut refused).await {
        Err(Error::Publish(PublishError::NoSubscribers(_))) => {}
        other => panic!("expected NoSubscribers, got {other:?}"),
    }
    assert_eq!(refused.len(), 1, "a refused payload stays in the batch");
    b.connect(a.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("seq", 1).await.unwrap();
    let publisher = async {
        let mut batch = Vec::new();
        for chunk in (0..N).collect::<Vec<_>>().chunks(2500) {
            batch.extend(chunk.iter().map(|i| Bytes::copy_from_slice(&i.to_be_bytes())));
            assert_eq!(b.publish_batch("seq", &mut batch).await.unwrap(), chunk.len());
            assert!(batch.is_empty(), "queued payloads leave the batch");
        }
    };
    let receiver = async {
        let (mut next, mut batch, mut batches) = (0u64, Vec::new(), 0);
        while next < N {
            // Single messages and batches mix.
            if next % 7 == 0 {
                let m = sub.recv().await.unwrap();
                assert_eq!(m.payload[..], next.to_be_bytes());
                next += 1;
                continue;
            }
            let n = sub.next_batch(&mut batch).await;
            assert!(n > 0 && n == batch.len() && n <= 512, "batch of {n}");
            for m in batch.drain(..) {
                assert_eq!(m.payload[..], next.to_be_bytes(), "out of order or duplicated");
                next += 1;
            }
            batches += 1;
        }
        batches
    };
    let ((), batches) = util::join(publisher, receiver).await;
    assert!(batches < N as usize, "messages came in batches");
    assert!(sub.try_next().is_none(), "more messages than sent");
    a.close().await;
    assert_eq!(sub.next_batch(&mut Vec::new()).await, 0, "the stream ends with the node");
}
