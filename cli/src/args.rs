//! The command line, as clap parses it. Every option that configures a node
//! also reads an `ESTAFETA_*` environment variable; flags win.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// estafeta: topic pub/sub between peer nodes, from a shell.
///
/// Each command runs a node of its own: it listens (unless --no-listen),
/// connects to the peers given with --connect and keeps redialing them.
/// Logs go to stderr (RUST_LOG filters them, INFO by default); data goes to
/// stdout.
///
/// Exit codes: 0 done, 1 failed (I/O, refused configuration), 2 bad
/// arguments, 3 timed out (no subscriber or server, or fewer messages than
/// --count), 4 a peer could not be reached, 5 a stream ended with a code
/// other than 1000 (printed on stderr).
#[derive(Debug, Parser)]
#[command(name = "estafeta", version, propagate_version = true)]
#[command(after_help = "Two terminals:\n  \
    $ estafeta sub news --bind 127.0.0.1:7000\n  \
    $ estafeta pub news 'hello' --connect 127.0.0.1:7000")]
pub struct Cli {
    /// The async runtime that drives the node.
    #[arg(long, global = true, value_enum, default_value_t = RuntimeKind::Tokio, env = "ESTAFETA_RUNTIME")]
    pub runtime: RuntimeKind,
    /// How log lines on stderr look.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ESTAFETA_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The async runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// tokio, two worker threads.
    Tokio,
    /// smol.
    Smol,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node and print what happens to it (peers up and down, drops),
    /// until interrupted or --duration passes.
    ///
    /// Example: estafeta node --name hub --bind 0.0.0.0:7000 --root 256
    ///
    /// Example: estafeta node --subscribe prices --discover-via 10.0.0.1:7000 --drop-root-when-paired
    Node(NodeCmd),
    /// Print the messages of one or more topics as they arrive.
    ///
    /// Example: estafeta sub news weather --bind 127.0.0.1:7000 --format json --count 10
    Sub(SubCmd),
    /// Publish a message, or each line of stdin, to a topic.
    ///
    /// Example: estafeta pub news 'hello' --connect 127.0.0.1:7000
    ///
    /// Example: tail -f app.log | estafeta pub logs --connect 127.0.0.1:7000
    Pub(PubCmd),
    /// Send files to every subscriber of a topic: chunked, flow-controlled,
    /// verified (BLAKE3) and resumable. A progress bar per receiver, then a
    /// line per file and receiver. Exit 1 if any receiver failed.
    ///
    /// Example: estafeta send-file models ./model.bin --connect 10.0.0.7:7000
    SendFile(SendFileCmd),
    /// Receive the files offered on a topic into a directory; an
    /// interrupted transfer resumes from what the directory holds when the
    /// same file is offered again. Names are sanitised: nothing is written
    /// outside the directory.
    ///
    /// Example: estafeta receive-files models ./incoming --bind 0.0.0.0:7000
    ReceiveFiles(ReceiveFilesCmd),
    /// Open a stream on a topic and print its replies, one per line, until
    /// the producer ends it. The request is the argument, or stdin.
    ///
    /// Example: estafeta request jobs/logs 'job-42' --connect 127.0.0.1:7000
    Request(RequestCmd),
    /// Serve streams on a topic: each request runs COMMAND (the request on
    /// its stdin, ESTAFETA_PEER and ESTAFETA_TOPIC set) and each line it
    /// prints is one reply. Exit status 0 ends the stream normally (1000),
    /// anything else with 5000; a consumer that cancels kills the command.
    ///
    /// Example: estafeta serve jobs/logs --bind 127.0.0.1:7000 -- tail -n 20 /var/log/syslog
    Serve(ServeCmd),
    /// Coordinate groups: members join, the coordinator waits for the
    /// group to settle and hands each member an index and the total.
    /// Prints members joining and leaving and groups settling.
    ///
    /// Example: estafeta coordinator --bind 0.0.0.0:7100
    Coordinator(CoordinatorCmd),
    /// Join a group at a coordinator and print this node's index, total
    /// and epoch each time they change (none while the group settles or
    /// once the lease lapsed).
    ///
    /// Example: estafeta member shards --coordinator 10.0.0.5:7100
    Member(MemberCmd),
    /// Measure pub/sub throughput and request/reply latency between two
    /// nodes: in this process by default, or against `estafeta bench
    /// --serve` on another host with --connect.
    ///
    /// Example: estafeta bench --size 64 --seconds 3
    Bench(BenchCmd),
}

/// Options every command's node takes.
#[derive(Debug, Args, Clone)]
pub struct NodeOpts {
    /// This node's name (a label peers see; not an identity).
    #[arg(long, env = "ESTAFETA_NAME")]
    pub name: Option<String>,
    /// Listen here (`host:port`; port 0 picks a free one).
    #[arg(long, env = "ESTAFETA_BIND", default_value = "127.0.0.1:0")]
    pub bind: String,
    /// Do not listen: only dial out.
    #[arg(long, conflicts_with = "bind")]
    pub no_listen: bool,
    /// Keep connected to this peer (`host:port` or `name@host:port`);
    /// repeat, or separate with commas.
    #[arg(long, env = "ESTAFETA_CONNECT", value_delimiter = ',')]
    pub connect: Vec<String>,
    /// How long to wait for each --connect peer's handshake, in seconds
    /// (then exit 4). The node keeps redialing peers that drop later.
    #[arg(long, env = "ESTAFETA_CONNECT_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// Discover, through this known peer (often a root), the peers that
    /// share this node's topics, and connect to them; repeat or separate
    /// with commas.
    #[arg(long, env = "ESTAFETA_DISCOVER_VIA", value_delimiter = ',')]
    pub discover_via: Vec<String>,
    /// The most connections this node holds.
    #[arg(long, env = "ESTAFETA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Heartbeat interval of idle connections, in milliseconds.
    #[arg(long, env = "ESTAFETA_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
}

