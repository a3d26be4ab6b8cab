//! Defects the simulator found in estafeta-core, kept as regression tests.
//!
//! The seeded tests replay `Scenario::random(seed, &Options::default())`
//! exactly as the sweep does (`SIM_SEED=<seed> cargo test -p estafeta-sim
//! --test sweep -- --nocapture` shows the same run). If the scenario
//! generator changes, the seeds stop pointing at these paths; the hand-built
//! tests below do not depend on it.

use estafeta_core::SendMode;
use estafeta_sim::scenario::{Options, Scenario};
use estafeta_sim::{Sim, SimConfig};

fn passes(seed: u64) {
    if let Err(e) = Scenario::random(seed, &Options::default()).run() {
        panic!("seed {seed}:\n{e}");
    }
}

/// Replays heavy sweep seed `seed` (`Options::sweep()`, as CI's sweep draws
/// it; `cargo run -p estafeta-sim --release -- run --seed <seed> --heavy`).
fn heavy(seed: u64) {
    if let Err(e) = Scenario::random(seed, &Options::sweep()).run() {
        panic!("seed {seed} (cargo run -p estafeta-sim --release -- run --seed {seed} --heavy):\n{e}");
    }
}

// A second connection to a peer (a simultaneous dial, or a new dial while a
// stale connection lingers) was kept as a standby and promoted in silence
// when the primary died (core/src/node/input.rs `detach_from_peer`). Three
// defects followed:

/// 1. The subscriber index switched to the standby's topics without any
///    Subscribed/Unsubscribed event: the application's picture diverged from
///    the node (seed 8: half mesh, a stale connection; seed 9: full mesh).
#[test]
fn seed_8_and_9_events_describe_the_subscriber_index() {
    passes(8);
    passes(9);
}

/// 2. Messages in flight on the lost primary vanished while later ones were
///    delivered, with no PeerDown on either side (a silent gap), seed 36; or
///    with no report at all, seed 119.
#[test]
fn seed_36_and_119_losses_are_reported() {
    passes(36);
    passes(119);
}

/// 3. The publisher moved to the standby while the receiver still held older
///    bytes on the old primary, or an old connection finished its handshake
///    late and joined a newer session: messages from one publisher arrived out
///    of order (seed 50; seed 4991 once promotion was fixed).
#[test]
fn seed_50_and_4991_keep_per_publisher_order() {
    passes(50);
    passes(4991);
}

/// 4. Even with sessions ending on any loss, a peer that started a new
///    session of its own (its old connection timed out on its side first) was
///    joined to our old session as a standby: its new messages were delivered,
///    then the old connection's retransmitted older ones (10 nodes: seeds
///    2375, 3554, 3555). A peer's messages on a second connection now end
///    our session if that connection is newer, or are dropped (counted) if it
///    is older.
#[test]
fn seed_2375_3554_3555_ten_nodes_keep_per_publisher_order() {
    let opts = Options { min_nodes: 10, max_nodes: 10, ..Options::default() };
    for seed in [2375, 3554, 3555] {
        if let Err(e) = Scenario::random(seed, &opts).run() {
            panic!("seed {seed} (cargo run -p estafeta-sim --release -- run --seed {seed} --nodes 10):\n{e}");
        }
    }
}

/// The same defect, built by hand: two nodes dial each other (two
/// connections), and one connection is reset while messages are in flight.
/// Every lost message must be reported by a PeerDown, and the indexes and
/// events must agree, whichever connection was the primary.
#[test]
fn losing_one_of_two_connections_ends_the_session() {
    for nth in 0..2 {
        let mut sim = Sim::new(SimConfig::uniform(7, 2, 1));
        sim.subscribe(1, 0);
        sim.connect(0, 1);
        sim.connect(1, 0);
        sim.run_for(300_000).unwrap();
        assert_eq!(sim.open_connections(0, 1), 2, "a simultaneous dial leaves two connections");
        for _ in 0..20 {
            sim.publish(0, 0, 200, SendMode::All).unwrap();
        }
        sim.run_for(1_000).unwrap();
        assert!(sim.reset_connection(0, 1, nth));
        sim.run_for(2_000_000).unwrap();
        assert!(sim.connected(0, 1), "reconnected");
        let later = sim.publish(0, 0, 200, SendMode::All).unwrap();
        sim.run_for(100_000).unwrap();
        assert_eq!(sim.delivered_to(later.id), vec![1]);
        sim.account();
        sim.check().unwrap_or_else(|e| panic!("reset of connection {nth}:\n{e}"));
    }
}

