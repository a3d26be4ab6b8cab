//! `estafeta-sim`: long seed sweeps and single-seed replays from the command line.
//!
//! ```text
//! estafeta-sim sweep [--seeds N] [--start S] [--nodes K | --min-nodes A --max-nodes B]
//!                    [--faults F | --min-faults A --max-faults B] [--heavy]
//!                    [--window-ms W] [--groups] [--plant-lease-bug] [--secure P] [--sessions P] [--overwrite P] [--plant-resend-bug] [--plant-overwrite-bug] [--plant-stream-resume-bug] [--plant-run-bug] [--quiet]
//! estafeta-sim run --seed S [same scenario options] [--trace] [--keep N]
//! ```
//!
//! Without options a run has 5 to 10 nodes and 6 faults; `--heavy` is the
//! CI sweep's range (2 to 12 nodes, 0 to 48 faults drawn per seed), applied
//! before the other options. `--secure P` makes P runs per thousand secure
//! (every node on the Noise channel; 1000: all); `--heavy` makes 250 secure,
//! the default none.
//!
//! `sweep` prints every failing seed with the command that replays it, then
//! seeds per second and simulated seconds per wall-clock second.

use estafeta_sim::scenario::{Options, Scenario};
use std::process::ExitCode;

const USAGE: &str = "usage:
  estafeta-sim sweep [--seeds N] [--start S] [--nodes K | --min-nodes A --max-nodes B]
                     [--faults F | --min-faults A --max-faults B] [--heavy]
                     [--window-ms W] [--groups] [--plant-lease-bug] [--secure P] [--sessions P] [--overwrite P] [--plant-resend-bug] [--plant-overwrite-bug] [--plant-stream-resume-bug] [--plant-run-bug] [--quiet]
  estafeta-sim run --seed S [scenario options] [--trace] [--keep N]";

