//! The per-peer send log alone, against a reference model: random admit,
//! pull, unbounded push (a stream frame), ack, disconnect, resume and
//! expire sequences. The log stays within
//! its bound, holds exactly the unacknowledged sequence numbers, re-sends
//! exactly the tail after the resume point in order, and reports every
//! message once: acknowledged, or lost with its range.

use estafeta_core::resume::{LogError, SendLog};
use proptest::prelude::*;
use std::collections::{BTreeSet, VecDeque};

#[derive(Clone, Debug)]
enum Op {
    Admit(usize),
    Pull,
    PushUnbounded,
    Ack(u64),
    Disconnect,
    Resume(u64),
    Resend,
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..200).prop_map(Op::Admit),
        4 => Just(Op::Pull),
        2 => Just(Op::PushUnbounded),
        2 => (0u64..8).prop_map(Op::Ack),
        1 => Just(Op::Disconnect),
        1 => (0u64..8).prop_map(Op::Resume),
        2 => Just(Op::Resend),
        1 => Just(Op::Expire),
    ]
}

/// The model: unsent (id, cost) in admission order; unacked (seq, id,
/// cost, `None` outside the bound); where re-sending stands.
#[derive(Default)]
struct Model {
    unsent: VecDeque<(u64, usize)>,
    unacked: VecDeque<(u64, u64, Option<usize>)>,
    next_seq: u64,
    resend: Option<usize>,
    next_id: u64,
    done: BTreeSet<u64>,
}

