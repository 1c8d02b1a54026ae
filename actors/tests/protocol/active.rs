//! A dead Active: a new one takes over the live unit, and one that dies with nothing
//! published degrades the slot until it is restored.

use crate::support::{Act, Harness, Script, rolled_back};
use swapvisor_actors::{Origin, ReloadOutcome, RunState};

#[tokio::test]
async fn a_dead_active_is_replaced_over_the_live_unit() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let children = harness.supervisor.get_children();
    assert_eq!(children.len(), 1, "only the Active is a child when idle");
    let dead = children[0].get_id();
    children[0].kill();
    let replaced = |_: &swapvisor_actors::SupervisorStatus| {
        let children = harness.supervisor.get_children();
        children.len() == 1 && children[0].get_id() != dead
    };
    harness.wait_for_status("a new Active", replaced).await;
    // The live unit served throughout and was never stopped.
    assert_eq!(harness.served().as_deref(), Some("v1"));
    assert!(harness.controls.entries("stop ").is_empty());

    let record = harness.reload(Script::new("v2")).await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(harness.served().as_deref(), Some("v2"));
    harness.controls.wait_for("stop v1").await;
    harness.shutdown().await;
}

#[tokio::test]
async fn an_active_dying_in_a_stop_first_gap_degrades_and_the_slot_is_restored() {
    let mut harness = Harness::serving(Script::new("v1").stop_first()).await;
    let reload = harness.send(
        Script::new("v2").stop_first().start(Act::Wait),
        Origin::Api,
        None,
    );
    // v1 is stopped and v2 waits in its start: nothing is published.
    harness.controls.start_gate.arrived(1).await;
    assert_eq!(harness.served(), None);
    let active = harness.supervisor.get_children();
    assert_eq!(active.len(), 1);
    active[0].kill();

    let record = reload.answer().await;
    let error = rolled_back(&record.outcome);
    assert!(
        error.starts_with("the fake swap was interrupted"),
        "{error}"
    );
    assert_eq!(record.generation, 1);
    harness.next_outcome().await;
    let restored = harness.next_outcome().await;
    assert_eq!(restored.outcome, ReloadOutcome::Restored { generation: 1 });
    assert_eq!(harness.served().as_deref(), Some("v1"));
    assert_eq!(harness.status().await.state, RunState::Running);
    harness.shutdown().await;
}
