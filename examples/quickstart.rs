//! Quickstart: three nodes on loopback exchange messages in all three send
//! modes, with typed payloads and replies to the sender.
//!
//! Run: `cargo run --example quickstart`

use estafeta::tokio::Node;
use estafeta::{MessageExt, PeerInfo};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Job {
    id: u32,
    work: String,
}

#[tokio::main]
async fn main() -> Result<(), estafeta::Error> {
    // Two workers listen on ephemeral ports and subscribe to topics.
    let w1 = Node::builder("worker-1").build().await?;
    let w2 = Node::builder("worker-2").build().await?;
    let mut news1 = w1.subscribe("news")?;
    let mut news2 = w2.subscribe("news")?;
    let mut jobs1 = w1.subscribe("jobs")?;
    let mut jobs2 = w2.subscribe("jobs")?;

    // The boss connects to both (and would reconnect on its own if they restarted).
    let boss = Node::builder("boss").build().await?;
    let mut replies = boss.subscribe("replies")?;
    for w in [&w1, &w2] {
        let addr = w.address().expect("listening").to_string();
        let peer: PeerInfo = boss.connect(&addr).await?;
        println!("boss connected to {peer} at {addr}");
    }
    // Publish only once both workers' subscriptions have arrived: no slow joiner.
    boss.wait_for_subscribers("news", 2).await?;
    boss.wait_for_subscribers("jobs", 2).await?;

    // 1. To every subscriber.
    boss.publish("news", "the office is open").await?;
    for sub in [&mut news1, &mut news2] {
        let m = sub.recv().await.expect("node open");
        println!("{} <- {}: {:?}", m.topic, m.from.name, String::from_utf8_lossy(&m.payload));
    }

    // 2. Round-robin: each job goes to one worker, taking turns.
    for id in 0..4 {
        let job = Job { id, work: format!("task #{id}") };
        boss.publish_value_with::<estafeta::Postcard, _>("jobs", &job, estafeta::SendMode::RoundRobin).await?;
    }
    for (name, sub) in [("worker-1", &mut jobs1), ("worker-2", &mut jobs2)] {
        for _ in 0..2 {
            let m = sub.recv().await.expect("node open");
            let job: Job = m.decode()?;
            println!("{name} got {job:?} from {}", m.from.name);
            // 3. Reply to exactly the sender, by its id.
            let worker = if name == "worker-1" { &w1 } else { &w2 };
            worker.wait_for_subscribers("replies", 1).await?;
            worker.send_to(m.from.id, "replies", format!("{name} finished job {}", job.id)).await?;
        }
    }
    for _ in 0..4 {
        let m = replies.recv().await.expect("node open");
        println!("boss <- {}: {}", m.from.name, String::from_utf8_lossy(&m.payload));
    }

    // Sending to a peer that is not connected is an error, never a silent drop.
    match boss.send_to("nobody", "news", "hello?").await {
        Err(e) => println!("send to an unknown peer: {e}"),
        Ok(_) => unreachable!("there is no peer called nobody"),
    }

    println!("boss stats: {:?}", boss.stats());
    boss.close().await;
    w1.close().await;
    w2.close().await;
    Ok(())
}
