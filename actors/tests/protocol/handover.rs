//! Draining and the hand-over of state: the old unit drains before it stops, and a failed
//! export or import rolls the swap back with the state kept.

use std::time::Duration;

use crate::support::{self, Act, Harness, Script};
use swapvisor_actors::ReloadOutcome;

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
