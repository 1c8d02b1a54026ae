//! Request metrics: what each pipeline served, by status class, and how long it took.
//!
//! Counters belong to the runtime, not to an engine, so they keep counting across reloads
//! (Prometheus counters never go back). Each route holds its pipeline's [`RequestStats`] from
//! the moment the engine is built, so the request path pays a clock read and three relaxed
//! atomic additions: no lookup, no lock.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use hyper::StatusCode;

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Status classes counted: 1xx to 5xx.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One pipeline's requests.
#[derive(Debug, Default)]
pub struct RequestStats {
    by_class: [AtomicU64; CLASSES.len()],
    /// Requests per bucket (not cumulative; the last one is past every bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl RequestStats {
    /// Counts one request answered `status` after `elapsed`.
    pub(crate) fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Requests answered with a status of `class` (`"2xx"` ...).
    pub fn count(&self, class: &str) -> u64 {
        CLASSES
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| self.by_class[i].load(Ordering::Relaxed))
    }
}

/// Every pipeline's [`RequestStats`], by name, for one runtime. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RequestMetrics {
    pipelines: Arc<DashMap<String, Arc<RequestStats>>>,
}

impl RequestMetrics {
    /// The stats of pipeline `name`, created on first use.
    pub(crate) fn pipeline(&self, name: &str) -> Arc<RequestStats> {
        if let Some(stats) = self.pipelines.get(name) {
            return stats.clone();
        }
        self.pipelines.entry(name.to_owned()).or_default().clone()
    }

    /// The stats of pipeline `name`, if it has ever been built.
    pub fn get(&self, name: &str) -> Option<Arc<RequestStats>> {
        self.pipelines.get(name).map(|s| s.clone())
    }

    /// Writes `swapvisor_http_requests_total` and `swapvisor_http_request_duration_seconds` in
    /// the Prometheus text format, pipelines sorted by name.
    pub fn write_prometheus(&self, out: &mut String) -> std::fmt::Result {
        let mut pipelines: Vec<(String, Arc<RequestStats>)> = self
            .pipelines
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        pipelines.sort_by(|a, b| a.0.cmp(&b.0));
        writeln!(
            out,
            "# HELP swapvisor_http_requests_total HTTP requests answered, by pipeline and status class."
        )?;
        writeln!(out, "# TYPE swapvisor_http_requests_total counter")?;
        for (name, stats) in &pipelines {
            let name = label(name);
            for (class, count) in CLASSES.iter().zip(&stats.by_class) {
                writeln!(
                    out,
                    "swapvisor_http_requests_total{{pipeline=\"{name}\",status_class=\"{class}\"}} {}",
                    count.load(Ordering::Relaxed)
                )?;
            }
        }
        writeln!(
            out,
            "# HELP swapvisor_http_request_duration_seconds Time from routing an HTTP request to its response, by pipeline."
        )?;
        writeln!(
            out,
            "# TYPE swapvisor_http_request_duration_seconds histogram"
        )?;
        for (name, stats) in &pipelines {
            let name = label(name);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += count.load(Ordering::Relaxed);
                writeln!(
                    out,
                    "swapvisor_http_request_duration_seconds_bucket{{pipeline=\"{name}\",le=\"{bound}\"}} {cumulative}"
                )?;
            }
            cumulative += stats.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            writeln!(
                out,
                "swapvisor_http_request_duration_seconds_bucket{{pipeline=\"{name}\",le=\"+Inf\"}} {cumulative}"
            )?;
            let sum = stats.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            writeln!(
                out,
                "swapvisor_http_request_duration_seconds_sum{{pipeline=\"{name}\"}} {sum}"
            )?;
            writeln!(
                out,
                "swapvisor_http_request_duration_seconds_count{{pipeline=\"{name}\"}} {cumulative}"
            )?;
        }
        Ok(())
    }
}

/// `value` escaped for a Prometheus label.
pub(crate) fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let mut text = String::new();
        metrics.write_prometheus(&mut text).unwrap();
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
}
