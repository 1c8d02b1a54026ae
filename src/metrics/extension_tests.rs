//! The registrations of modules and plugins across reloads.

use super::*;
use crate::metrics::MetricsRegistry;

fn shown(registry: &MetricsRegistry) -> Vec<String> {
    registry
        .render(Vec::new())
        .lines()
        .filter(|l| l.starts_with("test_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_rebuilt_owner_continues_the_series_and_it_goes_with_its_last_holder() {
    let registry = MetricsRegistry::new();
    let store = registry.extensions();
    let old = store.scope("module", "web");
    old.expose();
    let jobs = old.handle().counter("test_jobs_total", "Jobs.").unwrap();
    jobs.inc_by(2);
    assert_eq!(shown(&registry), [r#"test_jobs_total{module="web"} 2"#]);

    // A reload rebuilds the module: the new instance gets the same series.
    let new = store.scope("module", "web");
    let again = new.handle().counter("test_jobs_total", "Jobs.").unwrap();
    again.inc();
    assert_eq!(jobs.get(), 3);
    drop(old);
    assert_eq!(shown(&registry), Vec::<String>::new(), "not exposed yet");
    new.expose();
    assert_eq!(shown(&registry), [r#"test_jobs_total{module="web"} 3"#]);
    drop(new);
    assert_eq!(shown(&registry), Vec::<String>::new());
    assert!(store.registered().is_empty());
}

#[test]
fn what_a_scope_never_exposed_registered_never_shows() {
    let registry = MetricsRegistry::new();
    let store = registry.extensions();
    let candidate = store.scope("module", "web");
    candidate
        .handle()
        .gauge("test_depth", "Depth.")
        .unwrap()
        .set(7);
    assert_eq!(shown(&registry), Vec::<String>::new());
    drop(candidate);
    assert!(store.registered().is_empty());
}

#[test]
fn owners_are_told_apart_and_a_name_keeps_its_kind() {
    let registry = MetricsRegistry::new();
    // As an engine context has them.
    let _requests = crate::engine::RequestMetrics::registered_in(&registry);
    let store = registry.extensions();
    let (web, hits) = (store.scope("module", "web"), store.scope("plugin", "hits"));
    web.expose();
    hits.expose();
    web.handle().gauge("test_depth", "Depth.").unwrap().set(1);
    hits.handle().gauge("test_depth", "Depth.").unwrap().set(2);
    assert_eq!(
        shown(&registry),
        [
            r#"test_depth{plugin="hits"} 2"#,
            r#"test_depth{module="web"} 1"#
        ]
    );
    assert_eq!(
        hits.handle()
            .histogram("test_depth", "Depth.", &[])
            .unwrap_err(),
        MetricError::Clash {
            name: "test_depth".into(),
            registered: MetricKind::Gauge,
            asked: MetricKind::Histogram,
        }
    );
    assert_eq!(
        web.handle()
            .counter("swapvisor_reloads_total", "Mine.")
            .unwrap_err(),
        MetricError::Reserved("swapvisor_reloads_total".into())
    );
    assert_eq!(
        web.handle()
            .counter("swapvisor_http_requests_total", "Mine.")
            .unwrap_err(),
        MetricError::Reserved("swapvisor_http_requests_total".into())
    );
    for (bad, why) in [
        ("", "empty"),
        ("1st", "letters"),
        ("a-b", "letters"),
        ("__x", "reserved"),
        ("test_x_total", "only a counter"),
    ] {
        let error = web.handle().gauge(bad, "Bad.").unwrap_err().to_string();
        assert!(error.contains(why), "{bad:?}: {error}");
    }
    let error = web
        .handle()
        .histogram("test_wait", "Wait.", &[1.0, 0.5])
        .unwrap_err();
    assert!(
        matches!(error, MetricError::InvalidBuckets { .. }),
        "{error}"
    );
}
