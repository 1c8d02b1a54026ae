//! Config errors that name their place.
//!
//! Every problem found in a config is a [`ConfigError`]: a *place* (a path into the document such
//! as `modules[2] (name "db").type`) and a message that says what is wrong and what would be
//! valid. Validation collects all of them into [`ConfigErrors`] instead of stopping at the first,
//! so an operator fixes a file in one pass.

use std::fmt;

/// One problem in a config, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is, for example `modules[2] (name "db").type`. Empty for the document
    /// as a whole.
    pub place: String,
    /// What is wrong, and what would be valid.
    pub message: String,
}

impl ConfigError {
    /// An error at `place`.
    pub fn new(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.place, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one config, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Records one more problem.
    pub fn push(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(place, message));
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The recorded problems.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was recorded, else all the problems.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("no errors"),
            [one] => one.fmt(f),
            many => {
                write!(f, "{} errors:", many.len())?;
                for error in many {
                    write!(f, "\n  - {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

/// Builds the place strings used in errors, so that every error names its place the same way.
pub(crate) mod place {
    /// `parent.field`, or `field` at the root.
    pub(crate) fn field(parent: &str, field: &str) -> String {
        if parent.is_empty() {
            field.to_owned()
        } else {
            format!("{parent}.{field}")
        }
    }

    /// `parent.key` for a mapping key written by the user, quoted as `parent["a.b"]` when the
    /// key would otherwise read as a path.
    pub(crate) fn key(parent: &str, key: &str) -> String {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            field(parent, key)
        } else {
            format!("{parent}[{key:?}]")
        }
    }

    /// `parent[index]`.
    pub(crate) fn index(parent: &str, index: usize) -> String {
        format!("{parent}[{index}]")
    }

    /// `parent[index] (name "x")`: a list item that has a name, so the operator finds it by
    /// either.
    pub(crate) fn named_item(parent: &str, position: usize, name: Option<&str>) -> String {
        match name {
            Some(name) => format!("{parent}[{position}] (name {name:?})"),
            None => index(parent, position),
        }
    }
}

/// The closest of `candidates` to `input`, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(input, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance over chars where an adjacent transposition counts as one edit (optimal string
/// alignment), so `wbe` is one typo away from `web`. Inputs are short field and type names.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut table = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in table.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in table[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[i - 1][j] + 1)
                .min(table[i][j - 1] + 1)
                .min(table[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[i - 2][j - 2] + 1);
            }
            table[i][j] = best;
        }
    }
    table[a.len()][b.len()]
}

/// `names` comma-separated, or `none` when there are none.
pub(crate) fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// `unknown X "name" (did you mean "y"?) (valid: a, b, c)`: the one shape of every
/// "not one of these" message.
pub(crate) fn unknown_name<'a>(
    what: &str,
    input: &str,
    valid_label: &str,
    valid: impl IntoIterator<Item = &'a str> + Clone,
) -> String {
    let list: Vec<&str> = valid.clone().into_iter().collect();
    let listed = list_or_none(&list);
    match did_you_mean(input, valid) {
        Some(suggestion) => {
            format!(
                "unknown {what} {input:?} (did you mean {suggestion:?}?; {valid_label}: {listed})"
            )
        }
        None => format!("unknown {what} {input:?} ({valid_label}: {listed})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("adress", ["address", "port"]), Some("address"));
        assert_eq!(did_you_mean("zzzzzz", ["address", "port"]), None);
        assert_eq!(did_you_mean("wbe", ["web", "db"]), Some("web"));
    }

    #[test]
    fn many_errors_display_as_a_list() {
        let mut errors = ConfigErrors::default();
        errors.push("a", "one");
        errors.push("b", "two");
        assert_eq!(errors.to_string(), "2 errors:\n  - a: one\n  - b: two");
    }
}
