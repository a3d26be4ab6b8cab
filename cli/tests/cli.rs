//! The `estafeta` binary driven as real processes, on both runtimes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

fn estafeta() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_estafeta"));
    c.env("RUST_LOG", "warn").env_remove("ESTAFETA_CONNECT").env_remove("ESTAFETA_BIND");
    c
}

/// A running `estafeta sub`, with the address it listens at.
struct Sub {
    child: Child,
    addr: String,
    stderr: Receiver<String>,
}

impl Sub {
    fn start(runtime: &str, args: &[&str]) -> Sub {
        let mut child = estafeta()
            .args(["--runtime", runtime, "sub"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("estafeta sub starts");
        let (tx, stderr) = channel();
        let err = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = stderr.recv_timeout(Duration::from_secs(20)).expect("sub says where it listens");
            if let Some(rest) = line.split(" listening at ").nth(1) {
                break rest.trim().to_string();
            }
        };
        Sub { child, addr, stderr }
    }

    /// Waits for the process and returns its stdout lines and exit code.
    fn finish(mut self) -> (Vec<String>, Option<i32>) {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().expect("piped"), &mut out).expect("stdout");
        let status = self.child.wait().expect("sub exits");
        while self.stderr.try_recv().is_ok() {}
        (out.lines().map(str::to_string).collect(), status.code())
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    estafeta().args(args).output().expect("estafeta runs")
}

fn sub_then_pub(runtime: &str) {
    let sub = Sub::start(runtime, &["news", "--count", "3", "--format", "json", "--timeout", "30"]);
    let out = run(&["--runtime", runtime, "pub", "news", "hello", "--repeat", "3", "--connect", &sub.addr]);
    assert!(out.status.success(), "pub failed: {}", String::from_utf8_lossy(&out.stderr));
    let (lines, code) = sub.finish();
    assert_eq!(code, Some(0), "sub exits 0 after --count messages");
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert_eq!(v["topic"], "news");
        assert_eq!(v["text"], "hello");
        assert_eq!(v["size"], 5);
        assert!(v["from"].as_str().is_some_and(|f| f.starts_with("pub-")), "{v}");
    }
}

#[test]
fn sub_prints_what_pub_sends_between_two_processes_on_tokio() {
    sub_then_pub("tokio");
}

#[test]
fn sub_prints_what_pub_sends_between_two_processes_on_smol() {
    sub_then_pub("smol");
}

