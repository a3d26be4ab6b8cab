//! The transfer plane end to end over the in-memory network, each node with
//! an in-memory disk that loses unsynced writes when it crashes.

mod common;

use common::files::*;
use common::Net;
use estafeta_core::transfer::{MemFs, TransferSource};
use estafeta_core::{blake3, Bytes, Node, NodeId, TransferEvent};
use std::path::Path;
use std::time::Duration;

#[test]
fn a_file_reaches_every_subscriber_verified() {
    let mut net = net(3);
    let data = content(1 << 20, 7);
    let id = net.node(0).transfer().send(TOPIC, "model.bin", TransferSource::Bytes(data.clone()), opts()).unwrap();
    net.run_for(Duration::from_secs(2));
    for i in 1..=3 {
        assert_eq!(file(&net.slots[i].fs, "model.bin"), Some(&data[..]), "receiver {i}");
        assert!(leftovers(&net.slots[i].fs).is_empty(), "{:?}", leftovers(&net.slots[i].fs));
        let r = received(&net, i);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].id, r[0].size, r[0].hash), (id, data.len() as u64, *blake3::hash(&data).as_bytes()));
        assert_eq!(r[0].path, Path::new(DIR).join("model.bin"));
        let ps: Vec<u64> = transfer_events(&net, i)
            .iter()
            .filter_map(|e| match e {
                TransferEvent::Progress { bytes, .. } => Some(*bytes),
                _ => None,
            })
            .collect();
        assert!(ps.windows(2).all(|w| w[0] < w[1]), "progress is monotone: {ps:?}");
    }
    assert_eq!(delivered(&net, 0), 3);
    let s = net.node(0).stats().transfer;
    assert_eq!((s.bytes_sent, s.bytes_resent), (3 << 20, 0));
    assert_eq!(net.node(0).transfer_ref().outgoing(), 0, "finished transfers are forgotten");
}

#[test]
fn a_file_from_disk_is_read_by_request() {
    let mut net = net(1);
    let data = content(300_000, 3);
    net.slots[0].fs.put("/out/a.bin", &data);
    let src = TransferSource::Path {
        path: "/out/a.bin".into(),
        size: data.len() as u64,
        hash: *blake3::hash(&data).as_bytes(),
    };
    net.node(0).transfer().send(TOPIC, "a.bin", src, opts()).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(file(&net.slots[1].fs, "a.bin"), Some(&data[..]));
    assert_eq!(delivered(&net, 0), 1);
}

#[test]
fn hostile_names_are_refused_and_nothing_is_written() {
    let mut net = net(1);
    let long = "a".repeat(10 * 1024);
    let names = ["../x", "/etc/x", "a/../../x", "con", "x\0y", long.as_str(), "..", "C:\\x", "x.part"];
    let mut sent = 0;
    for name in names {
        // The sender's own check stops most of them: send raw frames past it.
        let src = TransferSource::Bytes(Bytes::from_static(b"evil"));
        if net.node(0).transfer().send(TOPIC, name, src, opts()).is_ok() {
            sent += 1;
        }
    }
    // Names the sender refuses locally are sent by a hand-made peer.
    let conn = net.accept_fake(1).unwrap();
    let mut bytes = common::handshake_bytes(0xBAD, "mallory", &[]);
    // Announce the transfer plane too.
    bytes.clear();
    estafeta_core::wire::write_preamble(&mut bytes);
    let caps = estafeta_core::Capabilities::PUBSUB | estafeta_core::Capabilities::TRANSFER;
    let hello = estafeta_core::wire::Hello::new(0xBAD, "mallory", caps, vec![]);
    estafeta_core::wire::encode_frame(&mut bytes, &estafeta_core::wire::Header::Hello(hello), &[]);
    for (i, name) in names.iter().enumerate() {
        let f = estafeta_core::wire::transfer::TransferFrame::Offer {
            id: 1000 + i as u64,
            topic: TOPIC,
            name,
            size: 4,
            hash: *blake3::hash(b"evil").as_bytes(),
            chunk: 1024,
            meta: vec![],
        };
        estafeta_core::wire::encode_frame(&mut bytes, &estafeta_core::wire::Header::Transfer(f), &[]);
    }
    net.inject(1, conn, &bytes);
    net.run_for(Duration::from_secs(1));
    let refused = failures(&net, 1);
    assert_eq!(refused.iter().filter(|r| r.contains("refused name")).count(), names.len() + sent);
    assert!(refused.iter().all(|r| r.len() < 400), "names in reasons are shortened");
    assert_eq!(
        net.slots[1].fs.paths().count(),
        0,
        "nothing written: {:?}",
        net.slots[1].fs.paths().collect::<Vec<_>>()
    );
    assert!(received(&net, 1).is_empty());
    assert_eq!(failures(&net, 0).len(), sent, "the sender hears the refusal");
}

