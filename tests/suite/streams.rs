//! Streams on real sockets, written once for every runtime: many streams on
//! one connection, a stalled stream beside a live one, every close code by
//! the situation that produces it (1006 by killing the producer, a child
//! process), a vanished consumer, deadlines, request/reply.

use super::child::{role, Child};
use super::util::{fast_config, node, sleep, wait_until};
use estafeta_driver::{
    CloseCode, Config, Error, Node, Runtime, StreamClosed, StreamOptions, StreamServer, StreamWriteError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A producer serving `topic` and a consumer connected to it, the topic known.
async fn pair<R: Runtime>(topic: &str, pcfg: Config) -> (Node<R>, StreamServer, Node<R>) {
    let p = node::<R>("producer", pcfg).await;
    let server = p.serve_streams(topic).unwrap();
    let c = node::<R>("consumer", fast_config()).await;
    c.connect(p.address().unwrap().to_string()).await.unwrap();
    c.wait_for_servers(topic, 1).await.unwrap();
    (p, server, c)
}

fn code(r: Option<Result<estafeta_driver::Bytes, StreamClosed>>) -> CloseCode {
    match r {
        Some(Err(c)) => c.code,
        other => panic!("expected an error item, got {other:?}"),
    }
}

pub async fn ten_thousand_concurrent_streams_share_one_connection<R: Runtime>() {
    const N: usize = 10_000;
    let (p, mut server, c) = pair::<R>("rows", fast_config()).await;
    let all_open = Arc::new(AtomicUsize::new(0));
    let seen = all_open.clone();
    let producer = p.clone();
    R::spawn(async move {
        // No reply before every stream is open at both ends.
        let mut held = Vec::with_capacity(N);
        while held.len() < N {
            let req = server.recv().await.unwrap();
            held.push((req.request, req.writer));
        }
        seen.store(producer.open_stream_counts().1, Ordering::SeqCst);
        for (req, mut w) in held {
            w.write(req).await.unwrap();
            w.close();
        }
    });
    let t = Instant::now();
    let mut streams: Vec<_> = (0..N as u32).map(|i| c.open_stream("rows", i.to_be_bytes().to_vec())).collect();
    assert_eq!(c.open_stream_counts().0, N, "all open at the consumer");
    for (i, s) in streams.iter_mut().enumerate() {
        let first = s.recv().await.expect("a reply").expect("not an error");
        assert_eq!(&first[..], &(i as u32).to_be_bytes());
        assert!(s.recv().await.is_none(), "a normal end after the reply");
    }
    let took = t.elapsed();
    let peak = all_open.load(Ordering::SeqCst);
    assert_eq!(peak, N, "all open at the producer at once");
    assert_eq!(c.peers().len(), 1);
    println!("STREAMS 10000 streams on one connection: {took:?}, peak {peak} open at once");
    wait_until::<R>(|| c.open_stream_counts() == (0, 0) && p.open_stream_counts() == (0, 0), "all streams ended").await;
}

pub async fn a_stalled_stream_does_not_stop_another_on_the_same_connection<R: Runtime>() {
    let (_p, mut server, c) = pair::<R>("feed", fast_config()).await;
    let stalled_writes = Arc::new(AtomicUsize::new(0));
    let count = stalled_writes.clone();
    R::spawn(async move {
        while let Some(req) = server.recv().await {
            let mut w = req.writer;
            let count = count.clone();
            R::spawn(async move {
                let chunk = vec![1u8; 1024];
                if &req.request[..] == b"stalled" {
                    while w.write(chunk.clone()).await.is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                } else {
                    for _ in 0..2000 {
                        w.write(chunk.clone()).await.unwrap();
                    }
                    w.close();
                }
            });
        }
    });
    let _stalled = c.open_stream("feed", "stalled");
    let mut live = c.open_stream("feed", "live");
    let mut got = 0;
    while let Some(item) = live.recv().await {
        got += item.unwrap().len();
    }
    // 2000 KiB went by while the other stream was full (its window held).
    assert_eq!(got, 2000 * 1024);
    // The stalled stream fills its window (sharing the connection fairly,
    // it may not have by the time the live one ended), and stops there.
    let window = Config::default().streams.window as usize;
    let filled = || stalled_writes.load(Ordering::SeqCst) >= window / 1040 - 1;
    wait_until::<R>(filled, "the stalled producer filled its window").await;
    sleep::<R>(Duration::from_millis(200)).await;
    let held = stalled_writes.load(Ordering::SeqCst);
    assert!(held <= window / 1040 + 1, "the stalled producer wrote {held} messages, past its window");
}

pub async fn normal_end_no_server_bad_request_and_limits_have_their_codes<R: Runtime>() {
    let mut pcfg = fast_config();
    pcfg.streams.max_served_per_peer = 1;
    let (_p, mut server, c) = pair::<R>("jobs", pcfg).await;
    // 1000: the producer closes; the stream ends without an error item.
    let mut s = c.open_stream("jobs", "one");
    let req = server.recv().await.unwrap();
    let mut w = req.writer;
    w.write("reply").await.unwrap();
    w.close();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"reply");
    assert!(s.recv().await.is_none());
    assert_eq!(s.end().unwrap().code, CloseCode::NORMAL);
    // 4000: nobody serves the topic; a request over max_request_size.
    let mut s = c.open_stream("nobody", "x");
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e.code, CloseCode::BAD_REQUEST);
    assert!(e.text.contains("no connected peer serves"), "{e}");
    assert_eq!(code(c.open_stream("jobs", vec![0u8; 65 << 10]).recv().await), CloseCode::BAD_REQUEST);
    // 1013: over the producer's concurrent-stream limit.
    let _held = c.open_stream("jobs", "held");
    let _req = server.recv().await.unwrap();
    let e = c.open_stream("jobs", "over").recv().await.unwrap().unwrap_err();
    assert_eq!(e.code, CloseCode::TRY_AGAIN_LATER);
    assert!(e.text.contains("too many concurrent streams"), "{e}");
}

