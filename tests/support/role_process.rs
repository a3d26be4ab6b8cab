//! This test binary re-run as a child process playing a role in one test,
//! with its stdout read line by line on a thread. Shared by the suite's
//! SIGKILL-able peers (`tests/suite/child.rs`) and the network-namespace
//! tests (`tests/netns`), which run the binary under `ip netns exec`.

use std::ffi::OsStr;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};

/// Runs test `test` of this binary through `cmd` (the binary itself, or a
/// wrapper whose last argument is it) with `role_var=role` and `env` set.
/// Returns the process and its stdout lines.
pub fn spawn<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    mut cmd: Command,
    test: &str,
    (role_var, role): (&str, &str),
    env: impl IntoIterator<Item = (K, V)>,
) -> (Child, Receiver<String>) {
    // `--include-ignored`: the role runs even for an ignored test.
    cmd.args([test, "--exact", "--include-ignored", "--test-threads=1", "--nocapture"])
        .env(role_var, role)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("child process starts");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// What follows `prefix` in `line`. The prefix is looked for anywhere: the
/// harness prints "test <name> ... " without a newline before the test's
/// own first line.
pub fn after(line: &str, prefix: &str) -> Option<String> {
    line.find(prefix).map(|at| line[at + prefix.len()..].to_string())
}
