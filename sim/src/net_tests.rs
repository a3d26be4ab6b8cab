//! Unit tests of the TCP model: order under jitter, short writes, a window
//! that blocks the writer until the reader's credit comes back.

use crate::agenda::Agenda;
use crate::link::LinkParams;
use crate::net::{Net, NetEv, NetParams, SockState};
use crate::rng::Rng;
use estafeta_core::{ConnId, WriteOutcome};

fn pump(net: &mut Net, q: &mut Agenda<NetEv>, now: &mut u64, until: u64) {
    loop {
        for (at, ev) in std::mem::take(&mut net.out) {
            q.push(at, ev);
        }
        match q.peek_time() {
            Some(t) if t <= until => {
                let (t, ev) = q.pop().expect("peeked");
                *now = t;
                net.handle(t, ev);
            }
            _ => break,
        }
    }
    *now = until.max(*now);
}

#[test]
fn bytes_arrive_in_order_through_jitter_short_writes_and_a_full_window() {
    let params = NetParams { max_segment: 700, short_write_per_mille: 300, ..NetParams::default() };
    let window = 16 << 10;
    let mut net =
        Net::new(2, 9, params, |_, _| LinkParams { latency_us: 1_000, jitter_us: 900, bandwidth: 10 << 20, window });
    net.boot(0, 0);
    net.boot(1, 1);
    let (mut q, mut now) = (Agenda::new(), 0);
    net.dial(0, 0, ConnId(1), Some(1));
    pump(&mut net, &mut q, &mut now, 10_000);
    let tcp = match net.kernels[0].dial_done.pop_front() {
        Some((ConnId(1), Ok(tcp))) => tcp,
        other => panic!("dial: {other:?}"),
    };
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(7) % 251) as u8).collect();
    let (mut sent, mut got, mut rng) = (0, Vec::new(), Rng::new(3));
    let (mut short, mut blocked, mut fed) = (0, 0, Vec::new());
    while got.len() < data.len() {
        if sent < data.len() {
            match net.write(now, tcp, 0, &data[sent..], &mut |_, _| Vec::new()) {
                WriteOutcome::Wrote(n) => {
                    let room = data.len() - sent;
                    short += usize::from(n < room && n < window);
                    sent += n;
                }
                WriteOutcome::Blocked => blocked += 1,
                WriteOutcome::Failed(e) => panic!("{e}"),
            }
        }
        let until = now + rng.range(1, 3_000);
        pump(&mut net, &mut q, &mut now, until);
        while let SockState::Readable(n) = net.sock_state(tcp, 1) {
            let k = (rng.range(1, 5_000) as usize).min(n);
            got.extend_from_slice(&net.read(now, tcp, 1, k, &mut fed));
        }
    }
    assert_eq!(got, data, "every byte, in order");
    assert!(short > 0, "some writes took fewer bytes than they could");
    assert!(blocked > 0, "a full window blocked the writer");
}

#[test]
fn a_held_link_delivers_nothing_until_released() {
    let mut net = Net::new(2, 1, NetParams::default(), |_, _| LinkParams::default());
    net.boot(0, 0);
    net.boot(1, 1);
    let (mut q, mut now) = (Agenda::new(), 0);
    net.dial(0, 0, ConnId(1), Some(1));
    pump(&mut net, &mut q, &mut now, 10_000);
    let Some((_, Ok(tcp))) = net.kernels[0].dial_done.pop_front() else { panic!("dial failed") };
    net.set_held(now, 0, 1, true);
    let _ = net.write(now, tcp, 0, b"hello", &mut |_, _| Vec::new());
    pump(&mut net, &mut q, &mut now, 1_000_000);
    assert_eq!(net.sock_state(tcp, 1), SockState::Idle);
    net.set_held(now, 0, 1, false);
    pump(&mut net, &mut q, &mut now, 1_100_000);
    assert_eq!(net.sock_state(tcp, 1), SockState::Readable(5));
}
