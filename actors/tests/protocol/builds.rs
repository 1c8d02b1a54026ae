//! Builds that fail, panic or hang, and try-activates: a build has no outside effects, so
//! the live unit never notices one.

use std::time::Duration;

use crate::support::{self, Act, Harness, Script, rejected_at_build};
use swapvisor_actors::ractor::call;
use swapvisor_actors::{RunState, Stage, SupervisorMsg, SwapMode};

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
