//! Request metrics: what each pipeline served, by status class, and how long it took.
//!
//! Counters belong to the runtime, not to an engine, so they keep counting across reloads
//! (Prometheus counters never go back). Each route holds its pipeline's [`RequestStats`] from
//! the moment the engine is built, so the request path pays a clock read and a few atomic
//! additions (a counter, and the histogram's bucket, sum and count): no lookup, no lock.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use hyper::StatusCode;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::metrics::MetricsRegistry;

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Status classes counted: 1xx to 5xx.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One pipeline's requests: its counter of each status class and its duration histogram,
/// taken from the runtime's families when the pipeline is first built.
#[derive(Debug)]
pub struct RequestStats {
    by_class: [IntCounter; CLASSES.len()],
    duration: prometheus::Histogram,
}

impl RequestStats {
    /// Counts one request answered `status` after `elapsed`.
    pub(crate) fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Requests answered with a status of `class` (`"2xx"` ...).
    pub fn count(&self, class: &str) -> u64 {
        CLASSES
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| self.by_class[i].get())
    }
}

/// Every pipeline's [`RequestStats`], by name, for one runtime: the families
/// `swapvisor_http_requests_total{pipeline,status_class}` and
/// `swapvisor_http_request_duration_seconds{pipeline}` of its metrics registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    requests: IntCounterVec,
    durations: HistogramVec,
    pipelines: Arc<DashMap<String, Arc<RequestStats>>>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        // The names, labels and buckets are constants, so these cannot fail.
        let requests = IntCounterVec::new(
            Opts::new(
                "swapvisor_http_requests_total",
                "HTTP requests answered, by pipeline and status class.",
            ),
            &["pipeline", "status_class"],
        )
        .expect("a valid counter family");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "swapvisor_http_request_duration_seconds",
                "Time from routing an HTTP request to its response, by pipeline.",
            )
            .buckets(BUCKETS.to_vec()),
            &["pipeline"],
        )
        .expect("a valid histogram family");
        Self {
            requests,
            durations,
            pipelines: Arc::default(),
        }
    }
}

impl RequestMetrics {
    /// Request metrics shown by `registry`.
    pub(crate) fn registered_in(registry: &MetricsRegistry) -> Self {
        let metrics = Self::default();
        registry.register(metrics.requests.clone());
        registry.register(metrics.durations.clone());
        metrics
    }

    /// The stats of pipeline `name`, created on first use (every status class at 0).
    pub(crate) fn pipeline(&self, name: &str) -> Arc<RequestStats> {
        if let Some(stats) = self.pipelines.get(name) {
            return stats.clone();
        }
        self.pipelines
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(RequestStats {
                    by_class: CLASSES.map(|class| self.requests.with_label_values(&[name, class])),
                    duration: self.durations.with_label_values(&[name]),
                })
            })
            .clone()
    }

    /// The stats of pipeline `name`, if it has ever been built.
    pub fn get(&self, name: &str) -> Option<Arc<RequestStats>> {
        self.pipelines.get(name).map(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class_and_bucketed_cumulatively() {
        let metrics = RequestMetrics::default();
        let stats = metrics.pipeline("hello");
        stats.record(StatusCode::OK, Duration::from_micros(50));
        stats.record(StatusCode::NOT_FOUND, Duration::from_millis(3));
        stats.record(StatusCode::OK, Duration::from_secs(9));
        assert_eq!(stats.count("2xx"), 2);
        assert_eq!(stats.count("4xx"), 1);
        let registry = MetricsRegistry::new();
        registry.register(metrics.requests.clone());
        registry.register(metrics.durations.clone());
        let text = registry.render(Vec::new());
        for line in [
            r#"swapvisor_http_requests_total{pipeline="hello",status_class="2xx"} 2"#,
            r#"swapvisor_http_request_duration_seconds_bucket{pipeline="hello",le="0.0001"} 1"#,
            r#"swapvisor_http_request_duration_seconds_bucket{pipeline="hello",le="0.005"} 2"#,
            r#"swapvisor_http_request_duration_seconds_bucket{pipeline="hello",le="5"} 2"#,
            r#"swapvisor_http_request_duration_seconds_bucket{pipeline="hello",le="+Inf"} 3"#,
            r#"swapvisor_http_request_duration_seconds_count{pipeline="hello"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    /// The lines of the `test_` families `/metrics` would show.
    fn shown(registry: &MetricsRegistry) -> Vec<String> {
        registry
            .render(Vec::new())
            .lines()
            .filter(|l| l.starts_with("test_"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn owners_are_told_apart_and_a_name_keeps_its_kind() {
        let registry = MetricsRegistry::new();
        // As an engine context has them.
        let _requests = RequestMetrics::registered_in(&registry);
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
            crate::metrics::MetricError::Clash {
                name: "test_depth".into(),
                registered: crate::metrics::MetricKind::Gauge,
                asked: crate::metrics::MetricKind::Histogram,
            }
        );
        assert_eq!(
            web.handle()
                .counter("swapvisor_reloads_total", "Mine.")
                .unwrap_err(),
            crate::metrics::MetricError::Reserved("swapvisor_reloads_total".into())
        );
        assert_eq!(
            web.handle()
                .counter("swapvisor_http_requests_total", "Mine.")
                .unwrap_err(),
            crate::metrics::MetricError::Reserved("swapvisor_http_requests_total".into())
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
            matches!(error, crate::metrics::MetricError::InvalidBuckets { .. }),
            "{error}"
        );
    }
}
