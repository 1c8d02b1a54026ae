//! The hibernating Supervisor: spawned for each request, asleep in between, carrying its
//! history on, and shut down without being woken.

use std::time::Duration;

use crate::support::{self, Script};
use swapvisor_actors::ractor::call;
use swapvisor_actors::{
    HibernatingSupervisor, ReloadOutcome, ReloadRequest, SupervisorMsg, SupervisorUnavailable,
};
use tokio::time::Instant;

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