// Issue "Silent loss under heavy faults": at 40 faults per run the checker
// reported "unexplained loss ... neither side ever reported PeerDown" (seeds
// 700286, 700487, 700724, 700749, 701362 with 5 to 10 nodes; 900364, 901087,
// 901260 with 2 to 12). Every case, read from its trace, was the same: the
// publisher's process was paused when its connection was reset (or reset
// back after the receiver closed it), and was crashed before it resumed.
// Its node never learnt of the reset, so it could report nothing; the
// process's crash is what lost the messages. The checker accepted a crash
// only when the process's end of the connection died *at* the crash, so a
// reset that arrived while the process was paused made the loss look
// silent. The core was right; the checker now accepts a crash while the
// node still held the connection (open, or reset and not yet reported).

/// The eight seeds, each with the options it failed under.
#[test]
fn heavy_fault_seeds_account_for_crashes_of_paused_processes() {
    let five_to_ten = Options::default().with_faults(40);
    let two_to_twelve = Options { min_nodes: 2, max_nodes: 12, ..Options::default() }.with_faults(40);
    let cases = [
        (700286, &five_to_ten, ""),
        (700487, &five_to_ten, ""),
        (700724, &five_to_ten, ""),
        (700749, &five_to_ten, ""),
        (701362, &five_to_ten, ""),
        (900364, &two_to_twelve, " --min-nodes 2 --max-nodes 12"),
        (901087, &two_to_twelve, " --min-nodes 2 --max-nodes 12"),
        (901260, &two_to_twelve, " --min-nodes 2 --max-nodes 12"),
    ];
    for (seed, opts, flags) in cases {
        if let Err(e) = Scenario::random(seed, opts).run() {
            panic!("seed {seed} (cargo run -p estafeta-sim --release -- run --seed {seed} --faults 40{flags}):\n{e}");
        }
    }
}

/// The same case built by hand: both ends are paused with a message in
/// flight, the connection is reset, and both processes crash before they
/// resume. The message is lost in the crash; nothing could report it.
#[test]
fn a_reset_unseen_by_paused_processes_that_then_crash_is_a_crash_loss() {
    let mut sim = Sim::new(SimConfig::uniform(11, 2, 1));
    sim.subscribe(1, 0);
    sim.connect(0, 1);
    sim.run_for(300_000).unwrap();
    assert!(sim.connected(0, 1));
    sim.pause(1);
    let m = sim.publish(0, 0, 200, SendMode::All).unwrap();
    sim.pause(0);
    sim.reset(0, 1);
    sim.run_for(10_000).unwrap();
    sim.crash(0);
    sim.crash(1);
    sim.heal();
    sim.run_for(2_000_000).unwrap();
    assert!(sim.delivered_to(m.id).is_empty(), "the message died with the connection");
    let acc = sim.account();
    assert_eq!(acc.lost_in_crash, 1, "{acc:?}");
    sim.check().unwrap_or_else(|e| panic!("{e}"));
}

/// Found while moving pub/sub onto its own plane (heavy sweep, seed 1651):
/// a subscription change made while a connection's Hello had left but the
/// peer's had not arrived yet was held (the peer's planes were not known) and
/// never sent: the connection was not woken when the peer's Hello came. The
/// pending change made that standby connection look busy, so it never sent a
/// heartbeat, and the peer's liveness timeout ended the session after healing.
#[test]
fn seed_1651_announcements_held_for_the_peers_hello_leave_once_it_arrives() {
    heavy(1651);
}

