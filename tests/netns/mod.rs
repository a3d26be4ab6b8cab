//! Network namespaces for real-network fault tests: two hosts, each in a
//! namespace of its own, joined by a veth pair, with faults applied by
//! `ip` and `tc`, and nodes running as separate processes inside them.
//!
//! Every resource is named after the test process and a counter, so tests
//! can run in parallel and leftovers are easy to spot (`ip netns list`,
//! names start with `estf`). [`Pair`] deletes its namespaces (and with
//! them the veth pair) on drop, and [`Proc`] kills its process on drop, so
//! a failing assertion cleans up too.

#[path = "../support/role_process.rs"]
mod role_process;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The environment variable that tells a re-run test binary its role.
pub const ROLE: &str = "ESTAFETA_NETNS_ROLE";

/// The address of host `a` (the first namespace) on the veth link.
pub const ADDR_A: &str = "10.99.0.1";
/// The address of host `b` (the second namespace) on the veth link.
pub const ADDR_B: &str = "10.99.0.2";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The role this process plays, if it was started by [`Proc::spawn`].
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Runs `ip` (or `tc`) with `args`; an error names the command and its output.
pub fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn must(cmd: &str, args: &[&str]) {
    if let Err(e) = run(cmd, args) {
        panic!("{e}");
    }
}

/// Why namespaces cannot be used here, if they cannot (not root, no `ip`,
/// no permission to create one). Probed once per process.
pub fn unavailable() -> Option<String> {
    static PROBE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            let name = format!("estf{}probe", std::process::id());
            match run("ip", &["netns", "add", &name]) {
                Ok(()) => {
                    let _ = run("ip", &["netns", "del", &name]);
                    match Command::new("tc").arg("-V").output() {
                        Ok(_) => None,
                        Err(e) => Some(format!("tc is not available: {e}")),
                    }
                }
                Err(e) => Some(e),
            }
        })
        .clone()
}

/// Prints the one line that says a test was skipped, and returns true, when
/// namespaces are unavailable.
pub fn skip(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            println!("netns test {test} skipped: network namespaces unavailable (needs root, ip and tc): {why}");
            true
        }
        None => false,
    }
}

/// Two namespaces `a` and `b` joined by a veth pair (`dev_a` in `a` with
/// [`ADDR_A`], `dev_b` in `b` with [`ADDR_B`]), both up, loopback up.
pub struct Pair {
    pub a: String,
    pub b: String,
    pub dev_a: String,
    pub dev_b: String,
}

impl Pair {
    pub fn new() -> Pair {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}x{n}", std::process::id());
        let p = Pair {
            a: format!("estf{id}a"),
            b: format!("estf{id}b"),
            // Interface names are at most 15 bytes.
            dev_a: format!("ef{}a", &id[id.len().saturating_sub(11)..]),
            dev_b: format!("ef{}b", &id[id.len().saturating_sub(11)..]),
        };
        must("ip", &["netns", "add", &p.a]);
        must("ip", &["netns", "add", &p.b]);
        must("ip", &["link", "add", &p.dev_a, "netns", &p.a, "type", "veth", "peer", "name", &p.dev_b, "netns", &p.b]);
        for (ns, dev, addr) in [(&p.a, &p.dev_a, ADDR_A), (&p.b, &p.dev_b, ADDR_B)] {
            must("ip", &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Shapes what `a` sends to `rate` (e.g. "2mbit") with a token bucket.
    pub fn shape_a(&self, rate: &str) {
        must(
            "tc",
            &[
                "-n",
                &self.a,
                "qdisc",
                "add",
                "dev",
                &self.dev_a,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kbit",
                "latency",
                "400ms",
            ],
        );
    }

    /// Takes `b`'s end of the link down or up (`a` sees carrier loss).
    pub fn link_b(&self, up: bool) {
        must("ip", &["-n", &self.b, "link", "set", &self.dev_b, if up { "up" } else { "down" }]);
    }

    /// Removes or restores `b`'s address: packets to it vanish silently.
    pub fn address_b(&self, present: bool) {
        let addr = format!("{ADDR_B}/24");
        must("ip", &["-n", &self.b, "addr", if present { "add" } else { "del" }, &addr, "dev", &self.dev_b]);
    }

    /// Deletes the veth pair: host `b` vanishes from `a`'s network.
    pub fn delete_link(&self) {
        must("ip", &["-n", &self.b, "link", "del", &self.dev_b]);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and the pair with it.
        for ns in [&self.a, &self.b] {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// This test binary, re-run in namespace `ns` to play `role` in test
/// `test`, with extra environment. Its stdout lines are read on a thread.
pub struct Proc {
    child: std::process::Child,
    lines: Receiver<String>,
    pub name: String,
}

impl Proc {
    pub fn spawn(ns: &str, test: &str, role: &str, env: &[(&str, String)]) -> Proc {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(exe);
        let (child, lines) = role_process::spawn(cmd, test, (ROLE, role), env.iter().map(|(k, v)| (*k, v)));
        Proc { child, lines, name: format!("{role} in {ns}") }
    }

    /// The rest of the first line starting with `prefix`, within `limit`.
    pub fn wait_line(&mut self, prefix: &str, limit: Duration) -> String {
        self.try_line(prefix, limit).unwrap_or_else(|| panic!("{}: no line {prefix:?} within {limit:?}", self.name))
    }

    /// Like [`Proc::wait_line`], or `None` when `limit` passes first.
    pub fn try_line(&mut self, prefix: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = role_process::after(&line, prefix) {
                        return Some(rest);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                    if Instant::now() >= end {
                        return None;
                    }
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("{} exited ({status}) before printing {prefix:?}", self.name);
                    }
                }
            }
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself (killing it after `limit`);
    /// true if it exited successfully.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `key=value` words of a line, parsed.
pub fn field<T: std::str::FromStr>(line: &str, key: &str) -> T {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
