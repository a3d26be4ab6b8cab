//! `estafeta request` and `estafeta serve`: streams from a shell. `serve`
//! answers each request by running a command and streaming its stdout
//! lines back; `request` prints the replies and exits with the stream's
//! close code in mind (0 for 1000, 5 otherwise, the code on stderr).

use crate::args::{RequestCmd, ServeCmd};
use crate::common::{start, within, Failure};
use crate::pubsub_cmd::hex;
use estafeta_driver::{CloseCode, Node, Runtime, StreamOptions, StreamRequest, StreamWriteError};
use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};

/// Opens one stream and prints its replies until it ends.
pub async fn request<R: Runtime>(cmd: RequestCmd) -> Result<(), Failure> {
    let node = start::<R>(&cmd.node, "request").await?;
    let payload = match &cmd.payload {
        Some(p) => p.clone().into_bytes(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| Failure::Failed(format!("reading stdin: {e}")))?;
            buf
        }
    };
    if cmd.to.is_none() && within::<R, _>(Some(cmd.wait_timeout), node.wait_for_servers(&cmd.topic, 1)).await.is_none()
    {
        node.close().await;
        return Err(Failure::TimedOut(format!("no peer serves {:?} within {:?}", cmd.topic, cmd.wait_timeout)));
    }
    let opts = StreamOptions { to: cmd.to.as_deref().map(Into::into), deadline: cmd.deadline };
    let mut replies = node.open_stream_with(&cmd.topic, payload, opts);
    let mut out = std::io::stdout().lock();
    let mut failure = None;
    while let Some(item) = replies.recv().await {
        match item {
            Ok(b) => {
                let line = if cmd.hex { hex(&b) } else { String::from_utf8_lossy(&b).into_owned() };
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    break; // stdout closed: dropping the stream cancels it
                }
            }
            Err(closed) => {
                failure = Some(Failure::StreamClosed(closed.code.0, closed.text));
            }
        }
    }
    drop(out);
    drop(replies);
    node.close().await;
    failure.map_or(Ok(()), Err)
}

/// Serves a topic: each request runs the command (request on its stdin,
/// `ESTAFETA_PEER` and `ESTAFETA_TOPIC` in its environment) and its stdout
/// lines are the replies. Exit 0 closes the stream with 1000, any other
/// exit with 5000 and the status; a consumer that cancels kills the command.
pub async fn serve<R: Runtime>(cmd: ServeCmd) -> Result<(), Failure> {
    if cmd.command.is_empty() {
        return Err(Failure::Failed("serve needs a command after --".into()));
    }
    let node = start::<R>(&cmd.node, "serve").await?;
    let mut server = node.serve_streams(&cmd.topic)?;
    eprintln!("estafeta: serving streams on {:?}", cmd.topic);
    let mut served = 0u64;
    while cmd.max_requests.is_none_or(|n| served < n) {
        let Some(req) = server.recv().await else { break };
        served += 1;
        let command = cmd.command.clone();
        let last = cmd.max_requests == Some(served);
        if last {
            // Serve the last one here, so the node stays up until it is done.
            answer(req, command).await;
        } else {
            R::spawn(answer(req, command));
        }
    }
    drop(server);
    close_when_idle(&node).await;
    Ok(())
}

/// Closes the node once no stream it serves is still open.
async fn close_when_idle<R: Runtime>(node: &Node<R>) {
    for _ in 0..500 {
        if node.open_stream_counts() == (0, 0) {
            break;
        }
        crate::common::sleep::<R>(std::time::Duration::from_millis(10)).await;
    }
    node.close().await;
}

/// Runs `command` for one request and streams its stdout lines back.
async fn answer(req: StreamRequest, command: Vec<String>) {
    let StreamRequest { peer, topic, request, mut writer, .. } = req;
    let child = Command::new(&command[0])
        .args(&command[1..])
        .env("ESTAFETA_PEER", peer.name.as_ref())
        .env("ESTAFETA_TOPIC", topic.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            writer.close_with_code(CloseCode::INTERNAL_ERROR, &format!("cannot run {:?}: {e}", command[0]));
            return;
        }
    };
    // Feed the request and read the lines on threads: neither may block the runtime.
    let mut stdin = child.stdin.take().expect("piped stdin");
    std::thread::spawn(move || {
        let _ = stdin.write_all(&request);
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = smol::channel::bounded::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send_blocking(line).is_err() {
                break;
            }
        }
    });
    while let Ok(line) = rx.recv().await {
        match writer.write(line.into_bytes()).await {
            Ok(()) => {}
            Err(StreamWriteError::Cancelled(_) | StreamWriteError::Closed(_)) => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                writer.close_with_code(CloseCode::INTERNAL_ERROR, &format!("cannot send a line: {e}"));
                return;
            }
        }
    }
    match child.wait() {
        Ok(s) if s.success() => writer.close(),
        Ok(s) => writer.close_with_code(CloseCode::INTERNAL_ERROR, &format!("command exited with {s}")),
        Err(e) => writer.close_with_code(CloseCode::INTERNAL_ERROR, &format!("waiting for the command: {e}")),
    }
}