pub async fn a_failed_or_panicking_handler_ends_the_stream_with_5000<R: Runtime>() {
    let (_p, mut server, c) = pair::<R>("jobs", fast_config()).await;
    // The handler returns early with an error: its writer is dropped.
    let mut s = c.open_stream("jobs", "fails");
    let req = server.recv().await.unwrap();
    let handler = |w: estafeta_driver::Writer| -> Result<(), String> {
        let _w = w;
        Err("database down".into())
    };
    assert!(handler(req.writer).is_err());
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e.code, CloseCode::INTERNAL_ERROR);
    // The handler panics while holding its writer.
    let mut s = c.open_stream("jobs", "panics");
    let req = server.recv().await.unwrap();
    let w = req.writer;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _w = w;
        panic!("handler bug");
    }));
    assert!(r.is_err());
    assert_eq!(code(s.recv().await), CloseCode::INTERNAL_ERROR);
    // An explicit close_with_code carries the handler's text.
    let mut s = c.open_stream("jobs", "explicit");
    server.recv().await.unwrap().writer.close_with_code(CloseCode::INTERNAL_ERROR, "disk full");
    assert_eq!(s.recv().await.unwrap().unwrap_err().text, "disk full");
}

pub async fn cancel_undecodable_data_and_deadline_reach_the_producer<R: Runtime>() {
    let (_p, mut server, c) = pair::<R>("jobs", fast_config()).await;
    // 4001: the consumer drops its stream; the producer's next write fails.
    let s = c.open_stream("jobs", "dropped");
    let mut w = server.recv().await.unwrap().writer;
    w.write("first").await.unwrap();
    drop(s);
    let e = write_until_error::<R>(&mut w).await;
    assert!(matches!(&e, StreamWriteError::Cancelled(c) if c.code == CloseCode::CANCELLED), "{e:?}");
    // 1003: a reply that does not decode as the consumer's type.
    let mut typed = c.open_stream_typed::<_, (u64, String)>("jobs", &7u32, StreamOptions::default()).unwrap();
    let req = server.recv().await.unwrap();
    assert_eq!(req.decode::<u32>().unwrap(), 7);
    let mut w = req.writer;
    w.write_value(&(1u64, "ok".to_string())).await.unwrap();
    w.write(vec![0xFF; 3]).await.unwrap();
    assert_eq!(typed.recv().await.unwrap().unwrap(), (1, "ok".to_string()));
    assert_eq!(typed.recv().await.unwrap().unwrap_err().code, CloseCode::UNSUPPORTED_DATA);
    assert!(typed.recv().await.is_none());
    let e = write_until_error::<R>(&mut w).await;
    assert!(matches!(&e, StreamWriteError::Cancelled(c) if c.code == CloseCode::UNSUPPORTED_DATA), "{e:?}");
    // 4008: the deadline passes; the consumer says so, the producer learns
    // it was cancelled.
    let t = Instant::now();
    let opts = StreamOptions { to: None, deadline: Some(Duration::from_millis(150)) };
    let mut s = c.open_stream_with("jobs", "slow", opts);
    let req = server.recv().await.unwrap();
    assert!(req.deadline.is_some_and(|d| d <= Duration::from_millis(150)));
    let mut w = req.writer;
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e.code, CloseCode::DEADLINE_EXCEEDED);
    assert!(t.elapsed() >= Duration::from_millis(140), "not before the deadline");
    let e = write_until_error::<R>(&mut w).await;
    assert!(matches!(&e, StreamWriteError::Cancelled(c) if c.code == CloseCode::DEADLINE_EXCEEDED), "{e:?}");
}

/// Writes until a write fails (the cancel is on its way), within 5 s.
async fn write_until_error<R: Runtime>(w: &mut estafeta_driver::Writer) -> StreamWriteError {
    for _ in 0..500 {
        match w.try_write("more") {
            Ok(()) | Err(StreamWriteError::Full) => sleep::<R>(Duration::from_millis(10)).await,
            Err(e) => return e,
        }
    }
    panic!("writes kept succeeding");
}

