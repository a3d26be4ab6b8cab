//! Files offered before their hash is known (`TransferSource::File`): the
//! sender hashes the bytes as it reads them for sending and sends the hash
//! in a `Digest`; receivers verify against it, and resumes still verify the
//! whole file.

mod common;

use common::files::*;
use common::Net;
use estafeta_core::transfer::TransferSource;
use estafeta_core::{blake3, Bytes, TransferEvent};
use std::path::Path;
use std::time::Duration;

/// Puts `data` at `/out/<name>` on the sender and sends it unhashed.
fn send_unhashed(net: &mut Net, name: &str, data: &Bytes) -> u64 {
    let path = format!("/out/{name}");
    net.slots[0].fs.put(&path, data);
    let src = TransferSource::File { path: path.into(), size: data.len() as u64 };
    net.node(0).transfer().send(TOPIC, name, src, opts()).unwrap()
}

#[test]
fn an_unhashed_file_reaches_every_subscriber_verified_against_its_digest() {
    let mut net = net(2);
    let data = content(700_000, 41);
    send_unhashed(&mut net, "u.bin", &data);
    net.run_for(Duration::from_secs(2));
    let hash = *blake3::hash(&data).as_bytes();
    for i in 1..=2 {
        assert_eq!(file(&net.slots[i].fs, "u.bin"), Some(&data[..]), "receiver {i}");
        let r = received(&net, i);
        assert!(r.len() == 1 && r[0].hash == hash, "the digest is reported: {r:?}");
        let offered =
            transfer_events(&net, i).iter().any(|e| matches!(e, TransferEvent::Offered(o) if o.hash == [0; 32]));
        assert!(offered, "the offer went out before the hash was known");
    }
    assert_eq!(delivered(&net, 0), 2);
    let s = net.node(0).stats().transfer;
    assert_eq!((s.bytes_sent, s.bytes_resent), (2 * data.len() as u64, 0));
    assert_eq!(net.node(0).transfer_ref().outgoing(), 0, "finished transfers are forgotten");
}

#[test]
fn an_unhashed_file_resumed_after_a_receiver_crash_is_verified_whole() {
    let mut net = net(1);
    let data = content(1 << 20, 43);
    send_unhashed(&mut net, "r.bin", &data);
    run_until_progress(&mut net, 1, 400 << 10);
    let synced = progress(&net, 1);
    net.crash(1);
    net.restart(1, receiver(79, 1, "r1"));
    net.run_for(Duration::from_secs(2));
    assert_eq!(file(&net.slots[1].fs, "r.bin"), Some(&data[..]));
    assert_eq!(received(&net, 1)[0].hash, *blake3::hash(&data).as_bytes());
    let s = net.node(0).stats().transfer;
    assert!(s.bytes_resent <= WINDOW_BYTES, "re-sent {} > one window", s.bytes_resent);
    assert_eq!(s.prefix_mismatches, 0);
    assert!(s.bytes_sent <= data.len() as u64 + WINDOW_BYTES, "sent {}", s.bytes_sent);
    assert!(leftovers(&net.slots[1].fs).is_empty(), "{:?}", leftovers(&net.slots[1].fs));
    eprintln!("unhashed, receiver crash: synced {synced}, re-sent {} bytes", s.bytes_resent);
}

#[test]
fn an_unhashed_file_whose_resumed_part_was_corrupted_is_sent_again_and_verified() {
    let mut net = net(1);
    let data = content(1 << 20, 47);
    send_unhashed(&mut net, "c.bin", &data);
    run_until_progress(&mut net, 1, 300 << 10);
    net.crash(1);
    assert!(net.slots[1].fs.flip_byte(Path::new("/in/c.bin.part"), 1000));
    net.restart(1, receiver(80, 1, "r1"));
    net.run_for(Duration::from_secs(2));
    assert_eq!(file(&net.slots[1].fs, "c.bin"), Some(&data[..]), "the corrupt prefix was not kept");
    assert_eq!(net.node(0).stats().transfer.prefix_mismatches, 1);
}

#[test]
fn a_receiver_restarted_after_its_rename_answers_complete_for_an_unhashed_offer() {
    let mut net = net(1);
    let data = content(300_000, 53);
    net.slots[1].fs.put("/in/done.bin", &data);
    send_unhashed(&mut net, "done.bin", &data);
    net.run_for(Duration::from_secs(1));
    assert!(failures(&net, 0).is_empty() && failures(&net, 1).is_empty(), "{:?}", failures(&net, 1));
    assert_eq!(delivered(&net, 0), 1);
    assert_eq!(net.node(0).stats().transfer.bytes_sent, 0, "no byte sent");
    assert_eq!(net.node(1).stats().transfer.already_received, 1);
    let r = received(&net, 1);
    assert!(r.len() == 1 && r[0].hash == *blake3::hash(&data).as_bytes(), "{r:?}");
    assert!(leftovers(&net.slots[1].fs).is_empty(), "{:?}", leftovers(&net.slots[1].fs));
}

#[test]
fn a_different_file_of_the_same_size_under_the_final_name_fails_before_any_byte() {
    let mut net = net(1);
    let mine = content(200_000, 1);
    net.slots[1].fs.put("/in/keep.bin", &mine);
    send_unhashed(&mut net, "keep.bin", &content(200_000, 2));
    net.run_for(Duration::from_millis(500));
    assert!(failures(&net, 0)[0].contains("already exists"), "{:?}", failures(&net, 0));
    assert_eq!(net.node(0).stats().transfer.bytes_sent, 0);
    assert_eq!(file(&net.slots[1].fs, "keep.bin"), Some(&mine[..]));
    assert!(leftovers(&net.slots[1].fs).is_empty(), "{:?}", leftovers(&net.slots[1].fs));
}
