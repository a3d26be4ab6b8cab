//! Streams in the simulator: the random scenarios open, answer and cancel
//! streams under every fault, and the streams observer checks one terminal
//! per side, matching codes, credit on the wire and that no stream is left
//! open after healing (see `check/streams.rs`).

use estafeta_core::CloseCode;
use estafeta_sim::scenario::{Options, Scenario};
use estafeta_sim::{Sim, SimConfig};

#[test]
fn random_scenarios_open_answer_and_end_streams_under_faults() {
    let (mut opened, mut closed, mut matched) = (0, 0, 0);
    for seed in 0..16 {
        let r = Scenario::random(seed, &Options::sweep()).run().unwrap_or_else(|e| panic!("seed {seed}:\n{e}"));
        opened += r.streams.0;
        closed += r.streams.1;
        matched += r.streams.2;
    }
    // The workload really uses streams: many opens, both ends closed for
    // most, and many ends compared code for code.
    assert!(opened > 200, "only {opened} streams opened");
    assert!(closed > opened, "{closed} terminals for {opened} streams");
    assert!(matched > opened / 4, "only {matched} of {opened} compared");
}

#[test]
fn a_pair_answers_a_stream_and_both_ends_close_once() {
    let mut sim = Sim::new(SimConfig::uniform(3, 2, 1));
    sim.keep_events();
    sim.connect(1, 0);
    sim.run_for(300_000).unwrap();
    // Slot 0 serves topic 0 ((slot + topic) even); slot 1 does not.
    let s = sim.open_stream(1, 0, None, None);
    let refused = sim.open_stream(0, 0, None, None);
    sim.run_for(300_000).unwrap();
    sim.check().unwrap();
    let closed = |slot: usize, id| {
        sim.events(slot)
            .filter_map(|(_, e)| match e {
                estafeta_core::Event::Stream(estafeta_core::StreamEvent::Closed { stream, end, .. })
                    if *stream == id =>
                {
                    Some(end.code)
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(closed(1, s).len(), 1);
    assert_eq!(closed(0, refused), vec![CloseCode::BAD_REQUEST], "slot 1 serves nothing");
    assert_eq!(sim.stream_counts().0, 2);
}
