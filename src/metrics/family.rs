//! Families of values read at scrape time, with their labels in the order given.
//!
//! The `prometheus` crate's own metric types sort their labels by name; a family built here
//! keeps the order its samples give (`listener` before `kind`, as `/metrics` has always shown
//! them), and holds plain numbers read from wherever they live.

use prometheus::proto::{self, MetricFamily, MetricType};

/// One metric family being filled with samples.
#[derive(Debug)]
pub(crate) struct Family(MetricFamily);

impl Family {
    /// A family of counters (`name` ends in `_total`).
    pub(crate) fn counter(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::COUNTER)
    }

    /// A family of gauges.
    pub(crate) fn gauge(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::GAUGE)
    }

    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        Self(family)
    }

    /// Adds the sample `value` labelled `labels`, in that order.
    pub(crate) fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.push(labels, value);
        self
    }

    /// Adds the sample `value` labelled `labels`, in that order.
    pub(crate) fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        let pairs = labels
            .iter()
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        let mut metric = proto::Metric::from_label(pairs);
        if self.0.get_field_type() == MetricType::COUNTER {
            let mut counter = proto::Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        self.0.mut_metric().push(metric);
    }

    /// The family, for the encoder.
    pub(crate) fn build(self) -> MetricFamily {
        self.0
    }
}