#[test]
fn a_killed_receiver_resumes_from_its_synced_offset() {
    let mut net = net(1);
    let data = content(1 << 20, 11);
    net.node(0).transfer().send(TOPIC, "big.bin", TransferSource::Bytes(data.clone()), opts()).unwrap();
    run_until_progress(&mut net, 1, 400 << 10);
    let synced = progress(&net, 1);
    net.crash(1);
    assert!(net.slots[1].fs.read(Path::new("/in/big.bin.part")).is_some_and(|p| p.len() as u64 >= synced));
    net.restart(1, receiver(77, 1, "r1"));
    net.run_for(Duration::from_secs(2));
    assert_eq!(file(&net.slots[1].fs, "big.bin"), Some(&data[..]));
    let starts: Vec<u64> = transfer_events(&net, 1)
        .iter()
        .filter_map(|e| match e {
            TransferEvent::Started { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(starts[1] >= synced, "resumed at {} below the synced {synced}", starts[1]);
    let s = net.node(0).stats().transfer;
    assert!(s.bytes_resent <= WINDOW_BYTES, "re-sent {} > one window", s.bytes_resent);
    assert_eq!(s.prefix_mismatches, 0);
    eprintln!("receiver crash: synced {synced}, resumed at {}, re-sent {} bytes", starts[1], s.bytes_resent);
}

/// Sim seeds 2302 and 3806 (`--faults 40 --min-nodes 2 --max-nodes 12`):
/// the receiver renamed the file into place, its `Complete` was lost with
/// a crash, and the restarted receiver took the re-offer for a new file and
/// had all of it sent again (then failed: the name exists). It now finds the
/// same content under the final name and answers complete: nothing re-sent.
#[test]
fn a_receiver_restarted_after_its_rename_answers_complete_without_bytes() {
    let mut net = net(1);
    let data = content(300_000, 13);
    net.node(0).transfer().send(TOPIC, "done.bin", TransferSource::Bytes(data.clone()), opts()).unwrap();
    // The sender hears nothing more once every byte is on its way.
    for _ in 0..100_000 {
        if net.node(0).stats().transfer.bytes_sent == data.len() as u64 {
            break;
        }
        if !net.step() {
            net.run_for(Duration::from_millis(1));
        }
    }
    net.slots[0].frozen = true;
    for _ in 0..1000 {
        if !received(&net, 1).is_empty() {
            break;
        }
        net.step();
    }
    assert_eq!(received(&net, 1).len(), 1, "received before the crash");
    net.crash(1);
    net.slots[0].frozen = false;
    assert_eq!(delivered(&net, 0), 0, "the crash took the completion with it");
    let sent = net.node(0).stats().transfer.bytes_sent;
    net.restart(1, receiver(78, 1, "r1"));
    net.run_for(Duration::from_secs(2));
    assert_eq!(delivered(&net, 0), 1);
    assert!(failures(&net, 0).is_empty() && failures(&net, 1).is_empty(), "{:?}", failures(&net, 1));
    let s = net.node(0).stats().transfer;
    assert_eq!((s.bytes_sent, s.bytes_resent), (sent, 0), "no byte sent again");
    assert_eq!(net.node(1).stats().transfer.already_received, 1);
    assert_eq!(file(&net.slots[1].fs, "done.bin"), Some(&data[..]));
    assert!(leftovers(&net.slots[1].fs).is_empty(), "{:?}", leftovers(&net.slots[1].fs));
    assert_eq!(received(&net, 1).len(), 2, "the new process hears of the file it holds");
}

#[test]
fn a_different_file_under_the_final_name_fails_before_any_byte() {
    let mut net = net(1);
    net.slots[1].fs.put("/in/keep.bin", &content(1000, 1));
    let data = content(200_000, 2);
    net.node(0).transfer().send(TOPIC, "keep.bin", TransferSource::Bytes(data), opts()).unwrap();
    net.run_for(Duration::from_millis(500));
    assert!(failures(&net, 0)[0].contains("already exists"), "{:?}", failures(&net, 0));
    assert_eq!(net.node(0).stats().transfer.bytes_sent, 0);
    assert_eq!(file(&net.slots[1].fs, "keep.bin"), Some(&content(1000, 1)[..]));
    assert!(leftovers(&net.slots[1].fs).is_empty(), "{:?}", leftovers(&net.slots[1].fs));
}

#[test]
fn a_restarted_sender_offers_again_and_resumes() {
    let mut net = net(1);
    let data = content(1 << 20, 5);
    net.slots[0].fs.put("/out/f.bin", &data);
    let src = || TransferSource::Path {
        path: "/out/f.bin".into(),
        size: data.len() as u64,
        hash: *blake3::hash(&data).as_bytes(),
    };
    net.node(0).transfer().send(TOPIC, "f.bin", src(), opts()).unwrap();
    run_until_progress(&mut net, 1, 300 << 10);
    net.crash(0);
    net.run_for(Duration::from_millis(100));
    let had = progress(&net, 1);
    // A new process (new id): the application sends the same file again.
    let mut n = Node::with_id(cfg(9), NodeId::from_u128(200), "sender2").unwrap();
    n.connect(Net::addr(1)).unwrap();
    net.restart(0, n);
    net.run_for(Duration::from_millis(300));
    net.node(0).transfer().send(TOPIC, "f.bin", src(), opts()).unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(file(&net.slots[1].fs, "f.bin"), Some(&data[..]));
    let s = net.node(0).stats().transfer;
    assert!(s.bytes_sent <= data.len() as u64 - had, "sent {} though the receiver had {had}", s.bytes_sent);
    assert_eq!(delivered(&net, 0), 1);
    eprintln!("sender restart: receiver had {had}, new sender sent {}", s.bytes_sent);
}

#[test]
fn a_flipped_byte_in_a_partial_file_is_detected() {
    let mut net = net(1);
    let data = content(1 << 20, 13);
    net.node(0).transfer().send(TOPIC, "x.bin", TransferSource::Bytes(data.clone()), opts()).unwrap();
    run_until_progress(&mut net, 1, 300 << 10);
    net.crash(1);
    assert!(net.slots[1].fs.flip_byte(Path::new("/in/x.bin.part"), 1000));
    net.restart(1, receiver(78, 1, "r1"));
    net.run_for(Duration::from_secs(2));
    assert_eq!(file(&net.slots[1].fs, "x.bin"), Some(&data[..]), "the corrupt prefix was not kept");
    assert_eq!(net.node(0).stats().transfer.prefix_mismatches, 1);
}

#[test]
fn content_that_does_not_match_its_hash_never_gets_the_final_name() {
    let mut net = net(1);
    let data = content(200_000, 17);
    let mut other = data.to_vec();
    other[150_000] ^= 1;
    // The file changes after it was hashed.
    net.slots[0].fs.put("/out/c.bin", &other);
    let src = TransferSource::Path {
        path: "/out/c.bin".into(),
        size: data.len() as u64,
        hash: *blake3::hash(&data).as_bytes(),
    };
    net.node(0).transfer().send(TOPIC, "c.bin", src, opts()).unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(file(&net.slots[1].fs, "c.bin"), None);
    let f = failures(&net, 1);
    assert!(f.len() == 1 && f[0].contains("does not match"), "{f:?}");
    assert_eq!(net.node(1).stats().transfer.hash_mismatches, 2, "one restart, then failed");
    assert!(failures(&net, 0)[0].contains("does not match"));
    assert!(leftovers(&net.slots[1].fs).is_empty());
}

#[test]
fn a_full_disk_fails_the_transfer_and_the_node_keeps_serving() {
    let mut net = net(1);
    net.slots[1].fs.capacity = Some(100_000);
    let big = content(500_000, 19);
    net.node(0).transfer().send(TOPIC, "big.bin", TransferSource::Bytes(big), opts()).unwrap();
    net.run_for(Duration::from_secs(1));
    let f = failures(&net, 1);
    assert!(f.len() == 1 && f[0].contains("NoSpace"), "{f:?}");
    assert!(failures(&net, 0)[0].contains("receiver aborted"), "{:?}", failures(&net, 0));
    // Still serving: a message and a small file get through.
    net.node(0).pubsub().publish(TOPIC, Bytes::from_static(b"hi"), estafeta_core::SendMode::All).unwrap();
    net.slots[1].fs = MemFs::default();
    let small = content(1000, 1);
    net.node(0).transfer().send(TOPIC, "small.bin", TransferSource::Bytes(small.clone()), opts()).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.messages(1).len(), 1);
    assert_eq!(file(&net.slots[1].fs, "small.bin"), Some(&small[..]));
}

#[test]
fn a_slow_receiver_does_not_hold_back_a_fast_one_and_stays_within_its_window() {
    let mut net = net(2);
    net.slots[2].disk_paused = true;
    let data = content(1 << 20, 23);
    net.node(0).transfer().send(TOPIC, "m.bin", TransferSource::Bytes(data.clone()), opts()).unwrap();
    net.run_for(Duration::from_millis(500));
    assert_eq!(file(&net.slots[1].fs, "m.bin"), Some(&data[..]), "the fast receiver finished");
    let (held, window) = net.node(2).transfer_ref().max_held();
    assert!(held <= window && window == WINDOW_BYTES, "held {held} of {window}");
    let (held, window) = net.node(0).transfer_ref().max_held();
    assert!(held <= window, "sender holds {held} of {window}");
    net.slots[2].disk_paused = false;
    net.run_for(Duration::from_secs(1));
    assert_eq!(file(&net.slots[2].fs, "m.bin"), Some(&data[..]));
}

#[test]
fn a_hundred_small_files_in_parallel() {
    let mut net = net(1);
    let files: Vec<Bytes> = (0..100).map(|i| content(1000 + i * 37, i as u64)).collect();
    for (i, f) in files.iter().enumerate() {
        let src = TransferSource::Bytes(f.clone());
        net.node(0).transfer().send(TOPIC, &format!("f{i}.txt"), src, opts()).unwrap();
    }
    net.run_for(Duration::from_secs(1));
    for (i, f) in files.iter().enumerate() {
        assert_eq!(file(&net.slots[1].fs, &format!("f{i}.txt")), Some(&f[..]), "file {i}");
    }
    assert_eq!(delivered(&net, 0), 100);
}

#[test]
fn offers_on_topics_not_received_are_refused() {
    let mut net = net(1);
    net.node(1).pubsub().subscribe("chat").unwrap();
    net.run_for(Duration::from_millis(200));
    let src = TransferSource::Bytes(Bytes::from_static(b"x"));
    net.node(0).transfer().send("chat", "x", src, opts()).unwrap();
    net.run_for(Duration::from_millis(500));
    assert!(failures(&net, 0)[0].contains("not receiving"), "{:?}", failures(&net, 0));
    assert_eq!(net.slots[1].fs.paths().count(), 0);
}

#[test]
fn an_existing_file_is_never_replaced() {
    let mut net = net(1);
    net.slots[1].fs.put("/in/keep.txt", b"mine");
    let src = TransferSource::Bytes(Bytes::from_static(b"theirs"));
    net.node(0).transfer().send(TOPIC, "keep.txt", src, opts()).unwrap();
    net.run_for(Duration::from_millis(500));
    assert_eq!(file(&net.slots[1].fs, "keep.txt"), Some(&b"mine"[..]));
    assert!(failures(&net, 1)[0].contains("already exists"));
}

#[test]
fn a_transfer_fails_when_its_peer_stays_away() {
    let mut net = net(1);
    let data = content(1 << 20, 29);
    net.node(0).transfer().send(TOPIC, "gone.bin", TransferSource::Bytes(data), opts()).unwrap();
    run_until_progress(&mut net, 1, 200 << 10);
    net.crash(1);
    net.run_for(Duration::from_secs(5));
    let f = failures(&net, 0);
    assert!(f.len() == 1 && f[0].contains("unreachable"), "{f:?}");
    assert_eq!(net.node(0).transfer_ref().outgoing(), 0);
}

#[test]
fn the_application_may_accept_under_another_name_or_reject() {
    let mut nodes = vec![Node::with_id(cfg(100), NodeId::from_u128(100), "sender").unwrap()];
    let mut c = cfg(1);
    c.transfer.auto_accept = false;
    let mut r = Node::with_id(c, NodeId::from_u128(1), "r1").unwrap();
    r.pubsub().subscribe(TOPIC).unwrap();
    r.transfer().receive(TOPIC, DIR).unwrap();
    nodes.push(r);
    let mut net = Net::new(nodes);
    net.node(0).connect(Net::addr(1)).unwrap();
    net.run_for(Duration::from_millis(300));
    let keep = content(5000, 1);
    let a = net.node(0).transfer().send(TOPIC, "a.bin", TransferSource::Bytes(keep.clone()), opts()).unwrap();
    let b = net.node(0).transfer().send(TOPIC, "b.bin", TransferSource::Bytes(content(10, 2)), opts()).unwrap();
    net.run_for(Duration::from_millis(200));
    let offered: Vec<(u64, bool)> = transfer_events(&net, 1)
        .iter()
        .filter_map(|e| match e {
            TransferEvent::Offered(o) => Some((o.id, o.needs_answer)),
            _ => None,
        })
        .collect();
    assert_eq!(offered.len(), 2);
    assert!(offered.iter().all(|(_, ask)| *ask));
    assert!(net.slots[1].fs.paths().next().is_none(), "nothing written before the answer");
    let sender = NodeId::from_u128(100);
    assert!(net.node(1).transfer().accept(sender, a, Some("../evil")).is_err(), "a rename is sanitised too");
    net.node(1).transfer().accept(sender, a, Some("kept.bin")).unwrap();
    net.node(1).transfer().reject(sender, b, "not wanted").unwrap();
    net.run_for(Duration::from_millis(500));
    assert_eq!(file(&net.slots[1].fs, "kept.bin"), Some(&keep[..]));
    assert_eq!(file(&net.slots[1].fs, "a.bin"), None);
    assert_eq!(delivered(&net, 0), 1);
    let f = failures(&net, 0);
    assert!(f.len() == 1 && f[0].contains("not wanted"), "{f:?}");
}