/// Found by the heavy sweep (seed 381): a receiver whose application still
/// held a window's worth of bytes from the peer's previous session granted
/// the new session messages but no bytes (the debt took the whole byte
/// window), and consuming those old messages paid the debt without deciding
/// a new grant: the sender waited for byte credit forever. Paying a debt now
/// re-decides the grant, and debts are paid by whole messages.
#[test]
fn seed_381_paying_a_debt_of_an_ended_session_grants_again() {
    heavy(381);
}

/// Heavy seed 1268 (7 nodes, a group of four): before the heal a slow link
/// held member n3's renewals behind a backlog of other bytes, its lease
/// lapsed, and it reported nothing until after the heal. Liveness counts
/// from the heal: the group must settle within settle + two renewals of it.
#[test]
fn a_group_settles_after_a_heal_that_drained_a_backlog() {
    heavy(1268);
}

/// Forty faults a run, 2 to 12 nodes, sessions in two runs of three
/// (`estafeta-sim sweep --faults 40 --min-nodes 2 --max-nodes 12 --sessions
/// 667`); seed `s` replays with `estafeta-sim run --seed s` and those options.
fn forty_faults_with_sessions(seed: u64) {
    forty_faults(seed, 667);
}

/// Forty faults a run, 2 to 12 nodes, sessions in `per_mille` runs of a
/// thousand.
fn forty_faults(seed: u64, per_mille: u64) {
    let mut o = Options::default().with_faults(40);
    o.min_nodes = 2;
    o.max_nodes = 12;
    o.resume_per_mille = per_mille;
    if let Err(e) = Scenario::random(seed, &o).run() {
        let flags = "--faults 40 --min-nodes 2 --max-nodes 12";
        panic!("seed {seed} (estafeta-sim run --seed {seed} {flags} --sessions {per_mille}):\n{e}");
    }
}

/// The two ends joined different sessions on a resume (a protocol error
/// or a silent gap followed). Seeds 1820 and 1879: a paused node took, for
/// its live session, the id of a connection its peer had opened for a new
/// session of its own (the peer had ended the old one); the rule that
/// settles the id of a simultaneous dial now needs both sockets opened
/// within one handshake timeout and no message carried yet.
#[test]
fn seed_1820_and_1879_a_new_session_beside_a_live_one_keeps_its_own_id() {
    forty_faults_with_sessions(1820);
    forty_faults_with_sessions(1879);
}

/// Seed 250: a dialer whose address now reaches a restarted peer (a new
/// node id) claimed the session it held with the old process; the new
/// process read the claim as "no session held" and ended the suspended
/// session the dialer did hold, while the other connection resumed it.
/// Such a handshake is now inconclusive (the connection closes, the session
/// stays suspended). Seed 1207: a dialer claimed nothing because its target
/// still named the old process; it now falls back to the peer that
/// announced it listens there and holds a session.
#[test]
fn seed_250_and_1207_a_claim_for_another_process_does_not_end_the_session() {
    forty_faults_with_sessions(250);
    forty_faults_with_sessions(1207);
}

/// Seed 279: after a resume, an ack for messages the peer had taken on the
/// old connection arrived while the re-sends were still being written; the
/// acked messages were skipped, and the peer, counting sequence numbers
/// implicitly, took the next ones for duplicates and dropped them (a silent
/// gap). A new Resume frame now says where the next message stands.
#[test]
fn seed_279_an_ack_during_the_resend_is_followed_by_a_resume_frame() {
    forty_faults_with_sessions(279);
}

/// Heavy seed 1685: a member restarted (same id) while its coordinator
/// dialed it; the coordinator's connection came up first, and the member's
/// own dial then closed as a duplicate. The membership was bound only to the
/// dial target's connection, so it never joined and the member reported
/// nothing after the heal. A membership now joins on the session's
/// connection when a target known to reach its coordinator lost to it.
#[test]
fn seed_1685_a_member_whose_dial_lost_to_the_coordinators_joins_anyway() {
    heavy(1685);
}