struct Args {
    cmd: String,
    seeds: u64,
    start: u64,
    seed: Option<u64>,
    opts: Options,
    trace: bool,
    keep: usize,
    quiet: bool,
    /// The scenario options as given, for replay commands.
    given: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let heavy = args.iter().any(|a| a == "--heavy");
    let mut it = args.into_iter();
    let cmd = it.next().ok_or("missing command")?;
    let mut a = Args {
        cmd,
        seeds: 1000,
        start: 0,
        seed: None,
        opts: if heavy { Options::sweep() } else { Options::default() },
        trace: false,
        keep: 200,
        quiet: false,
        given: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        };
        match flag.as_str() {
            "--seeds" => a.seeds = value("--seeds")?,
            "--start" => a.start = value("--start")?,
            "--seed" => a.seed = Some(value("--seed")?),
            "--keep" => a.keep = value("--keep")? as usize,
            "--trace" => a.trace = true,
            "--quiet" => a.quiet = true,
            "--heavy" => a.given.insert(0, flag.clone()),
            "--groups" => {
                a.opts.groups = true;
                a.given.push(flag.clone());
            }
            "--plant-resend-bug" => {
                a.opts.plant_resend_bug = true;
                a.given.push(flag.clone());
            }
            "--plant-overwrite-bug" => {
                a.opts.plant_overwrite_bug = true;
                a.given.push(flag.clone());
            }
            "--plant-run-bug" => {
                a.opts.plant_run_bug = true;
                a.given.push(flag.clone());
            }
            "--plant-stream-resume-bug" => {
                a.opts.plant_stream_resume_bug = true;
                a.given.push(flag.clone());
            }
            "--plant-lease-bug" => {
                a.opts.groups = true;
                a.opts.plant_lease_bug = true;
                a.given.push(flag.clone());
            }
            "--nodes" | "--min-nodes" | "--max-nodes" | "--faults" | "--min-faults" | "--max-faults"
            | "--window-ms" | "--secure" | "--sessions" | "--overwrite" => {
                let v = value(&flag)?;
                a.given.push(format!("{flag} {v}"));
                match flag.as_str() {
                    "--nodes" => {
                        a.opts.min_nodes = v as usize;
                        a.opts.max_nodes = v as usize;
                    }
                    "--min-nodes" => a.opts.min_nodes = v as usize,
                    "--max-nodes" => a.opts.max_nodes = v as usize,
                    "--faults" => a.opts = a.opts.clone().with_faults(v as usize),
                    "--min-faults" => a.opts.min_faults = v as usize,
                    "--max-faults" => a.opts.max_faults = v as usize,
                    "--secure" => a.opts.secure_per_mille = v.min(1000),
                    "--sessions" => a.opts.resume_per_mille = v.min(1000),
                    "--overwrite" => a.opts.overwrite_per_mille = v.min(1000),
                    _ => a.opts.fault_window_us = v * 1000,
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.opts.min_nodes < 2 || a.opts.max_nodes < a.opts.min_nodes {
        return Err("need 2 <= min-nodes <= max-nodes".into());
    }
    if a.opts.max_faults < a.opts.min_faults {
        return Err("need min-faults <= max-faults".into());
    }
    Ok(a)
}

fn replay(a: &Args, seed: u64) -> String {
    let mut cmd = format!("cargo run -p estafeta-sim --release -- run --seed {seed}");
    for g in &a.given {
        cmd.push(' ');
        cmd.push_str(g);
    }
    cmd
}

/// Wall-clock seconds spent in `f`. The simulation itself never reads a
/// clock; only this command line measures its own speed.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = std::time::Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

fn sweep(a: &Args) -> ExitCode {
    let mut failed = Vec::new();
    let mut sim_us = 0u64;
    let mut steps = 0u64;
    let mut slowest = (0u64, 0u64, 0u64); // reconnect time, its bound, seed
    let mut acc = estafeta_sim::Accounting::default();
    let ((), wall) = timed(|| {
        for seed in a.start..a.start + a.seeds {
            let sc = Scenario::random(seed, &a.opts);
            match sc.run() {
                Ok(r) => {
                    sim_us += r.sim_us;
                    steps += r.steps;
                    if r.reconnect_us > slowest.0 {
                        slowest = (r.reconnect_us, sc.settle_bound_us, seed);
                    }
                    let a = &r.accounting;
                    acc.published += a.published;
                    acc.refused += a.refused;
                    acc.delivered += a.delivered;
                    acc.lost_with_connection += a.lost_with_connection;
                    acc.lost_in_crash += a.lost_in_crash;
                    acc.dropped_by_receiver += a.dropped_by_receiver;
                    acc.dropped_unsent += a.dropped_unsent;
                    acc.session_ok += a.session_ok;
                    acc.session_lost_with_range += a.session_lost_with_range;
                    acc.session_unknown += a.session_unknown;
                    acc.overwritten += a.overwritten;
                    acc.overwritten_matched += a.overwritten_matched;
                }
                Err(e) => {
                    println!("seed {seed} FAILED ({}):\n{e}\n  replay: {}\n", sc.describe(), replay(a, seed));
                    failed.push(seed);
                }
            }
            let done = seed - a.start + 1;
            if !a.quiet && done % 1000 == 0 {
                eprintln!("  {done} seeds, {} failed", failed.len());
            }
        }
    });
    let sim_s = sim_us as f64 / 1e6;
    println!(
        "{} seeds ({}..{}), {} failed, in {wall:.1} s: {:.1} seeds/s, {sim_s:.0} simulated s, \
         {:.1} simulated s per wall s, {:.0} events/s",
        a.seeds,
        a.start,
        a.start + a.seeds,
        failed.len(),
        a.seeds as f64 / wall,
        sim_s / wall,
        steps as f64 / wall,
    );
    println!(
        "slowest reconnection after healing: {} (seed {}, bound {})",
        estafeta_sim::fmt_time(slowest.0),
        slowest.2,
        estafeta_sim::fmt_time(slowest.1)
    );
    println!("messages: {acc:?}");
    println!(
        "sessions (runs with resume_window > 0; per message and receiver): ok {}, lost-with-range {}, unknown {}",
        acc.session_ok, acc.session_lost_with_range, acc.session_unknown
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failing seeds: {failed:?}");
        ExitCode::FAILURE
    }
}

fn run_one(a: &Args) -> ExitCode {
    let Some(seed) = a.seed else {
        eprintln!("run needs --seed\n{USAGE}");
        return ExitCode::FAILURE;
    };
    let mut sc = Scenario::random(seed, &a.opts);
    sc.sim.trace_echo = a.trace;
    sc.sim.trace_keep = a.keep;
    println!("seed {seed}: {}", sc.describe());
    let (r, wall) = timed(|| sc.run());
    match r {
        Ok(r) => {
            println!(
                "ok in {wall:.2} s: {} events, {} simulated, trace hash {:016x}, reconnected {} after healing\n{:?}",
                r.steps,
                estafeta_sim::fmt_time(r.sim_us),
                r.trace_hash,
                estafeta_sim::fmt_time(r.reconnect_us),
                r.accounting
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED:\n{e}\n  replay: {}", replay(a, seed));
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match a.cmd.as_str() {
        "sweep" => sweep(&a),
        "run" => run_one(&a),
        other => {
            eprintln!("unknown command {other}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}
