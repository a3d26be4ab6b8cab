//! A tokio node and a smol node talk to each other: messages both ways in all
//! three send modes, across a restart of either side.

mod suite;

use estafeta_driver::{Node, Runtime, Subscription};
use estafeta_smol::Smol;
use estafeta_tokio::Tokio;
use std::time::Duration;
use suite::util::{fast_config, wait_until, within};

struct Side<R: Runtime> {
    node: Node<R>,
    all: Subscription,
    rr: Subscription,
    direct: Subscription,
}

async fn side<R: Runtime>(name: &str, port: u16) -> Side<R> {
    let node = Node::<R>::builder(name)
        .bind(format!("127.0.0.1:{port}"))
        .config(fast_config())
        .build()
        .await
        .expect("node starts");
    Side {
        all: node.subscribe("all").unwrap(),
        rr: node.subscribe("rr").unwrap(),
        direct: node.subscribe("direct").unwrap(),
        node,
    }
}

/// `from` sends to `to` in every mode; `to` checks each message and its sender.
async fn exchange<A: Runtime, B: Runtime>(from: &Side<A>, to: &mut Side<B>, tag: &str) {
    // Wait for `to` itself, not just "a subscriber": right after a restart the
    // sender may still hold the session of the process that was killed.
    let to_id = to.node.id();
    wait_until::<A>(
        || {
            let peers = from.node.peers();
            peers.len() == 1
                && peers[0].id == to_id
                && ["all", "rr", "direct"].iter().all(|t| from.node.subscriber_count(t) == 1)
        },
        tag,
    )
    .await;
    from.node.publish("all", format!("{tag}/all")).await.unwrap();
    from.node.publish_round_robin("rr", format!("{tag}/rr")).await.unwrap();
    from.node.send_to(to.node.id(), "direct", format!("{tag}/direct-id")).await.unwrap();
    from.node.send_to(to.node.name(), "direct", format!("{tag}/direct-name")).await.unwrap();
    let from_id = from.node.id();
    let expect = [("all", "all"), ("rr", "rr"), ("direct", "direct-id"), ("direct", "direct-name")];
    for (topic, suffix) in expect {
        let sub = match topic {
            "all" => &mut to.all,
            "rr" => &mut to.rr,
            _ => &mut to.direct,
        };
        let m = sub.recv().await.expect("stream open");
        assert_eq!(m.payload, format!("{tag}/{suffix}").as_bytes(), "{tag}");
        assert_eq!(m.from.id, from_id, "{tag}: sender is visible to the receiver");
    }
}

#[test]
fn tokio_and_smol_nodes_interoperate_across_restarts() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(within::<Tokio, _>(Duration::from_secs(60), async {
        // Bind port 0, then restart each side on the port it got.
        let mut t = side::<Tokio>("tok", 0).await;
        let mut s = side::<Smol>("smo", 0).await;
        let (tp, sp) = (t.node.address().unwrap().port, s.node.address().unwrap().port);
        // Each dials the other, so each redials the other after a restart.
        t.node.connect(format!("127.0.0.1:{sp}")).await.unwrap();
        s.node.connect(format!("127.0.0.1:{tp}")).await.unwrap();
        exchange(&t, &mut s, "t->s").await;
        exchange(&s, &mut t, "s->t").await;

        // Restart the smol side (crash, then a new process on the same port).
        s.node.abort().await;
        drop(s);
        let mut s = side::<Smol>("smo", sp).await;
        s.node.connect(format!("127.0.0.1:{tp}")).await.unwrap();
        exchange(&t, &mut s, "t->s after smol restart").await;
        exchange(&s, &mut t, "s->t after smol restart").await;

        // Restart the tokio side.
        t.node.abort().await;
        drop(t);
        let mut t = side::<Tokio>("tok", tp).await;
        // No connect here: the smol node redials the restarted tokio node.
        exchange(&s, &mut t, "s->t after tokio restart").await;
        exchange(&t, &mut s, "t->s after tokio restart").await;
        assert!(s.node.stats().dialer.reconnects >= 1);
        t.node.close().await;
        s.node.close().await;
    }));
}