/// Heavy seed 588 (secure): a node sealed more than one record's worth in
/// one pull, which goes out as records of equal lengths, but the simulator's
/// plaintext tap recorded it cut at the largest record, and the wire tap
/// then failed on a record "sealed from" another length. The tap now splits
/// as the sealing does.
#[test]
fn seed_588_the_plaintext_tap_splits_records_as_they_are_sealed() {
    heavy(588);
}

/// Seeds 1779 and 5288 (`--sessions 1000`), once stream frames took
/// sequence numbers: a paused node read its peer's Hello on a new
/// connection, claiming a session the node had never seen start, and
/// answered with a new session; then it read the Hello and the first frames
/// of the older connection the peer had begun the claimed session on,
/// joined it to the new session as if both ends had dialed at once, and
/// counted its frames there. The two ends' sequence numbers then differed:
/// "sequence number 1 is past the last one sent". A connection whose session
/// id is the one the peer claimed and this node did not hold is now closed
/// as stale.
///
/// Seed 5288 again, once acks no longer followed every read: the peer let
/// the session expire while this node was cut off and dialed again half a
/// second after the first handshake; this node took the new connection's
/// session id as if both ends had dialed at once, then read three frames
/// of the old session on the old connection and counted them in the new
/// one. Its next resume claimed them: "sequence number 3 is past the last
/// one sent (0 is next)". A second connection now takes the session's id
/// only while the first handshake is fresh (`settle_session_id`).
#[test]
fn seed_1779_and_5288_a_connection_of_a_session_never_held_is_stale() {
    forty_faults(1779, 1000);
    forty_faults(5288, 1000);
}

/// Sweep seed 677 (`Options::sweep()`): a dial that crossed a resume
/// claimed nothing (while a rule in the making left every dial opened before
/// the session's current connection unclaimed); the peer read it first, ended
/// the suspended session and began a new one, while the other connection
/// resumed it: "resume from 3, but only 0 messages were taken". Only a dial
/// that crossed the session's first handshake, never suspended, now claims
/// nothing (`core/tests/sessions.rs`
/// `a_simultaneous_dial_read_out_of_order_keeps_the_session`).
#[test]
fn seed_677_a_dial_that_crossed_a_resume_claims_the_session() {
    heavy(677);
}

/// Seed 45 (`estafeta-sim run --seed 45 --secure 1000 --sessions 1000`): a
/// 47 KB message in one record took longer than the liveness timeout to
/// cross a slow link; on a secure connection only whole records counted as
/// hearing the peer, so the receiver dropped the connection, the session
/// resumed and re-sent the record, and so on past the settle bound. Part of
/// a record now counts once a kilobyte of it has come.
#[test]
fn seed_45_a_long_record_on_a_slow_link_keeps_the_connection() {
    let o = Options { secure_per_mille: 1000, resume_per_mille: 1000, ..Options::default() };
    if let Err(e) = Scenario::random(45, &o).run() {
        panic!("seed 45 (estafeta-sim run --seed 45 --secure 1000 --sessions 1000):\n{e}");
    }
}

/// Sweep seed 7904 (`Options::sweep()`, a checker defect): n1 crashed with
/// latest-value gaps to n3 unreported (lost with the crash) and restarted
/// with the same id; the checker matched n3's reports of the new process's
/// markers to the old process's gaps first, and then called the new
/// process's gaps unreported. It now takes the latest gap over every
/// process that ran with the sender's id.
#[test]
fn seed_7904_gaps_of_a_restarted_sender_match_its_own_markers() {
    heavy(7904);
}

/// Sweep seed 18161 (`Options::sweep()`, a checker bound): once part of a
/// long record counted as hearing the peer, a slow reader's connection to
/// its coordinator lived through the slow phase instead of timing out, and
/// kept a second of backlog after the heal; the Joins and answers waited
/// behind it and the group settled 1.3 s after the heal, past the strict
/// bound. The bound now also counts from the end of any backlog between the
/// coordinator and a member.
#[test]
fn seed_18161_a_group_behind_a_backlog_settles_once_it_drains() {
    heavy(18161);
}
