//! The registrations of modules and plugins across reloads.

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
