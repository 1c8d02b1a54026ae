//! Two-phase reloads: a prepared unit is held built, activated by its commit like any
//! reload, and dropped by an abort, its expiry or a shutdown.

use std::time::Duration;

use crate::support::{Act, Harness, Script, rejected_at_build, rolled_back};
use swapvisor_actors::ractor::call;
use swapvisor_actors::{CommitRequest, Origin, Prepared, ReloadOutcome, Stage, SupervisorMsg};

async fn prepare(
    harness: &Harness,
    script: Script,
    hold_for: Duration,
) -> Result<Prepared<String>, swapvisor_actors::BuildFailure> {
    call!(
        harness.supervisor,
        SupervisorMsg::Prepare,
        std::sync::Arc::new(script),
        hold_for
    )
    .expect("answers")
}

async fn commit(harness: &Harness, request: CommitRequest) -> ReloadOutcome {
    call!(harness.supervisor, SupervisorMsg::Commit, request)
        .expect("answers")
        .outcome
}

#[tokio::test]
async fn a_prepared_unit_is_held_built_and_activated_by_its_commit_without_building_again() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let prepared = prepare(&harness, Script::new("v2"), Duration::from_secs(60))
        .await
        .expect("v2 builds");
    assert_eq!(
        (prepared.fingerprint.as_str(), prepared.summary.as_str()),
        ("v2", "v2 builds")
    );
    // Held, and nothing touched: v1 serves, v2 never started.
    let status = harness.status().await;
    assert_eq!((status.generation, status.prepared), (1, 1));
    assert_eq!(harness.served().as_deref(), Some("v1"));
    assert!(harness.controls.entries("start v2").is_empty());

    let outcome = commit(&harness, CommitRequest::new(prepared.ticket)).await;
    assert_eq!(outcome, ReloadOutcome::Activated { generation: 2 });
    assert_eq!(harness.served().as_deref(), Some("v2"));
    // Built once, by the prepare.
    assert_eq!(harness.controls.entries("build v2"), ["build v2"]);
    let status = harness.status().await;
    assert_eq!(status.prepared, 0);
    let last = status.last_reload.expect("recorded");
    assert_eq!(
        (last.origin, last.fingerprint.as_deref()),
        (Origin::Fleet, Some("v2"))
    );
    // A ticket is good for one commit.
    let again = commit(&harness, CommitRequest::new(prepared.ticket)).await;
    assert!(
        rejected_at_build(&again).contains("no prepared"),
        "{again:?}"
    );
    assert_eq!(harness.served().as_deref(), Some("v2"));
    harness.shutdown().await;
}

#[tokio::test]
async fn a_prepare_that_fails_to_build_holds_nothing_and_touches_nothing() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let failure = prepare(
        &harness,
        Script::new("v2").build(Act::Fail),
        Duration::from_secs(60),
    )
    .await
    .expect_err("v2 does not build");
    assert_eq!(
        (failure.stage, failure.message.as_str()),
        (Stage::Build, "v2 fails to build on purpose")
    );
    let status = harness.status().await;
    assert_eq!(
        (status.generation, status.prepared, status.history.len()),
        (1, 0, 1)
    );
    assert_eq!(harness.served().as_deref(), Some("v1"));
    harness.shutdown().await;
}

#[tokio::test]
async fn an_aborted_or_expired_prepare_is_dropped_and_its_commit_is_rejected() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let aborted = prepare(&harness, Script::new("v2"), Duration::from_secs(60))
        .await
        .unwrap();
    let supervisor = harness.supervisor.clone();
    let abort = |ticket| {
        let supervisor = supervisor.clone();
        async move { call!(supervisor, SupervisorMsg::Abort, ticket).expect("answers") }
    };
    assert!(abort(aborted.ticket).await, "it was held");
    assert!(!abort(aborted.ticket).await, "it is gone");
    let outcome = commit(&harness, CommitRequest::new(aborted.ticket)).await;
    assert!(
        rejected_at_build(&outcome).contains("no prepared"),
        "{outcome:?}"
    );

    // A coordinator that never comes back: the unit is dropped when its time is up.
    let forgotten = prepare(&harness, Script::new("v3"), Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(harness.status().await.prepared, 1);
    harness
        .wait_for_status("the prepared unit to expire", |s| s.prepared == 0)
        .await;
    let outcome = commit(&harness, CommitRequest::new(forgotten.ticket)).await;
    assert!(
        rejected_at_build(&outcome).contains("no prepared"),
        "{outcome:?}"
    );
    assert_eq!(harness.served().as_deref(), Some("v1"));
    assert!(harness.controls.entries("start v2").is_empty());
    assert!(harness.controls.entries("start v3").is_empty());
    harness.shutdown().await;
}

#[tokio::test]
async fn a_commit_is_a_reload_serialized_checked_and_rolled_back_like_any_other() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    // Compare-and-swap: a commit expecting another generation touches nothing.
    let stale = prepare(&harness, Script::new("v2"), Duration::from_secs(60))
        .await
        .unwrap();
    let outcome = commit(&harness, CommitRequest::new(stale.ticket).expecting(7)).await;
    assert_eq!(
        outcome,
        ReloadOutcome::Conflict {
            expected: 7,
            current: 1
        }
    );
    // A unit that fails to start rolls back; the old one serves on.
    let failing = prepare(
        &harness,
        Script::new("v3").start(Act::Fail),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let outcome = commit(&harness, CommitRequest::new(failing.ticket)).await;
    assert!(rolled_back(&outcome).contains("v3"), "{outcome:?}");
    assert_eq!(harness.served().as_deref(), Some("v1"));
    // Prepared while a reload is held in its build, committed behind it: it waits its turn.
    let held = harness.send(Script::new("v4").build(Act::Wait), Origin::Api, None);
    harness.controls.build_gate.arrived(1).await;
    let next = prepare(&harness, Script::new("v5"), Duration::from_secs(60))
        .await
        .unwrap();
    let committed = tokio::spawn({
        let supervisor = harness.supervisor.clone();
        async move {
            call!(
                supervisor,
                SupervisorMsg::Commit,
                CommitRequest::new(next.ticket)
            )
        }
    });
    harness
        .wait_for_status("the commit to queue", |s| s.queued == 1)
        .await;
    harness.controls.build_gate.open_one();
    assert_eq!(
        held.answer().await.outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    assert_eq!(
        committed.await.unwrap().expect("answers").outcome,
        ReloadOutcome::Activated { generation: 3 }
    );
    assert_eq!(harness.served().as_deref(), Some("v5"));
    harness.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_drops_what_is_prepared() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let prepared = prepare(&harness, Script::new("v2"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(harness.status().await.prepared, 1);
    let supervisor = harness.supervisor.clone();
    harness.shutdown().await;
    assert!(
        call!(
            supervisor,
            SupervisorMsg::Commit,
            CommitRequest::new(prepared.ticket)
        )
        .is_err()
    );
    assert!(harness.controls.entries("start v2").is_empty());
}