/// A smol node opens streams on a tokio node that serves them: replies in
/// order, a normal end, a cancel the producer sees, and request/reply.
#[test]
fn streams_between_tokio_and_smol() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(within::<Tokio, _>(Duration::from_secs(60), async {
        let producer = Node::<Tokio>::builder("tok").config(fast_config()).build().await.unwrap();
        let mut server = producer.serve_streams("rows").unwrap();
        let consumer = Node::<Smol>::builder("smo").config(fast_config()).build().await.unwrap();
        consumer.connect(producer.address().unwrap().to_string()).await.unwrap();
        consumer.wait_for_servers("rows", 1).await.unwrap();
        let (cancelled_tx, cancelled_rx) = std::sync::mpsc::channel();
        Tokio::spawn(async move {
            while let Some(req) = server.recv().await {
                let mut w = req.writer;
                if &req.request[..] == b"forever" {
                    let tx = cancelled_tx.clone();
                    Tokio::spawn(async move {
                        loop {
                            if let Err(e) = w.write("tick").await {
                                let _ = tx.send(e);
                                return;
                            }
                        }
                    });
                    continue;
                }
                for i in 0..100u32 {
                    w.write(i.to_be_bytes().to_vec()).await.unwrap();
                }
                w.close();
            }
        });
        let mut s = consumer.open_stream("rows", "all");
        let mut got = Vec::new();
        while let Some(item) = s.recv().await {
            got.push(u32::from_be_bytes(item.unwrap()[..4].try_into().unwrap()));
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        let mut s = consumer.open_stream("rows", "forever");
        s.recv().await.unwrap().unwrap();
        drop(s);
        wait_until::<Tokio>(
            || cancelled_rx.try_recv().is_ok_and(|e| matches!(e, estafeta_driver::StreamWriteError::Cancelled(_))),
            "the producer saw the cancel",
        )
        .await;
        let reply = consumer.request("rows", "one", Duration::from_secs(5)).await.unwrap();
        assert_eq!(&reply[..], &0u32.to_be_bytes());
        consumer.close().await;
        producer.close().await;
    }));
}

/// A file goes from a tokio node to a smol node, and another back.
#[test]
fn a_file_goes_from_tokio_to_smol_and_back() {
    use estafeta_driver::{FileEvent, FileOptions};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(within::<Tokio, _>(Duration::from_secs(60), async {
        let dir = std::env::temp_dir().join(format!("estafeta-interop-files-{}", std::process::id()));
        let t = Node::<Tokio>::builder("tok").config(fast_config()).build().await.unwrap();
        let s = Node::<Smol>::builder("smo").config(fast_config()).build().await.unwrap();
        let mut t_files = t.receive_files("files", dir.join("t")).await.unwrap();
        let mut s_files = s.receive_files("files", dir.join("s")).await.unwrap();
        t.connect(s.address().unwrap().to_string()).await.unwrap();
        t.wait_for_subscribers("files", 1).await.unwrap();
        s.wait_for_subscribers("files", 1).await.unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let a = t.send_bytes("files", "a.bin", data.clone(), FileOptions::default()).unwrap();
        let b = s.send_bytes("files", "b.bin", data.clone(), FileOptions::default()).unwrap();
        assert_eq!(a.outcomes().await[0].1, Ok(()));
        assert_eq!(b.outcomes().await[0].1, Ok(()));
        for files in [&mut t_files, &mut s_files] {
            loop {
                match files.recv().await.unwrap() {
                    FileEvent::Received(r) => {
                        assert_eq!(std::fs::read(&r.path).unwrap(), data);
                        break;
                    }
                    FileEvent::Failed { reason, .. } => panic!("{reason}"),
                    _ => {}
                }
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }));
}

/// The secure channel between the runtimes: a smol node dials a tokio node
/// that allow-lists it, pinning the tokio node's id; a smol node not on the
/// list is refused at both ends with 4003.
#[test]
fn tokio_and_smol_authenticate_each_other_and_refuse_a_stranger() {
    use estafeta_driver::{Event, Identity, OsEntropy};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(within::<Tokio, _>(Duration::from_secs(60), async {
        let smol_key = Identity::generate(&mut OsEntropy);
        let mut cfg = fast_config();
        cfg.security.allow = Some([smol_key.node_id()].into_iter().collect());
        cfg.dialer.reconnect_max_attempts = Some(2);
        let t = Node::<Tokio>::builder("tok").config(cfg.clone()).build().await.unwrap();
        let mut t_events = t.events();
        let mut open = fast_config();
        open.dialer.reconnect_max_attempts = Some(2);
        let s = Node::<Smol>::builder("smo").identity(smol_key).config(open.clone()).build().await.unwrap();
        let peer = s.connect(t.pinned_address().unwrap().to_string()).await.unwrap();
        assert_eq!(peer.id, t.id());
        assert_eq!(s.peer_key(t.id()), t.identity_key(), "the proven key is the tokio node's");
        loop {
            if let Some(Event::PeerUp { authenticated, .. }) = t_events.recv().await {
                assert!(authenticated, "allow-listed");
                break;
            }
        }
        let stranger = Node::<Smol>::builder("stranger").config(open).build().await.unwrap();
        let mut x_events = stranger.events();
        assert!(stranger.connect(t.address().unwrap().to_string()).await.is_err());
        loop {
            match x_events.recv().await {
                Some(Event::Refused { code, reason, .. }) => {
                    assert_eq!(code.0, 4003);
                    assert!(reason.contains("allow list"), "{reason}");
                    break;
                }
                Some(_) => continue,
                None => panic!("closed"),
            }
        }
        assert!(t.stats().security.unauthorized >= 1);
    }));
}
