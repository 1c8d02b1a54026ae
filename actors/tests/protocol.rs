//! The swap protocol, driven through its public API with a scripted fake unit: every outcome
//! of the reload contract, in both swap modes, with no YAML and no HTTP.

mod support;

use std::time::Duration;

use support::{Act, Harness, Script, rejected_at_build, rolled_back};
use swapvisor_actors::ractor::call;
use swapvisor_actors::{
    CommitRequest, HibernatingSupervisor, Origin, Prepared, ReloadOutcome, ReloadRequest, RunState,
    Stage, SupervisorMsg, SupervisorUnavailable, SwapMode,
};
use tokio::time::Instant;

#[tokio::test]
async fn a_build_that_fails_panics_or_hangs_is_rejected_and_the_live_unit_never_notices() {
    support::quiet_expected_panics();
    for mode in [SwapMode::StartFirst, SwapMode::StopFirst] {
        let script = |version: &str| {
            let mut script = Script::new(version);
            script.mode = mode;
            script
        };
        // The live unit's build timeout governs the next build.
        let v1 = script("v1").timeout(Duration::from_millis(100));
        let mut harness = Harness::serving(v1).await;
        for (act, expected) in [
            (Act::Fail, "v2 fails to build on purpose"),
            (
                Act::Panic,
                "fake panicked during build: v2 panics in build on purpose",
            ),
            (Act::Hang, "fake did not finish build before its deadline"),
        ] {
            let record = harness.reload(script("v2").build(act)).await;
            assert_eq!(rejected_at_build(&record.outcome), expected, "{mode}");
            assert_eq!(record.generation, 1);
            assert_eq!(harness.served().as_deref(), Some("v1"));
            harness.next_outcome().await;
        }
        assert_eq!(harness.controls.entries("start "), ["start v1"]);
        assert!(harness.controls.entries("stop ").is_empty(), "{mode}");
        let status = harness.status().await;
        assert_eq!((status.state, status.generation), (RunState::Running, 1));
        assert_eq!(status.history.len(), 4);
        harness.shutdown().await;
        assert_eq!(harness.controls.entries("stop "), ["stop v1"]);
    }
}

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

#[tokio::test]
async fn try_activate_builds_and_drops_the_candidate_without_touching_the_slot() {
    let mut harness = Harness::serving(Script::new("v1")).await;
    let built = call!(
        harness.supervisor,
        SupervisorMsg::TryActivate,
        std::sync::Arc::new(Script::new("v2"))
    )
    .expect("answers");
    assert_eq!(built, Ok("v2 builds".to_owned()));
    let failed = call!(
        harness.supervisor,
        SupervisorMsg::TryActivate,
        std::sync::Arc::new(Script::new("v3").build(Act::Fail))
    )
    .expect("answers");
    let failure = failed.expect_err("v3 does not build");
    assert_eq!(
        (failure.stage, failure.message.as_str()),
        (Stage::Build, "v3 fails to build on purpose")
    );
    let status = harness.status().await;
    assert_eq!((status.generation, status.history.len()), (1, 1));
    assert_eq!(harness.served().as_deref(), Some("v1"));
    assert!(harness.controls.entries("start v2").is_empty());
    harness.shutdown().await;
}

#[tokio::test]
async fn the_old_unit_drains_before_it_stops_and_hands_its_state_over() {
    let mut harness = Harness::serving(Script::new("v1").handing_over()).await;
    let lease = harness.slot.try_acquire().expect("v1 serves");
    lease.served.lock().unwrap().push("call 1".to_owned());
    drop(lease);

    // A unit that takes its predecessor's state gets what the old one had when it drained.
    let record = harness.reload(Script::new("v2").handing_over()).await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 2 });
    let v2 = harness.slot.try_acquire().expect("v2 serves");
    assert_eq!(*v2.served.lock().unwrap(), ["call 1"]);
    drop(v2);
    harness.controls.wait_for("stop v1").await;

    // A unit that is not handed state over is published before the old one drains, and the
    // old one stops only once its last lease is given back.
    let held = harness.slot.try_acquire().expect("v2 serves");
    let record = harness.reload(Script::new("v3")).await;
    assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 3 });
    assert_eq!(harness.served().as_deref(), Some("v3"));
    assert!(harness.controls.entries("stop v2").is_empty());
    drop(held);
    harness.controls.wait_for("stop v2").await;
    harness.shutdown().await;
}

/// Which side of a hand-over a fault is put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandOver {
    /// The old unit's export.
    Export,
    /// The new unit's import.
    Import,
}

