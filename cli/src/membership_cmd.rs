//! `estafeta coordinator` and `estafeta member`: groups from a shell, what
//! the `bloc` seed's server and client did, with leases.

use crate::args::{CoordinatorCmd, MemberCmd};
use crate::common::{build_with, connect_all, start, within, Failure};
use estafeta_driver::{Event, MembershipEvent, Runtime};

/// Runs a coordinator, printing members joining and leaving and groups
/// settling, until `--duration` passes (or forever).
pub async fn coordinator<R: Runtime>(cmd: CoordinatorCmd) -> Result<(), Failure> {
    let tune = |c: &mut estafeta_driver::Config| {
        c.membership.coordinator = true;
        if let Some(s) = cmd.settle {
            c.membership.settle = s;
        }
    };
    let node = build_with::<R>(&cmd.node, "coordinator", tune).await?;
    let mut events = node.events();
    connect_all(&node, &cmd.node.connect, cmd.node.connect_timeout).await?;
    let print = async {
        while let Some(ev) = events.recv().await {
            if let Event::Membership(m) = &ev {
                println!("{}", describe(m));
            }
        }
    };
    within::<R, _>(cmd.duration, print).await;
    node.close().await;
    Ok(())
}

/// Joins a group and prints the assignment each time it changes: `index=I
/// total=T epoch=E`, or `none (settling)` / `none (lease lost)`.
pub async fn member<R: Runtime>(cmd: MemberCmd) -> Result<(), Failure> {
    let node = start::<R>(&cmd.node, "member").await?;
    let mut member = node.join(&cmd.group, &cmd.coordinator)?;
    let mut refused = None;
    let print = async {
        while let Some(change) = member.next_change().await {
            println!("{}", describe(&change));
            if let MembershipEvent::Refused { reason, .. } = change {
                refused = Some(reason.to_string());
                break;
            }
        }
    };
    within::<R, _>(cmd.duration, print).await;
    drop(member); // leaves the group; the Leave goes out before the goodbye
    node.close().await;
    match refused {
        Some(reason) => {
            Err(Failure::Failed(format!("the coordinator refused to add this node to {:?}: {reason}", cmd.group)))
        }
        None => Ok(()),
    }
}

/// One line for a membership event.
pub fn describe(m: &MembershipEvent) -> String {
    match m {
        MembershipEvent::Assigned { group, assignment: a } => {
            format!("{group}: index={} total={} epoch={}", a.index, a.total, a.epoch)
        }
        MembershipEvent::Settling { group } => format!("{group}: none (settling)"),
        MembershipEvent::LeaseLost { group } => format!("{group}: none (lease lost)"),
        MembershipEvent::Refused { group, reason } => format!("{group}: refused: {reason}"),
        MembershipEvent::MemberJoined { group, member } => format!("{group}: member {member} joined"),
        MembershipEvent::MemberLeft { group, member, reason } => format!("{group}: member {member} left ({reason:?})"),
        MembershipEvent::Settled { group, epoch, total } => format!("{group}: settled epoch={epoch} total={total}"),
    }
}