/// `estafeta node`.
#[derive(Debug, Args)]
pub struct NodeCmd {
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Subscribe to these topics too (their messages are counted, not printed).
    #[arg(long, value_delimiter = ',')]
    pub subscribe: Vec<String>,
    /// Subscribe to these topics and relay their messages to this node's
    /// other peers of the topic (exactly once per node, with a hop limit).
    #[arg(long, value_delimiter = ',')]
    pub relay: Vec<String>,
    /// Act as a discovery root: answer and forward discovery requests,
    /// accepting up to this many connections.
    #[arg(long)]
    pub root: Option<usize>,
    /// Drop the connections to --discover-via peers once every topic has
    /// another peer.
    #[arg(long)]
    pub drop_root_when_paired: bool,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<Duration>,
}

/// How `sub` prints a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// `[topic] sender: payload` with the payload as text (lossy UTF-8).
    Text,
    /// `[topic] sender: hex bytes`.
    Hex,
    /// One JSON object per line: ts, topic, from, from_id, size, text or hex.
    Json,
}

/// `estafeta sub`.
#[derive(Debug, Args)]
pub struct SubCmd {
    /// Topics to print.
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Exit 0 after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds: exit 3 if --count was given and not
    /// reached, else 0.
    #[arg(long, value_parser = parse_secs)]
    pub timeout: Option<Duration>,
}

/// `estafeta pub`.
#[derive(Debug, Args)]
pub struct PubCmd {
    /// The topic.
    pub topic: String,
    /// The message; without it, each line of stdin is one message.
    pub message: Option<String>,
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Send each message to one subscriber, taking turns.
    #[arg(long, conflicts_with = "to")]
    pub round_robin: bool,
    /// Send each message only to this peer (its name or id).
    #[arg(long)]
    pub to: Option<String>,
    /// Wait for this many subscribers before the first message.
    #[arg(long, default_value_t = 1)]
    pub wait_subscribers: usize,
    /// How long to wait for them, in seconds (then exit 3).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub wait_timeout: Duration,
    /// Publish the message this many times.
    #[arg(long, default_value_t = 1)]
    pub repeat: u64,
    /// Pause between messages, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
}

/// `estafeta bench`.
#[derive(Debug, Args)]
pub struct BenchCmd {
    /// Node options (for --serve and --connect).
    #[command(flatten)]
    pub node: NodeOpts,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// How long the throughput part runs, in seconds.
    #[arg(long, default_value = "3", value_parser = parse_secs)]
    pub seconds: Duration,
    /// Round trips measured for the latency part.
    #[arg(long, default_value_t = 10_000)]
    pub rounds: usize,
    /// Serve benchmarks for `estafeta bench --connect` on other hosts, until interrupted.
    #[arg(long, conflicts_with = "connect")]
    pub serve: bool,
}

/// `estafeta request`.
#[derive(Debug, Args)]
pub struct RequestCmd {
    /// The topic a peer serves.
    pub topic: String,
    /// The request; without it, all of stdin.
    pub payload: Option<String>,
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Open it on this peer (name or id) instead of taking turns among servers.
    #[arg(long)]
    pub to: Option<String>,
    /// Cancel the stream (code 4008) if it has not ended after this many seconds.
    #[arg(long, value_parser = parse_secs)]
    pub deadline: Option<Duration>,
    /// How long to wait for a peer that serves the topic, in seconds (then exit 3).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub wait_timeout: Duration,
    /// Print replies as hex instead of text.
    #[arg(long)]
    pub hex: bool,
}

/// `estafeta serve`.
#[derive(Debug, Args)]
pub struct ServeCmd {
    /// The topic to serve.
    pub topic: String,
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Exit after answering this many requests.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// The command run for each request, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `estafeta coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorCmd {
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Quiet time after a change before a group settles, in seconds (default 3).
    #[arg(long, value_parser = parse_secs)]
    pub settle: Option<Duration>,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<Duration>,
}

/// `estafeta member`.
#[derive(Debug, Args)]
pub struct MemberCmd {
    /// The group to join.
    pub group: String,
    /// The coordinator's address (`host:port` or `name@host:port`).
    #[arg(long, env = "ESTAFETA_COORDINATOR")]
    pub coordinator: String,
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Leave and stop after this many seconds (default: run until interrupted).
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<Duration>,
}

/// `estafeta send-file`.
#[derive(Debug, Args)]
pub struct SendFileCmd {
    /// The topic the receivers subscribe to.
    pub topic: String,
    /// The files.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Wait for this many receivers before sending.
    #[arg(long, default_value_t = 1)]
    pub wait_subscribers: usize,
    /// How long to wait for them, in seconds (then exit 3).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub wait_timeout: Duration,
    /// Payload bytes per chunk (default 64 KiB).
    #[arg(long)]
    pub chunk_size: Option<u32>,
    /// Metadata for the receivers, `key=value`; repeat for more.
    #[arg(long)]
    pub meta: Vec<String>,
}

/// `estafeta receive-files`.
#[derive(Debug, Args)]
pub struct ReceiveFilesCmd {
    /// The topic to receive files on.
    pub topic: String,
    /// The directory files land in (created if missing).
    pub dir: std::path::PathBuf,
    /// Node options.
    #[command(flatten)]
    pub node: NodeOpts,
    /// Exit 0 after this many files were received.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds: exit 3 if --count was given and not
    /// reached, else 0.
    #[arg(long, value_parser = parse_secs)]
    pub timeout: Option<Duration>,
}

/// Seconds, possibly fractional (`1.5`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s:?} is not a number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}