const MAX_FRAMES: usize = 6;
const MAX_BYTES: usize = 600;

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut log: SendLog<u64> = SendLog::new(MAX_FRAMES, MAX_BYTES);
    let mut m = Model::default();
    for op in ops {
        let held_frames = m.unsent.len() + m.unacked.iter().filter(|x| x.2.is_some()).count();
        let held_bytes: usize =
            m.unsent.iter().map(|x| x.1).sum::<usize>() + m.unacked.iter().filter_map(|x| x.2).sum::<usize>();
        match op {
            Op::Admit(cost) => {
                let fits = held_frames < MAX_FRAMES && (held_bytes == 0 || held_bytes + cost <= MAX_BYTES);
                prop_assert_eq!(log.admit(cost), fits);
                if fits {
                    m.unsent.push_back((m.next_id, cost));
                    m.next_id += 1;
                }
            }
            Op::Pull => {
                // New messages go only once the re-sends are done.
                let pending = m.resend.map_or(0, |i| m.unacked.len().saturating_sub(i));
                prop_assert_eq!(log.pending_resend(), pending);
                if pending == 0 {
                    if let Some((id, cost)) = m.unsent.pop_front() {
                        let seq = log.pull(id, cost);
                        prop_assert_eq!(seq, m.next_seq);
                        m.unacked.push_back((seq, id, Some(cost)));
                        m.next_seq += 1;
                        m.resend = None;
                    }
                }
            }
            Op::PushUnbounded => {
                // Bounded elsewhere (by stream credit): never refused, but
                // also only once the re-sends are done.
                if log.pending_resend() == 0 {
                    let id = m.next_id;
                    m.next_id += 1;
                    let seq = log.push_unbounded(id, 50);
                    prop_assert_eq!(seq, m.next_seq);
                    m.unacked.push_back((seq, id, None));
                    m.next_seq += 1;
                    m.resend = None;
                }
            }
            Op::Ack(d) => {
                let base = m.unacked.front().map_or(m.next_seq, |x| x.0);
                let next = base + d;
                let mut left = Vec::new();
                let r = log.ack(next, |id, _| left.push(id));
                if next > m.next_seq {
                    prop_assert_eq!(r, Err(LogError::Ahead { got: next, next: m.next_seq }));
                } else {
                    let mut want = Vec::new();
                    while m.unacked.front().is_some_and(|x| x.0 < next) {
                        want.push(m.unacked.pop_front().unwrap().1);
                        m.resend = m.resend.map(|r| r.saturating_sub(1));
                    }
                    prop_assert_eq!(r, Ok(want.len()));
                    prop_assert_eq!(&left, &want);
                    for id in want {
                        prop_assert!(m.done.insert(id), "message {} left twice", id);
                    }
                }
            }
            Op::Disconnect => {
                log.disconnect();
                m.resend = None;
            }
            Op::Resume(d) => {
                let base = m.unacked.front().map_or(m.next_seq, |x| x.0);
                let from = base + d;
                let mut left = Vec::new();
                let r = log.resume(from, |id, _| left.push(id));
                if from > m.next_seq {
                    prop_assert!(r.is_err());
                } else {
                    while m.unacked.front().is_some_and(|x| x.0 < from) {
                        let id = m.unacked.pop_front().unwrap().1;
                        prop_assert!(m.done.insert(id));
                    }
                    prop_assert_eq!(r, Ok(m.unacked.len()));
                    m.resend = Some(0);
                }
            }
            Op::Resend => {
                let got = log.next_resend().map(|(s, id)| (s, *id));
                let want = match m.resend {
                    Some(i) if i < m.unacked.len() => {
                        m.resend = Some(i + 1);
                        Some((m.unacked[i].0, m.unacked[i].1))
                    }
                    _ => None,
                };
                prop_assert_eq!(got, want, "re-sends go in sequence order from the resume point");
            }
            Op::Expire => {
                let mut lost = Vec::new();
                let (range, unsent) = log.expire(|id| lost.push(id));
                let base = m.unacked.front().map_or(m.next_seq, |x| x.0);
                prop_assert_eq!(range.clone(), base..m.next_seq, "the range is exactly the unacknowledged seqs");
                prop_assert_eq!(unsent, m.unsent.len());
                let want: Vec<u64> = m.unacked.drain(..).map(|x| x.1).collect();
                prop_assert_eq!(&lost, &want);
                for id in lost.into_iter().chain(m.unsent.drain(..).map(|x| x.0)) {
                    prop_assert!(m.done.insert(id), "message {} reported twice", id);
                }
                m.resend = None;
            }
        }
        // The log holds exactly what the model holds, within its bound.
        prop_assert_eq!(log.unsent(), m.unsent.len());
        prop_assert_eq!(log.unacked(), m.unacked.len());
        prop_assert_eq!(log.next_seq(), m.next_seq);
        prop_assert_eq!(log.acked(), m.unacked.front().map_or(m.next_seq, |x| x.0));
        let bytes: usize =
            m.unsent.iter().map(|x| x.1).sum::<usize>() + m.unacked.iter().filter_map(|x| x.2).sum::<usize>();
        prop_assert_eq!(log.bytes(), bytes);
        let frames = m.unsent.len() + m.unacked.iter().filter(|x| x.2.is_some()).count();
        prop_assert_eq!(log.frames(), frames, "entries outside the bound do not count toward it");
        prop_assert!(log.frames() <= MAX_FRAMES);
        prop_assert_eq!(log.is_empty(), m.unsent.is_empty() && m.unacked.is_empty());
        prop_assert_eq!(log.outside_bytes(), 50 * m.unacked.iter().filter(|x| x.2.is_none()).count());
    }
    // Every admitted message is held, or left exactly once.
    let held: BTreeSet<u64> = m.unsent.iter().map(|x| x.0).chain(m.unacked.iter().map(|x| x.1)).collect();
    prop_assert_eq!(held.len() + m.done.len(), m.next_id as usize);
    prop_assert!(held.is_disjoint(&m.done));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn the_send_log_matches_its_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}

#[test]
fn an_ack_that_frees_unbounded_bytes_wakes_the_writer_that_waits_for_them_once() {
    let mut log: SendLog<u64> = SendLog::new(MAX_FRAMES, MAX_BYTES);
    assert!(log.admit(10));
    assert_eq!(log.pull(0, 10), 0);
    assert_eq!(log.push_unbounded(1, 50), 1);
    assert_eq!(log.push_unbounded(2, 50), 2);
    log.wait_outside();
    // An ack of a bounded entry frees nothing outside the bound.
    log.ack(1, |_, _| {}).unwrap();
    assert!(!log.take_outside_wait());
    // One of the writer's entries is acknowledged: it is woken, once.
    log.ack(2, |_, _| {}).unwrap();
    assert_eq!(log.outside_bytes(), 50);
    assert!(log.take_outside_wait());
    assert!(!log.take_outside_wait());
    // Room freed while nobody waits wakes nobody later.
    log.ack(3, |_, _| {}).unwrap();
    assert!(!log.take_outside_wait());
}