/// A hand-over whose `side` fails, panics or hangs rolls the swap back in both modes: the old
/// unit serves on with its state, the outcome says why, and the generation stays. Handing
/// over nothing would silently reset the state.
async fn a_failed_hand_over_rolls_back_and_keeps_the_state(side: HandOver) {
    support::quiet_expected_panics();
    let cases = match side {
        HandOver::Export => [
            (Act::Fail, "v1 fails to export on purpose"),
            (
                Act::Panic,
                "panicked during state export: v1 panics in export on purpose",
            ),
            (Act::Hang, "did not finish state export before its deadline"),
        ],
        HandOver::Import => [
            (Act::Fail, "v2 fails to import on purpose"),
            (
                Act::Panic,
                "panicked during state import: v2 panics in import on purpose",
            ),
            (Act::Hang, "state import before its deadline"),
        ],
    };
    for stop_first in [false, true] {
        for (act, why) in cases {
            let mode = |script: Script| {
                if stop_first {
                    script.stop_first()
                } else {
                    script
                }
            };
            let v1 = Script::new("v1").handing_over();
            let v1 = match side {
                HandOver::Export => v1.export(act),
                HandOver::Import => v1,
            };
            let mut harness = Harness::serving(mode(v1)).await;
            let lease = harness.slot.try_acquire().expect("v1 serves");
            lease.served.lock().unwrap().push("call 1".to_owned());
            drop(lease);

            let v2 = Script::new("v2")
                .handing_over()
                .timeout(Duration::from_millis(300));
            let v2 = match side {
                HandOver::Export => v2,
                HandOver::Import => v2.import(act),
            };
            let record = harness.reload(mode(v2)).await;
            let case = format!("{side:?} {act:?}, stop-first {stop_first}");
            match &record.outcome {
                ReloadOutcome::RolledBack { error } => {
                    assert!(error.contains(why), "{case}: {error}")
                }
                other => panic!("{case}: expected RolledBack, got {other:?}"),
            }
            let v1 = harness.slot.try_acquire().expect("v1 serves on");
            assert_eq!(v1.version(), "v1", "{case}");
            assert_eq!(
                *v1.served.lock().unwrap(),
                ["call 1"],
                "{case}: its state is kept"
            );
            drop(v1);
            // A failed export comes before any stop; a failed import, in stop-first mode,
            // after the old unit stopped (it is started again).
            if side == HandOver::Export || !stop_first {
                assert!(
                    harness.controls.entries("stop v1").is_empty(),
                    "{case}: v1 never stopped"
                );
            }
            assert_eq!(harness.status().await.generation, 1, "{case}");
            harness.shutdown().await;
        }
    }
}

#[tokio::test]
async fn a_failed_state_export_rolls_back_and_keeps_the_state() {
    a_failed_hand_over_rolls_back_and_keeps_the_state(HandOver::Export).await;
}

/// Start-first never stopped the old unit; stop-first starts it again.
#[tokio::test]
async fn a_failed_state_import_rolls_back_and_keeps_the_state() {
    a_failed_hand_over_rolls_back_and_keeps_the_state(HandOver::Import).await;
}

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

#[tokio::test]
async fn a_hibernating_supervisor_wakes_for_each_reload_and_carries_its_history_on() {
    let (controls, slot) = support::parts();
    let (args, _outcomes) = support::args(&controls, &slot);
    let handle = HibernatingSupervisor::new(args);
    assert!(!handle.is_awake().await);

    let first = handle.reload(ReloadRequest::new(Script::new("v1"))).await;
    assert_eq!(
        first.expect("answers").outcome,
        ReloadOutcome::Activated { generation: 1 }
    );
    assert!(!handle.is_awake().await, "idle again: hibernated");
    assert_eq!(support::served(&slot).as_deref(), Some("v1"));

    let second = handle.reload(ReloadRequest::new(Script::new("v2"))).await;
    assert_eq!(
        second.expect("answers").outcome,
        ReloadOutcome::Activated { generation: 2 }
    );
    // Hibernation waited for the replaced unit to stop.
    assert_eq!(controls.entries("stop "), ["stop v1"]);

    // Asking for the Supervisor wakes it from the snapshot and keeps it awake.
    let supervisor = handle.supervisor().await.expect("wakes");
    assert!(handle.is_awake().await);
    let status = call!(supervisor, SupervisorMsg::Status).expect("answers");
    assert_eq!((status.generation, status.history.len()), (2, 2));
    let third = handle.reload(ReloadRequest::new(Script::new("v3"))).await;
    assert_eq!(
        third.expect("answers").outcome,
        ReloadOutcome::Activated { generation: 3 }
    );
    assert!(handle.is_awake().await, "pinned awake");

    assert!(
        handle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
    );
    assert_eq!(support::served(&slot), None);
    controls.wait_for("stop v3").await;
    assert_eq!(
        handle.reload(ReloadRequest::new(Script::new("v4"))).await,
        Err(SupervisorUnavailable::ShutDown("fake".to_owned()))
    );
}

#[tokio::test]
async fn a_sleeping_supervisor_is_shut_down_without_being_woken() {
    let (controls, slot) = support::parts();
    let (args, _outcomes) = support::args(&controls, &slot);
    let handle = HibernatingSupervisor::new(args);
    let first = handle.reload(ReloadRequest::new(Script::new("v1"))).await;
    assert!(first.expect("answers").outcome.is_activated());
    assert!(!handle.is_awake().await);

    assert!(
        handle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
    );
    assert!(!handle.is_awake().await);
    assert_eq!(controls.entries("stop "), ["stop v1"]);
    assert!(slot.acquire().await.is_err(), "closed for good");
    assert!(matches!(
        handle.supervisor().await,
        Err(SupervisorUnavailable::ShutDown(_))
    ));
}

#[tokio::test]
async fn a_hibernating_handle_whose_supervisor_died_still_stops_its_unit_gracefully() {
    let (controls, slot) = support::parts();
    let (args, _outcomes) = support::args(&controls, &slot);
    let handle = HibernatingSupervisor::new(args);
    let first = handle.reload(ReloadRequest::new(Script::new("v1"))).await;
    assert!(first.expect("answers").outcome.is_activated());
    // An embedder holds the Supervisor, then stops it: the live unit stays published.
    let supervisor = handle.supervisor().await.expect("wakes");
    supervisor.stop(None);
    supervisor
        .get_cell()
        .wait(Some(support::PATIENCE))
        .await
        .expect("the Supervisor exits");
    assert_eq!(support::served(&slot).as_deref(), Some("v1"));

    assert!(
        handle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
    );
    assert_eq!(controls.entries("stop "), ["stop v1"]);
    assert!(slot.acquire().await.is_err(), "closed for good");
}

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
