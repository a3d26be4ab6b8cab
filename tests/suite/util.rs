//! Runtime-agnostic test helpers: sleep, timeout, join, collect.

use estafeta_driver::{Config, Message, Node, Runtime, Subscription, Timer};
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Timers short enough for tests; limits at their defaults.
pub fn fast_config() -> Config {
    let mut c = Config::default();
    c.session.heartbeat_interval = Duration::from_millis(100);
    c.session.liveness_timeout = Duration::from_millis(500);
    c.session.handshake_timeout = Duration::from_millis(500);
    c.dialer.reconnect_base = Duration::from_millis(20);
    c.dialer.reconnect_cap = Duration::from_millis(300);
    c
}

/// `fast_config` in the plaintext mode: for tests whose peer is hand-made
/// (fake peers write plaintext frames).
pub fn plain_config() -> Config {
    let mut c = fast_config();
    c.security.mode = estafeta_driver::SecurityMode::Plaintext;
    c
}

pub async fn node<R: Runtime>(name: &str, cfg: Config) -> Node<R> {
    Node::<R>::builder(name).config(cfg).build().await.expect("node starts")
}

pub async fn sleep<R: Runtime>(d: Duration) {
    let mut t = R::timer();
    let at = R::now() + d;
    t.reset(at);
    std::future::poll_fn(|cx| if R::now() >= at { Poll::Ready(()) } else { t.poll_fire(cx) }).await
}

/// How long one suite test may take: 60 s, or `ESTAFETA_TEST_LIMIT_S`
/// (for the 1 GiB transfer run, `ESTAFETA_BIG_FILE_MIB=1024`).
pub fn test_limit() -> Duration {
    let s = std::env::var("ESTAFETA_TEST_LIMIT_S").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    Duration::from_secs(s)
}

/// Runs `fut`, panicking if it takes longer than `limit`.
pub async fn within<R: Runtime, F: Future>(limit: Duration, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut t = R::timer();
    t.reset(R::now() + limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        if t.poll_fire(cx).is_ready() {
            panic!("test did not finish within {limit:?}");
        }
        Poll::Pending
    })
    .await
}

/// Runs two futures concurrently on the current task.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Receives until the stream stays quiet for `quiet`.
pub async fn collect(sub: &mut Subscription, quiet: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let mut t = estafeta_driver_timer(quiet);
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(m) = std::pin::Pin::new(&mut *sub).poll_next_msg(cx) {
                return Poll::Ready(m);
            }
            if t.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match next {
            Some(m) => out.push(m),
            None => return out,
        }
    }
}

/// A quiet-period timer that needs no runtime (a thread sleeps, then wakes).
fn estafeta_driver_timer(d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    let done = std::sync::Arc::new(std::sync::Mutex::new((false, None::<std::task::Waker>)));
    let d2 = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let mut g = d2.lock().unwrap();
        g.0 = true;
        if let Some(w) = g.1.take() {
            w.wake();
        }
    });
    Box::pin(std::future::poll_fn(move |cx| {
        let mut g = done.lock().unwrap();
        if g.0 {
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }))
}

trait PollNextMsg {
    fn poll_next_msg(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Message>>;
}

impl PollNextMsg for Subscription {
    fn poll_next_msg(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Message>> {
        futures_core::Stream::poll_next(self, cx)
    }
}

/// Polls `pred` every 10 ms for up to 10 s.
pub async fn wait_until<R: Runtime>(mut pred: impl FnMut() -> bool, what: &str) {
    for _ in 0..1000 {
        if pred() {
            return;
        }
        sleep::<R>(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// True in a child process started to run only test `name`: a test that
/// measures the process (its resident memory) runs there, alone. In the
/// parent, runs that child, checks that it ran `name` and passed, and
/// returns false.
pub fn isolated(name: &str) -> bool {
    const VAR: &str = "ESTAFETA_ISOLATED_TEST";
    if std::env::var(VAR).is_ok_and(|v| v == name) {
        return true;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(VAR, name)
        .output()
        .expect("child test runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "isolated run of {name} failed:\n{text}");
    print!("{text}");
    false
}

/// This process's resident memory, in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()).unwrap_or(0) * 4096
}
