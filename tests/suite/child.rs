//! Peers that run as real child processes, so a test can kill one with
//! SIGKILL (no destructor, no goodbye, sockets reset by the kernel).
//!
//! A test re-runs its own test binary, filtered to itself, with
//! `ESTAFETA_CHILD=<role>` set; the test function checks [`role`] first and,
//! in the child, plays that role instead. The child talks to the parent by
//! printing lines to stdout (`println!`), which the parent reads with
//! [`Child::wait_line`]:
//!
//! ```ignore
//! pub async fn producer_killed<R: Runtime>() {
//!     if let Some(role) = child::role() {
//!         // the child: start a node, print its address, serve until killed
//!         println!("ADDR {}", node.address().unwrap());
//!         ...
//!         return;
//!     }
//!     let mut c = child::Child::spawn("producer_killed", "producer", &[]);
//!     let addr = c.wait_line::<R>("ADDR ", Duration::from_secs(10)).await;
//!     ...
//!     c.kill(); // SIGKILL
//! }
//! ```

use super::role_process;
use super::util::sleep;
use estafeta_driver::Runtime;
use std::process::Command;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

const VAR: &str = "ESTAFETA_CHILD";

/// The role this process plays if it was started by [`Child::spawn`].
pub fn role() -> Option<String> {
    std::env::var(VAR).ok()
}

/// A child process running one test of this binary in a role.
pub struct Child {
    proc: std::process::Child,
    lines: Receiver<String>,
}

impl Child {
    /// Runs test `test` (the name the harness lists, e.g. `producer_killed`)
    /// of this test binary as a child playing `role`, with extra environment.
    pub fn spawn(test: &str, role: &str, env: &[(&str, &str)]) -> Child {
        let exe = std::env::current_exe().expect("test binary");
        let (proc, lines) = role_process::spawn(Command::new(exe), test, (VAR, role), env.iter().copied());
        Child { proc, lines }
    }

    /// Waits (without blocking the runtime) for a line of the child's stdout
    /// that contains `prefix`, and returns what follows it. Panics if the
    /// child exits or `limit` passes first.
    pub async fn wait_line<R: Runtime>(&mut self, prefix: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    if let Some(rest) = role_process::after(&line, prefix) {
                        return rest;
                    }
                }
                Err(TryRecvError::Empty) if Instant::now() < end => sleep::<R>(Duration::from_millis(5)).await,
                Err(TryRecvError::Empty) => panic!("child printed no line starting {prefix:?} within {limit:?}"),
                Err(TryRecvError::Disconnected) => panic!("child exited before printing {prefix:?}"),
            }
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.proc.id()
    }

    /// Kills the child with SIGKILL and reaps it. Returns true if it was
    /// still running (it died of the signal, not of its own accord).
    pub fn kill(&mut self) -> bool {
        let running = matches!(self.proc.try_wait(), Ok(None));
        let _ = self.proc.kill(); // SIGKILL on Unix
        let status = self.proc.wait().expect("child reaped");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            running && status.signal() == Some(9)
        }
        #[cfg(not(unix))]
        {
            running && !status.success()
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// The helper itself: a child that prints and then waits is killed by
/// SIGKILL while running.
pub async fn a_child_process_is_killed_by_sigkill<R: Runtime>() {
    if role().is_some() {
        println!("READY {}", std::process::id());
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let mut c = Child::spawn("a_child_process_is_killed_by_sigkill", "sleeper", &[]);
    let pid = c.wait_line::<R>("READY ", Duration::from_secs(20)).await;
    assert_eq!(pid, c.id().to_string());
    assert!(c.kill(), "the child was running and died of SIGKILL");
}