pub async fn request_returns_the_single_reply_or_times_out<R: Runtime>() {
    let (_p, mut server, c) = pair::<R>("echo", fast_config()).await;
    R::spawn(async move {
        while let Some(req) = server.recv().await {
            let mut w = req.writer;
            if &req.request[..] != b"ignore me" {
                w.write(req.request).await.unwrap();
                w.close();
            } else {
                // Hold the writer past the deadline, then drop it.
                std::mem::forget(w);
            }
        }
    });
    let reply = c.request("echo", "ping", Duration::from_secs(5)).await.unwrap();
    assert_eq!(&reply[..], b"ping");
    match c.request("echo", "ignore me", Duration::from_millis(100)).await {
        Err(Error::Stream(e)) => assert_eq!(e.code, CloseCode::DEADLINE_EXCEEDED),
        other => panic!("{other:?}"),
    }
    match c.request("nobody", "x", Duration::from_secs(1)).await {
        Err(Error::Stream(e)) => assert_eq!(e.code, CloseCode::BAD_REQUEST),
        other => panic!("{other:?}"),
    }
}

pub async fn closing_the_producer_ends_its_streams_with_1001<R: Runtime>() {
    let (p, mut server, c) = pair::<R>("jobs", fast_config()).await;
    let mut s = c.open_stream("jobs", "x");
    let mut w = server.recv().await.unwrap().writer;
    w.write("one").await.unwrap();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"one");
    p.close().await;
    assert_eq!(code(s.recv().await), CloseCode::GOING_AWAY);
    assert!(matches!(w.try_write("late"), Err(StreamWriteError::Closed(c)) if c.code == CloseCode::GOING_AWAY));
}

/// 1006: the producer is a child process killed with SIGKILL mid-stream.
pub async fn a_killed_producer_ends_its_streams_with_1006<R: Runtime>() {
    if role().as_deref() == Some("producer") {
        let p = node::<R>("producer", fast_config()).await;
        let mut server = p.serve_streams("logs").unwrap();
        println!("ADDR {}", p.address().unwrap());
        while let Some(req) = server.recv().await {
            let mut w = req.writer;
            for i in 0u64.. {
                if w.write(i.to_be_bytes().to_vec()).await.is_err() {
                    break;
                }
                sleep::<R>(Duration::from_millis(10)).await;
            }
        }
        return;
    }
    let mut child = Child::spawn("a_killed_producer_ends_its_streams_with_1006", "producer", &[]);
    let addr = child.wait_line::<R>("ADDR ", Duration::from_secs(20)).await;
    let c = node::<R>("consumer", fast_config()).await;
    c.connect(addr.trim()).await.unwrap();
    c.wait_for_servers("logs", 1).await.unwrap();
    let mut s = c.open_stream("logs", "tail");
    for _ in 0..3 {
        s.recv().await.unwrap().unwrap();
    }
    assert!(child.kill(), "the producer died of SIGKILL");
    let e = loop {
        match s.recv().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("a killed producer is not a normal end"),
        }
    };
    assert_eq!(e.code, CloseCode::ABNORMAL, "{e}");
    assert_eq!(c.open_stream_counts(), (0, 0));
}

/// A consumer process that disappears mid-stream frees the producer's
/// stream once its session ends: the liveness timeout (here the kernel
/// resets the socket at once) suspends it, and `resume_window` later the
/// session ends with 1006.
pub async fn a_vanished_consumer_frees_the_producers_stream<R: Runtime>() {
    let producer_config = || {
        let mut c = fast_config();
        c.session.resume_window = Duration::from_millis(400);
        c
    };
    if role().as_deref() == Some("consumer") {
        let addr = std::env::var("PRODUCER_ADDR").unwrap();
        let c = node::<R>("consumer", fast_config()).await;
        c.connect(addr).await.unwrap();
        c.wait_for_servers("logs", 1).await.unwrap();
        let mut s = c.open_stream("logs", "tail");
        s.recv().await.unwrap().unwrap();
        println!("READING");
        // Stop reading: the producer's window fills, then the process dies.
        sleep::<R>(Duration::from_secs(60)).await;
        return;
    }
    let (p, mut server) = {
        let p = node::<R>("producer", producer_config()).await;
        let s = p.serve_streams("logs").unwrap();
        (p, s)
    };
    let addr = p.address().unwrap().to_string();
    let mut child =
        Child::spawn("a_vanished_consumer_frees_the_producers_stream", "consumer", &[("PRODUCER_ADDR", &addr)]);
    let mut w = server.recv().await.unwrap().writer;
    w.write("first").await.unwrap();
    child.wait_line::<R>("READING", Duration::from_secs(20)).await;
    assert_eq!(p.open_stream_counts(), (0, 1));
    assert!(child.kill());
    let t = Instant::now();
    let e = loop {
        match w.write(vec![0u8; 1000]).await {
            Ok(()) => continue,
            Err(e) => break e,
        }
    };
    let c = producer_config();
    let bound = c.session.liveness_timeout + c.session.resume_window + c.streams.heartbeat_interval;
    assert!(t.elapsed() < bound, "freed after {:?}", t.elapsed());
    assert!(matches!(&e, StreamWriteError::Closed(c) if c.code == CloseCode::ABNORMAL), "{e:?}");
    assert_eq!(p.open_stream_counts(), (0, 0));
}
