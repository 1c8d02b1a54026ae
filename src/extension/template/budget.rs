//! The render budget: every byte a run's templates produce is charged before it is produced.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;

/// How many bytes one run of a pipeline may render across all its steps' templates
/// (`maxRenderBytes`).
///
/// Rendering charges each value before producing it. Once a charge would pass the limit the
/// budget is *exceeded*: [`Template::render`](super::Template::render) renders null from then on and
/// [`Template::try_render`](super::Template::try_render) fails, and the pipeline ends the run with an error.
#[derive(Debug)]
pub struct RenderBudget {
    limit: usize,
    used: AtomicUsize,
    exceeded: AtomicBool,
}

impl RenderBudget {
    /// The default `maxRenderBytes`: 16 MiB.
    pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes rendered so far (an approximation of their JSON size).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a render was refused for passing the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// `Ok` while nothing has been refused; the error once a render passed the limit.
    pub fn check(&self) -> Result<(), RenderBudgetExceeded> {
        match self.exceeded() {
            false => Ok(()),
            true => Err(RenderBudgetExceeded { limit: self.limit }),
        }
    }

    /// Charges `value`, which a step produced without rendering it (a jq program's output):
    /// the error when it does not fit what is left.
    pub fn charge_output(&self, value: &Value) -> Result<(), RenderBudgetExceeded> {
        match self.charge_value(value) {
            true => Ok(()),
            false => Err(RenderBudgetExceeded { limit: self.limit }),
        }
    }

    /// What is left, or `None` once exceeded.
    fn remaining(&self) -> Option<usize> {
        if self.exceeded() {
            return None;
        }
        Some(self.limit.saturating_sub(self.used()))
    }

    /// Takes `bytes` from the budget; `false` (and exceeded) when they do not fit.
    pub(super) fn charge(&self, bytes: usize) -> bool {
        let fits = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let after = used.checked_add(bytes)?;
                (after <= self.limit).then_some(after)
            })
            .is_ok();
        if !fits {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        fits
    }

    /// The JSON size of `value` when it fits what is left (walking it no further); else
    /// `None`, and exceeded.
    pub(super) fn fitting_weight(&self, value: &Value) -> Option<usize> {
        let weight = self.remaining().and_then(|left| weight(value, left));
        if weight.is_none() {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        weight
    }

    /// Charges the JSON size of `value`.
    fn charge_value(&self, value: &Value) -> bool {
        self.fitting_weight(value)
            .is_some_and(|bytes| self.charge(bytes))
    }
}

/// A copy of `value` when its size fits the budget, else null.
pub(super) fn charged_clone(budget: &RenderBudget, value: &Value) -> Value {
    if budget.charge_value(value) {
        value.clone()
    } else {
        Value::Null
    }
}

/// About the size of `value` as JSON, or `None` as soon as it passes `cap`.
fn weight(value: &Value, cap: usize) -> Option<usize> {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        total += match value {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 24,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len()
            }
            Value::Object(map) => {
                stack.extend(map.values());
                2 + map.keys().map(|k| k.len() + 4).sum::<usize>()
            }
        };
        if total > cap {
            return None;
        }
    }
    Some(total)
}

/// A render that passed its run's [`RenderBudget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "its templates would render more than the pipeline's maxRenderBytes ({limit} bytes) for this run"
)]
pub struct RenderBudgetExceeded {
    /// The budget's limit, in bytes.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::RenderScope;
    use super::super::tests::compile;
    use super::*;

    #[test]
    fn rendering_stops_at_the_budget_before_producing_the_value() {
        let t = compile(json!({"a": "{{ request.s }}{{ request.s }}"}), &[]).unwrap();
        let request = json!({"s": "x".repeat(1000)});
        let roomy = RenderBudget::new(4096);
        let scope = RenderScope {
            request: &request,
            outputs: &[],
            budget: &roomy,
        };
        assert_eq!(
            t.try_render(&scope).unwrap()["a"].as_str().unwrap().len(),
            2000
        );
        assert_eq!(roomy.used(), 2000);
        let tight = RenderBudget::new(1500);
        let scope = RenderScope {
            request: &request,
            outputs: &[],
            budget: &tight,
        };
        assert_eq!(
            t.try_render(&scope),
            Err(RenderBudgetExceeded { limit: 1500 })
        );
        assert!(tight.exceeded());
        assert!(
            tight.used() <= 1500,
            "charged {} past the limit",
            tight.used()
        );
        // Once exceeded, every later render of the run is null.
        assert_eq!(t.render(&scope), Value::Null);
    }
}