#[test]
fn pub_sends_each_line_of_stdin_in_order() {
    let sub = Sub::start("tokio", &["lines", "--count", "3", "--timeout", "30"]);
    let mut p = estafeta()
        .args(["pub", "lines", "--connect", &sub.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pub starts");
    p.stdin.take().expect("piped").write_all(b"one\ntwo\nthree\n").expect("stdin");
    let out = p.wait_with_output().expect("pub exits");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (lines, code) = sub.finish();
    assert_eq!(code, Some(0));
    let texts: Vec<&str> = lines.iter().map(|l| l.rsplit(": ").next().unwrap_or("")).collect();
    assert_eq!(texts, ["one", "two", "three"], "{lines:?}");
}

#[test]
fn sub_exits_3_when_fewer_messages_than_count_arrive() {
    let sub = Sub::start("tokio", &["quiet", "--count", "1", "--timeout", "0.5"]);
    let (lines, code) = sub.finish();
    assert!(lines.is_empty());
    assert_eq!(code, Some(3));
}

#[test]
fn pub_exits_3_without_a_subscriber_and_4_without_a_peer() {
    let out = run(&["pub", "nobody", "x", "--wait-timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fewer than 1 subscribers"));
    // Port 1 on loopback: nobody listens.
    let out = run(&["pub", "x", "y", "--connect", "127.0.0.1:1", "--connect-timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not connect to 127.0.0.1:1"));
}

#[test]
fn bad_arguments_say_why_and_exit_2() {
    let out = run(&["pub"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<TOPIC>"));
    let out = run(&["sub", "t", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number of seconds"));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_subcommand_explains_itself_with_an_example() {
    for cmd in
        ["node", "sub", "pub", "send-file", "receive-files", "request", "serve", "coordinator", "member", "bench"]
    {
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example: estafeta"), "{cmd} --help has no example:\n{text}");
    }
}

fn bench_for_one_second(runtime: &str) {
    let out = run(&["--runtime", runtime, "bench", "--seconds", "1", "--rounds", "200"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let rate: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("throughput: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a throughput line");
    assert!(rate > 0.0, "{text}");
    let lat = text.lines().find(|l| l.starts_with("latency (us): p50=")).expect("a latency line");
    assert!(lat.contains("p99.9=") && lat.contains("(200 round trips)"), "{lat}");
}

#[test]
fn bench_runs_for_one_second_and_prints_its_figures_on_tokio() {
    bench_for_one_second("tokio");
}

#[test]
fn bench_runs_for_one_second_and_prints_its_figures_on_smol() {
    bench_for_one_second("smol");
}

#[test]
fn bench_client_measures_against_a_server_in_another_process() {
    let mut server = estafeta()
        .args(["bench", "--serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let err = BufReader::new(server.stderr.take().expect("piped"));
    let addr = err
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split(" listening at ").nth(1).map(str::to_string))
        .expect("server says where it listens");
    let out = run(&["bench", "--seconds", "0.5", "--rounds", "100", "--connect", &addr]);
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("throughput: ") && text.contains("(100 round trips)"), "{text}");
}

#[test]
fn node_prints_peers_coming_and_going() {
    let sub = Sub::start("tokio", &["t", "--timeout", "30"]);
    let out = run(&["node", "--name", "watcher", "--connect", &sub.addr, "--duration", "0.5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("peer up sub-")), "{text}");
    assert!(text.lines().any(|l| l.contains("subscribed to t")), "{text}");
    drop(sub);
}

/// A running `estafeta serve TOPIC -- sh -c SCRIPT`, with its address.
fn serve(topic: &str, script: &str, extra: &[&str]) -> (Child, String) {
    let mut child = estafeta()
        .args(["serve", topic])
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let err = BufReader::new(child.stderr.take().expect("piped"));
    let mut lines = err.lines().map_while(Result::ok);
    let addr = lines
        .by_ref()
        .find_map(|l| l.split(" listening at ").nth(1).map(str::to_string))
        .expect("serve says where it listens");
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[test]
fn request_prints_the_lines_a_served_command_writes() {
    let (mut server, addr) =
        serve("jobs", "echo \"from $ESTAFETA_TOPIC\"; cat; echo; echo done", &["--max-requests", "1"]);
    let out = run(&["request", "jobs", "job-42", "--connect", &addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from jobs\njob-42\ndone\n");
    assert!(server.wait().expect("serve exits after --max-requests").success());
}

#[test]
fn a_failing_command_ends_the_stream_with_5000_and_request_exits_5() {
    let (mut server, addr) = serve("fail", "echo partial; exit 3", &["--runtime", "smol", "--max-requests", "1"]);
    let out = run(&["--runtime", "smol", "request", "fail", "x", "--connect", &addr]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "partial\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream closed with 5000"));
    let _ = server.wait();
}

#[test]
fn a_deadline_cancels_a_slow_command_and_request_exits_5_with_4008() {
    let (mut server, addr) = serve("slow", "echo first; sleep 30; echo late", &[]);
    let out = run(&["request", "slow", "x", "--deadline", "0.5", "--connect", &addr]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream closed with 4008"));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn request_exits_3_when_nobody_serves_the_topic() {
    let out = run(&["request", "nobody", "x", "--wait-timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Reads `child`'s stdout lines on a thread.
fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let out = BufReader::new(child.stdout.take().expect("piped"));
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

#[test]
fn a_coordinator_and_three_members_settle_to_distinct_indexes() {
    let mut coord = estafeta()
        .args(["--runtime", "smol", "coordinator", "--settle", "0.3", "--duration", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coordinator starts");
    let err = BufReader::new(coord.stderr.take().expect("piped"));
    let addr = err
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split(" listening at ").nth(1).map(str::to_string))
        .expect("coordinator says where it listens");
    let coord_out = stdout_lines(&mut coord);
    let mut members: Vec<(Child, Receiver<String>)> = (0..3)
        .map(|i| {
            let runtime = if i == 1 { "smol" } else { "tokio" };
            let mut m = estafeta()
                .args(["--runtime", runtime, "member", "shards", "--coordinator", &addr, "--duration", "60"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("member starts");
            let rx = stdout_lines(&mut m);
            (m, rx)
        })
        .collect();
    // Each member ends up assigned in a group of three; the indexes differ.
    let mut indexes = Vec::new();
    for (_, rx) in &mut members {
        let line = loop {
            let l = rx.recv_timeout(Duration::from_secs(30)).expect("an assignment");
            if l.contains(" total=3 ") {
                break l;
            }
        };
        let index: u32 = line.split("index=").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
        indexes.push(index);
    }
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2]);
    // The coordinator printed the joins and the settled group.
    let mut seen = Vec::new();
    while let Ok(l) = coord_out.recv_timeout(Duration::from_millis(500)) {
        seen.push(l);
    }
    assert_eq!(seen.iter().filter(|l| l.contains(" joined")).count(), 3, "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("settled") && l.ends_with("total=3")), "{seen:?}");
    for (m, _) in &mut members {
        let _ = m.kill();
        let _ = m.wait();
    }
    let _ = coord.kill();
    let _ = coord.wait();
}

#[test]
fn nodes_that_know_only_a_root_pair_up_on_a_shared_topic() {
    let mut root = estafeta()
        .args(["node", "--name", "root", "--root", "8", "--duration", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("root starts");
    let err = BufReader::new(root.stderr.take().expect("piped"));
    let addr = err
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split(" listening at ").nth(1).map(str::to_string))
        .expect("root says where it listens");
    let sub = Sub::start("tokio", &["news", "--discover-via", &addr, "--timeout", "60"]);
    let mut a = estafeta()
        .args(["--runtime", "smol", "node", "--name", "a", "--subscribe", "news", "--discover-via", &addr])
        .args(["--duration", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let lines = stdout_lines(&mut a);
    let paired = loop {
        let l = lines.recv_timeout(Duration::from_secs(30)).expect("node a pairs on news");
        if l == "paired on news" {
            break l;
        }
    };
    assert_eq!(paired, "paired on news");
    drop(sub);
    for c in [&mut a, &mut root] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("estafeta-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A running `estafeta receive-files TOPIC DIR`, with its address.
fn receive_files(topic: &str, dir: &std::path::Path, extra: &[&str]) -> (Child, String, Receiver<String>) {
    let mut child = estafeta()
        .args(["receive-files", topic])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("receive-files starts");
    let err = BufReader::new(child.stderr.take().expect("piped"));
    let mut lines = err.lines().map_while(Result::ok);
    let addr = lines
        .by_ref()
        .find_map(|l| l.split(" listening at ").nth(1).map(str::to_string))
        .expect("receive-files says where it listens");
    std::thread::spawn(move || lines.for_each(drop));
    let out = stdout_lines(&mut child);
    (child, addr, out)
}

#[test]
fn send_file_reaches_receive_files_verified_with_its_hash() {
    let dir = temp_dir("send");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("model.bin"), &data).unwrap();
    // The receiver on smol, the sender on tokio.
    let (mut rx, addr, lines) =
        receive_files("models", &dir.join("in"), &["--runtime", "smol", "--count", "1", "--timeout", "60"]);
    let out = run(&[
        "send-file",
        "models",
        src.join("model.bin").to_str().unwrap(),
        "--meta",
        "version=3",
        "--connect",
        &addr,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let hash = blake3::hash(&data).to_hex().to_string();
    assert!(text.contains("verified") && text.contains(&hash), "{text}");
    let got = lines.recv_timeout(Duration::from_secs(30)).expect("a received line");
    assert!(got.starts_with("received ") && got.contains(&hash) && got.contains("[version=3]"), "{got}");
    assert!(rx.wait().expect("receive-files exits").success());
    assert_eq!(std::fs::read(dir.join("in").join("model.bin")).unwrap(), data);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_killed_receive_files_resumes_on_the_next_run() {
    let dir = temp_dir("resume");
    let data: Vec<u8> = (0..48_000_000u32).map(|i| (i % 253) as u8).collect();
    let file = dir.join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let inbox = dir.join("in");
    // First run: killed (SIGKILL) once part of the file is synced.
    let (mut rx, addr, _lines) = receive_files("big", &inbox, &["--timeout", "60"]);
    let mut sender = estafeta()
        .args(["send-file", "big", file.to_str().unwrap(), "--connect", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("send-file starts");
    let part = inbox.join("big.bin.part");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 4 << 20 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = rx.kill();
    let _ = rx.wait();
    let _ = sender.kill();
    let _ = sender.wait();
    let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0 && kept < data.len() as u64, "{kept}");
    // Second run: the same file offered again resumes and completes.
    let (mut rx, addr, lines) = receive_files("big", &inbox, &["--count", "1", "--timeout", "120"]);
    let out = run(&["--runtime", "smol", "send-file", "big", file.to_str().unwrap(), "--connect", &addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = lines.recv_timeout(Duration::from_secs(60)).expect("a received line");
    assert!(got.starts_with("received "), "{got}");
    assert!(rx.wait().expect("exits").success());
    assert_eq!(std::fs::read(inbox.join("big.bin")).unwrap(), data);
    let _ = std::fs::remove_dir_all(dir);
}
