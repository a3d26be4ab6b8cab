//! What every command shares: building its node from the options, exit
//! codes, and runtime-agnostic timers.

use crate::args::NodeOpts;
use estafeta_driver::{Config, Node, Runtime, Timer};
use std::future::Future;
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

/// Why a command failed, with the exit code scripts see.
#[derive(Debug)]
pub enum Failure {
    /// Anything else: I/O, a refused configuration, the node closed (1).
    Failed(String),
    /// Waited too long: no subscriber, fewer messages than asked (3).
    TimedOut(String),
    /// A peer could not be reached (4).
    Unreachable(String),
    /// A stream ended with a code other than 1000: the code and text (5).
    StreamClosed(u16, String),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Failed(_) => 1,
            Failure::TimedOut(_) => 3,
            Failure::Unreachable(_) => 4,
            Failure::StreamClosed(..) => 5,
        })
    }

    /// The message printed on stderr.
    pub fn message(&self) -> String {
        match self {
            Failure::Failed(m) | Failure::TimedOut(m) | Failure::Unreachable(m) => m.clone(),
            Failure::StreamClosed(code, text) => format!("stream closed with {code}: {text}"),
        }
    }
}

impl From<estafeta_driver::Error> for Failure {
    fn from(e: estafeta_driver::Error) -> Self {
        match e {
            estafeta_driver::Error::ConnectFailed(addr) => Failure::Unreachable(format!("could not connect to {addr}")),
            other => Failure::Failed(other.to_string()),
        }
    }
}

/// Builds and starts a node from `opts` (see [`build_with`]), then dials every
/// `--connect` peer, waiting for each handshake.
pub async fn start<R: Runtime>(opts: &NodeOpts, default_name: &str) -> Result<Node<R>, Failure> {
    start_with::<R>(opts, default_name, |_| {}).await
}

/// [`start`], with `tune` changing the configuration first.
pub async fn start_with<R: Runtime>(
    opts: &NodeOpts,
    default_name: &str,
    tune: impl FnOnce(&mut Config),
) -> Result<Node<R>, Failure> {
    let node = build_with::<R>(opts, default_name, tune).await?;
    connect_all(&node, &opts.connect, opts.connect_timeout).await?;
    Ok(node)
}

/// Builds and starts a node from `opts`, named `default_name` unless
/// `--name` says otherwise, with `tune` changing the configuration first,
/// and starts discovery through `--discover-via` peers; does not dial
/// `--connect` peers. Prints where it listens on stderr.
pub async fn build_with<R: Runtime>(
    opts: &NodeOpts,
    default_name: &str,
    tune: impl FnOnce(&mut Config),
) -> Result<Node<R>, Failure> {
    let name = opts.name.clone().unwrap_or_else(|| format!("{default_name}-{}", std::process::id()));
    let mut cfg = Config::default();
    if let Some(n) = opts.max_connections {
        cfg.session.max_connections = n;
    }
    if let Some(ms) = opts.heartbeat_ms {
        cfg.session.heartbeat_interval = Duration::from_millis(ms);
        cfg.session.liveness_timeout = cfg.session.liveness_timeout.max(Duration::from_millis(ms * 3));
    }
    tune(&mut cfg);
    let mut b = Node::<R>::builder(&name).config(cfg);
    b = if opts.no_listen { b.no_listen() } else { b.bind(&opts.bind) };
    let node = b.build().await.map_err(|e| Failure::Failed(format!("cannot start node {name:?}: {e}")))?;
    match node.address() {
        Some(a) => eprintln!("estafeta: node {name} listening at {a}"),
        None => eprintln!("estafeta: node {name} not listening"),
    }
    for a in opts.discover_via.iter().filter(|a| !a.is_empty()) {
        node.discover_via(a).map_err(|e| Failure::Failed(format!("--discover-via {a}: {e}")))?;
    }
    Ok(node)
}

/// Dials every address, waiting for each handshake (the node keeps
/// redialing them afterwards).
pub async fn connect_all<R: Runtime>(node: &Node<R>, addrs: &[String], limit: Duration) -> Result<(), Failure> {
    for a in addrs.iter().filter(|a| !a.is_empty()) {
        match within::<R, _>(Some(limit), node.connect(a)).await {
            Some(Ok(peer)) => eprintln!("estafeta: connected to {peer} at {a}"),
            Some(Err(estafeta_driver::Error::ConnectFailed(_))) => {
                return Err(Failure::Unreachable(format!("could not connect to {a}")));
            }
            None => return Err(Failure::Unreachable(format!("could not connect to {a} within {limit:?}"))),
            Some(Err(e)) => return Err(Failure::Failed(format!("connect {a}: {e}"))),
        }
    }
    Ok(())
}

/// Sleeps on the runtime's timer.
pub async fn sleep<R: Runtime>(d: Duration) {
    let mut t = R::timer();
    let at = R::now() + d;
    t.reset(at);
    std::future::poll_fn(|cx| if R::now() >= at { Poll::Ready(()) } else { t.poll_fire(cx) }).await
}

/// Runs `fut` for at most `limit` (forever with `None`); `None` if time ran out.
pub async fn within<R: Runtime, F: Future>(limit: Option<Duration>, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let Some(limit) = limit else { return Some(fut.await) };
    let mut t = R::timer();
    let at = R::now() + limit;
    t.reset(at);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if R::now() >= at || t.poll_fire(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Seconds since the Unix epoch, for output lines.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
