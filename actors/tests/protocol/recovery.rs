//! Recovery: a degraded slot is restored with backoff, and an escalation during probation
//! reverts to the previous spec.

use std::time::Duration;

use crate::support::{Act, Harness, Script};
use swapvisor_actors::{Origin, ReloadOutcome, RunState, SupervisorMsg};
use tokio::time::Instant;

/// The restore runs the last-known-good spec, which may swap start-first or stop-first: a
/// failed restore is retried with backoff either way, and only the restore that works is
/// recorded. (A start-first restore that failed once counted as a finished `rolled_back`
/// reload and was retried every 100 ms.)
#[tokio::test]
async fn a_stop_first_swap_that_cannot_restore_degrades_then_restores_with_backoff() {
    for live_stop_first in [true, false] {
        degrade_then_restore(live_stop_first).await;
    }
}

async fn degrade_then_restore(live_stop_first: bool) {
    let v1 = if live_stop_first {
        Script::new("v1").stop_first()
    } else {
        Script::new("v1")
    };
    let mut harness = Harness::serving(v1).await;
    harness.controls.refuse_starts("v1", true);
    let record = harness
        .reload(Script::new("v2").stop_first().start(Act::Fail))
        .await;
    match &record.outcome {
        ReloadOutcome::Degraded {
            error,
            restore_error,
        } => {
            assert_eq!(error, "v2 fails to start on purpose");
            assert_eq!(restore_error, "v1 is refused a start");
        }
        other => panic!("expected degraded, got {other:?}"),
    }
    assert_eq!(record.generation, 1);
    // Nothing serves, and callers are told so at once instead of waiting at the gate.
    let asked = Instant::now();
    assert!(harness.slot.acquire().await.is_err());
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(harness.status().await.state, RunState::Degraded);
    harness.next_outcome().await;

    // Restores of the last-known-good spec are retried while they fail...
    harness
        .wait_for_status("two failed restores", |s| s.restore_attempts >= 2)
        .await;
    assert_eq!(harness.status().await.state, RunState::Degraded);
    // ...and the first one that works brings the slot back, generation unchanged.
    harness.controls.refuse_starts("v1", false);
    let restored = harness.next_outcome().await;
    assert_eq!(restored.origin, Origin::Restore);
    assert_eq!(restored.outcome, ReloadOutcome::Restored { generation: 1 });
    assert_eq!(harness.served().as_deref(), Some("v1"));
    let status = harness.status().await;
    assert_eq!(
        (status.state, status.generation, status.restore_attempts),
        (RunState::Running, 1, 0)
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn an_escalation_during_probation_reverts_once_and_later_ones_are_only_recorded() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let record = harness
        .reload(Script::new("v2").probation(Duration::from_secs(60)))
        .await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    harness.next_outcome().await;

    let supervisor = harness.supervisor.clone();
    let escalate = move |reason: &str| {
        supervisor
            .send_message(SupervisorMsg::Escalate {
                reason: reason.to_owned(),
            })
            .expect("the Supervisor takes messages")
    };
    escalate("v2 crash-loops");
    let reverted = harness.next_outcome().await;
    assert_eq!(reverted.origin, Origin::Revert);
    assert_eq!(
        reverted.outcome,
        ReloadOutcome::Reverted {
            reason: "v2 crash-loops".to_owned()
        }
    );
    assert_eq!(reverted.generation, 3);
    assert_eq!(harness.served().as_deref(), Some("v1"));

    // A revert starts no probation of its own: the next escalation is only recorded.
    escalate("v1 crash-loops too");
    let status = harness.status().await;
    assert_eq!(status.generation, 3);
    assert_eq!(status.escalations, 2);
    assert_eq!(
        status.last_escalation.as_deref(),
        Some("v1 crash-loops too")
    );
    assert_eq!(status.history.len(), 3);
    assert_eq!(harness.served().as_deref(), Some("v1"));
    harness.shutdown().await;
}
