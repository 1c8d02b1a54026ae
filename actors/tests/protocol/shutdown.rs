//! Shutdown: what waits is superseded, a swap under way finishes and is answered truthfully,
//! and the live unit is stopped.

use crate::support::{Act, Harness, Script};
use swapvisor_actors::{Origin, ReloadOutcome, ReloadRequest, SupervisorMsg};

#[tokio::test]
async fn a_shutdown_during_a_build_supersedes_what_waits_and_stops_the_live_unit() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let building = harness.send(Script::new("v2").build(Act::Wait), Origin::Api, None);
    harness.controls.build_gate.arrived(1).await;
    let queued = harness.send(Script::new("v3"), Origin::Api, None);
    harness.shutdown().await;
    assert_eq!(building.answer().await.outcome, ReloadOutcome::Superseded);
    assert_eq!(queued.answer().await.outcome, ReloadOutcome::Superseded);
    assert_eq!(harness.served(), None);
    assert_eq!(
        harness.controls.journal(),
        ["build v1", "start v1", "stop v1"]
    );
}

#[tokio::test]
async fn a_shutdown_during_a_swap_lets_the_swap_finish_and_answers_it_truthfully() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let swapping = harness.send(Script::new("v2").start(Act::Wait), Origin::Api, None);
    harness.controls.start_gate.arrived(1).await;
    let (reply, shutdown) = swapvisor_actors::ractor::concurrency::oneshot();
    harness
        .supervisor
        .send_message(SupervisorMsg::Shutdown(reply.into()))
        .expect("the Supervisor takes messages");
    // The Supervisor is leaving: a reload sent after the shutdown is refused.
    let late = harness.request(ReloadRequest::new(Script::new("v3"))).await;
    assert_eq!(late.outcome, ReloadOutcome::Superseded);
    harness.controls.start_gate.open_one();
    assert_eq!(
        swapping.answer().await.outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    shutdown.await.expect("answered");
    harness.wait_exited().await;
    let mut stops = harness.controls.entries("stop ");
    stops.sort();
    assert_eq!(stops, ["stop v1", "stop v2"]);
}
