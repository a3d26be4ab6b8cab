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
