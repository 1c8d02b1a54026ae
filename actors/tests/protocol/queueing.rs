//! The queue: requests coalesce by origin, and compare-and-swap is checked when a request's
//! turn comes.

use crate::support::{Act, Harness, Script};
use swapvisor_actors::{Origin, ReloadOutcome, RunState};

#[tokio::test]
async fn queued_requests_coalesce_by_origin_and_compare_and_swap_is_checked_in_turn() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    // Hold the first reload in its build, so that the others queue behind it.
    let first = harness.send(Script::new("v2").build(Act::Wait), Origin::Api, None);
    harness.controls.build_gate.arrived(1).await;
    assert_eq!(harness.status().await.state, RunState::Reloading);

    let mut watched = harness.send(Script::new("v3"), Origin::Watch, None);
    let signalled = harness.send(Script::new("v4"), Origin::Signal, None);
    let api = harness.send(Script::new("v5"), Origin::Api, None);
    let stale = harness.send(Script::new("v6"), Origin::Api, Some(1));
    // The signal replaced the queued watch request at once; the rest wait their turn.
    let status = harness.status().await;
    assert_eq!(status.queued, 3);
    let superseded = watched.try_answer().expect("answered at once");
    assert_eq!(superseded.outcome, ReloadOutcome::Superseded);
    // Status answers while the build is held.
    assert_eq!(status.generation, 1);

    harness.controls.build_gate.open_one();
    assert_eq!(
        first.answer().await.outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(
        signalled.answer().await.outcome,
        ReloadOutcome::Activated { generation: 3 }
    );
    assert_eq!(
        api.answer().await.outcome,
        ReloadOutcome::Activated { generation: 4 }
    );
    assert_eq!(
        stale.answer().await.outcome,
        ReloadOutcome::Conflict {
            expected: 1,
            current: 4
        }
    );
    assert_eq!(harness.served().as_deref(), Some("v5"));
    // v3 and v6 were never built.
    assert_eq!(
        harness.controls.entries("build "),
        ["build v1", "build v2", "build v4", "build v5"]
    );
    harness.shutdown().await;
}
