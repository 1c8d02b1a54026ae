//! A new unit that fails to start is rolled back, in both swap modes: start-first never
//! touched the old unit, stop-first starts it again.

use crate::support::{Act, Harness, Script, rolled_back};
use swapvisor_actors::RunState;

#[tokio::test]
async fn a_start_first_start_failure_rolls_back_without_touching_the_old_unit() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let record = harness.reload(Script::new("v2").start(Act::Fail)).await;
    assert_eq!(rolled_back(&record.outcome), "v2 fails to start on purpose");
    assert_eq!(record.generation, 1);
    assert_eq!(harness.served().as_deref(), Some("v1"));
    // The failed unit was stopped; the old one never was.
    assert_eq!(
        harness.controls.journal(),
        [
            "build v1",
            "start v1",
            "build v2",
            "start v2 failed",
            "stop v2"
        ]
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn a_stop_first_start_failure_restarts_the_previous_unit() {
    let mut harness = Harness::serving(Script::new("v1").stop_first()).await;
    let record = harness
        .reload(Script::new("v2").stop_first().start(Act::Fail))
        .await;
    assert_eq!(rolled_back(&record.outcome), "v2 fails to start on purpose");
    assert_eq!(record.generation, 1);
    assert_eq!(harness.served().as_deref(), Some("v1"));
    assert_eq!(
        harness.controls.journal(),
        [
            "build v1",
            "start v1",
            "build v2",
            "stop v1",
            "start v2 failed",
            "stop v2",
            "start v1"
        ]
    );
    assert_eq!(harness.status().await.state, RunState::Running);
    harness.shutdown().await;
}
