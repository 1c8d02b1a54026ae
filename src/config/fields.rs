//! Reading one mapping of the document: typed getters that report each problem at the field's
//! own place and let decoding go on, and the duration syntax every timeout uses.

use std::time::Duration;

use serde_json::{Map, Value};

use super::document::kind_of;
use super::error::{ConfigErrors, place, unknown_name};

/// The fields of one mapping in the document, with its place, and typed getters that report
/// problems at the field's own place.
pub(super) struct Fields<'v> {
    map: Option<&'v Map<String, Value>>,
    place: String,
}

impl<'v> Fields<'v> {
    /// Checks that `value` is a mapping whose keys are all in `known`. A null value is an empty
    /// mapping, so `runtime:` with nothing under it is fine.
    pub(super) fn of(
        value: &'v Value,
        place: &str,
        known: &[&str],
        errors: &mut ConfigErrors,
    ) -> Option<Self> {
        let map = match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                let wanted = format!("a mapping with fields {}", known.join(", "));
                errors.push(
                    place,
                    format!("expected {wanted}, found {}", kind_of(other)),
                );
                return None;
            }
        };
        for key in map.into_iter().flat_map(|map| map.keys()) {
            if !known.contains(&key.as_str()) {
                errors.push(
                    place::key(place, key),
                    unknown_name("field", key, "valid fields", known.iter().copied()),
                );
            }
        }
        Some(Self {
            map,
            place: place.to_owned(),
        })
    }

    /// The place of `key` in this mapping.
    pub(super) fn at(&self, key: &str) -> String {
        place::field(&self.place, key)
    }

    /// The value of `key`; an explicit null counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map?.get(key).filter(|value| !value.is_null())
    }

    pub(super) fn child(
        &self,
        key: &str,
        known: &[&str],
        errors: &mut ConfigErrors,
    ) -> Option<Fields<'v>> {
        let value = self.get(key)?;
        Fields::of(value, &self.at(key), known, errors)
    }

    pub(super) fn wrong_type(
        &self,
        key: &str,
        wanted: &str,
        found: &Value,
        errors: &mut ConfigErrors,
    ) {
        errors.push(
            self.at(key),
            format!("expected {wanted}, found {}", kind_of(found)),
        );
    }

    pub(super) fn list(&self, key: &str, errors: &mut ConfigErrors) -> Option<&'v Vec<Value>> {
        match self.get(key)? {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(key, "a list", other, errors);
                None
            }
        }
    }

    pub(super) fn mapping(
        &self,
        key: &str,
        errors: &mut ConfigErrors,
    ) -> Option<&'v Map<String, Value>> {
        match self.get(key)? {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(key, "a mapping", other, errors);
                None
            }
        }
    }

    pub(super) fn required_string(
        &self,
        key: &str,
        hint: &str,
        errors: &mut ConfigErrors,
    ) -> Option<String> {
        match self.get(key) {
            None => {
                errors.push(self.at(key), format!("missing (required: {hint})"));
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                errors.push(self.at(key), format!("must not be empty (expected {hint})"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.wrong_type(key, "a string", other, errors);
                None
            }
        }
    }

    pub(super) fn name(&self, errors: &mut ConfigErrors) -> Option<String> {
        self.required_string("name", "a unique name", errors)
    }

    /// `config:` is free-form here (its type's factory checks it), but it must be a mapping.
    pub(super) fn config(&self, errors: &mut ConfigErrors) -> Value {
        match self.get("config") {
            None => Value::Object(Map::new()),
            Some(value @ Value::Object(_)) => value.clone(),
            Some(other) => {
                self.wrong_type("config", "a mapping", other, errors);
                Value::Object(Map::new())
            }
        }
    }

    pub(super) fn string_list(&self, key: &str, errors: &mut ConfigErrors) -> Vec<String> {
        let Some(items) = self.list(key, errors) else {
            return Vec::new();
        };
        let parent = self.at(key);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some(s.clone()),
                other => {
                    errors.push(
                        place::index(&parent, i),
                        format!("expected a string, found {}", kind_of(other)),
                    );
                    None
                }
            })
            .collect()
    }

    pub(super) fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
        errors: &mut ConfigErrors,
    ) -> Option<T> {
        let names = options.iter().map(|(name, _)| *name);
        match self.get(key)? {
            Value::String(s) => match options.iter().find(|(name, _)| name == s) {
                Some((_, value)) => Some(*value),
                None => {
                    errors.push(self.at(key), unknown_name("value", s, "valid", names));
                    None
                }
            },
            other => {
                let wanted = format!("one of {}", names.collect::<Vec<_>>().join(", "));
                self.wrong_type(key, &wanted, other, errors);
                None
            }
        }
    }

    pub(super) fn count(&self, key: &str, errors: &mut ConfigErrors) -> Option<u32> {
        let value = self.get(key)?;
        match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.wrong_type(key, "a whole number from 0 to 4294967295", value, errors);
                None
            }
        }
    }

    pub(super) fn duration(&self, key: &str, errors: &mut ConfigErrors) -> Option<Duration> {
        match self.get(key)? {
            Value::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(message) => {
                    errors.push(self.at(key), message);
                    None
                }
            },
            other => {
                self.wrong_type(
                    key,
                    "a duration such as \"250ms\", \"5s\" or \"1m\"",
                    other,
                    errors,
                );
                None
            }
        }
    }
}

/// The longest duration a config may give: a timeout, interval or window beyond it is a
/// mistake, and deadlines computed from it must stay representable.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Parses a duration written as `250ms`, `5s`, `1m30s` and so on, up to 30 days.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); expected a number with a unit, such as \"250ms\", \"5s\" or \"1m\"")
    })?;
    if duration > MAX_DURATION {
        return Err(format!(
            "duration {text:?} is longer than the maximum of 30 days"
        ));
    }
    Ok(duration)
}
