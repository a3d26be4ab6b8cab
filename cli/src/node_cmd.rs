//! `estafeta node`: a node that prints what happens to it.

use crate::args::NodeCmd;
use crate::common::{build_with, connect_all, within, Failure};
use estafeta_driver::{
    DialEvent, DiscoveryEvent, Event, PubSubEvent, Runtime, SessionEvent, StreamEvent, TransferEvent,
};

/// Runs the node until `--duration` passes (or forever), printing one line
/// per lifecycle event on stdout.
pub async fn run<R: Runtime>(cmd: NodeCmd) -> Result<(), Failure> {
    let tune = |c: &mut estafeta_driver::Config| {
        if let Some(limit) = cmd.root {
            c.discovery.root = true;
            c.discovery.root_max_connections = limit;
        }
        c.discovery.drop_root_when_paired |= cmd.drop_root_when_paired;
    };
    let node = build_with::<R>(&cmd.node, "node", tune).await?;
    // Events from before the first dial on.
    let mut events = node.events();
    // Subscriptions whose messages are only counted (the stream keeps the topic subscribed).
    let mut subs = Vec::new();
    for t in &cmd.subscribe {
        subs.push(node.subscribe(t)?);
    }
    for t in &cmd.relay {
        subs.push(node.subscribe_relay(t)?);
    }
    connect_all(&node, &cmd.node.connect, cmd.node.connect_timeout).await?;
    let print = async {
        while let Some(ev) = events.recv().await {
            if let Some(line) = describe(&ev) {
                println!("{line}");
            }
            for s in &mut subs {
                while s.try_next().is_some() {}
            }
        }
    };
    within::<R, _>(cmd.duration, print).await;
    node.close().await;
    Ok(())
}

/// One line for a lifecycle event; `None` for messages.
fn describe(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::PeerUp { peer, authenticated: true, .. } => format!("peer up {peer}"),
        Event::PeerUp { peer, authenticated: false, .. } => format!("peer up {peer} (not authenticated)"),
        Event::Refused { code, reason, .. } => format!("refused by the peer: {}: {reason}", code.0),
        Event::PeerDown { peer, reason } => format!("peer down {peer}: {reason}"),
        Event::ProtocolViolation { peer, error, .. } => match peer {
            Some(p) => format!("refused {p}: {error}"),
            None => format!("refused a connection: {error}"),
        },
        Event::Dial(DialEvent::Connected { peer, .. }) => format!("connected {peer}"),
        Event::Dial(DialEvent::Failed { addr, reason, retry_in, .. }) => match retry_in {
            Some(d) => format!("dial {addr} failed: {reason}; retry in {d:?}"),
            None => format!("dial {addr} failed: {reason}"),
        },
        Event::Dial(DialEvent::GaveUp { addr, .. }) => format!("gave up on {addr}"),
        Event::PubSub(PubSubEvent::Subscribed { peer, topic }) => format!("{peer} subscribed to {topic}"),
        Event::PubSub(PubSubEvent::Unsubscribed { peer, topic }) => format!("{peer} unsubscribed from {topic}"),
        Event::PubSub(PubSubEvent::Dropped { peer, count, reason }) => match peer {
            Some(p) => format!("dropped {count} messages for {p}: {reason:?}"),
            None => format!("dropped {count} messages: {reason:?}"),
        },
        Event::PubSub(PubSubEvent::Overwritten { peer, topic, count, .. }) => {
            format!("overwrote {count} queued messages on {topic} for {peer} with newer ones")
        }
        Event::PubSub(PubSubEvent::Skipped { peer, topic, count, .. }) => {
            format!("{peer} overwrote {count} messages on {topic} before sending them")
        }
        Event::PubSub(PubSubEvent::Message(_) | PubSubEvent::Messages(_) | PubSubEvent::Writable) => return None,
        Event::Stream(StreamEvent::Serving { peer, topic, serving: true }) => {
            format!("{peer} serves streams on {topic}")
        }
        Event::Stream(StreamEvent::Serving { peer, topic, serving: false }) => {
            format!("{peer} no longer serves streams on {topic}")
        }
        // Streams this node opens or serves belong to their own commands.
        Event::Stream(
            StreamEvent::Request { .. }
            | StreamEvent::Data { .. }
            | StreamEvent::Closed { .. }
            | StreamEvent::Writable { .. },
        ) => return None,
        Event::Membership(m) => crate::membership_cmd::describe(m),
        // Files belong to send-file and receive-files; a node only says what arrived.
        Event::Transfer(TransferEvent::Received(r)) => format!("received file {} from {}", r.path.display(), r.peer),
        Event::Transfer(TransferEvent::Failed { peer, reason, .. }) => {
            format!("file transfer with {peer} failed: {reason}")
        }
        Event::Transfer(
            TransferEvent::Offered(_)
            | TransferEvent::Started { .. }
            | TransferEvent::Progress { .. }
            | TransferEvent::Delivered { .. },
        ) => return None,
        Event::Discovery(DiscoveryEvent::Paired { topic }) => format!("paired on {topic}"),
        Event::Discovery(DiscoveryEvent::Unpaired { topic }) => format!("unpaired on {topic}"),
        Event::Discovery(DiscoveryEvent::RelayLost { topic, origin, count, reason }) => {
            format!("lost {count} relayed messages of {origin} on {topic}: {reason:?}")
        }
        Event::Discovery(DiscoveryEvent::DialFailed { addr, reason }) => format!("could not dial {addr}: {reason}"),
        Event::Session(SessionEvent::Suspended { peer, reason }) => {
            format!("{peer}: connection lost ({reason}), session suspended")
        }
        Event::Session(SessionEvent::Resumed { peer, resent }) => format!("{peer}: session resumed ({resent} re-sent)"),
        Event::Session(SessionEvent::Ended { peer, reason, unacked, unsent, .. }) => {
            format!("{peer}: session ended ({reason}); unacknowledged {unacked:?}, {unsent} unsent")
        }
        Event::Closed => "closed".to_string(),
    })
}
