//! Turning untrusted bytes into a JSON value tree, with hard limits.
//!
//! A config arrives from a file, an HTTP body or a test, and any of them may be hostile: huge,
//! deeply nested, an alias bomb ("billion laughs"), or binary junk. Before any typed decoding,
//! the document is parsed into a [`serde_json::Value`] by a deserializer that counts every node
//! and every level of nesting and stops at the first limit it crosses. Nothing grows without
//! bound: the size is checked before parsing, the node budget caps what alias expansion can
//! produce, and the depth cap stops recursion long before the stack is at risk.
//!
//! YAML and JSON are both accepted. A document whose first non-blank character is `{` is parsed
//! as JSON, so JSON mistakes get JSON error messages.

use serde::de::DeserializeSeed;
use serde_json::Value;

use super::bounded::{BoundedValue, Budget};
use super::error::place;

/// Bounds on what a single document may cost to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Largest accepted document, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of mappings and sequences.
    pub max_depth: usize,
    /// Most values (scalars, sequences, mappings, counted after alias expansion).
    pub max_nodes: usize,
}

impl Default for DocumentLimits {
    /// 8 MiB, 64 levels, 500,000 values: far above any real config (a 1,000-module config is
    /// about 10,000 values), far below what would hurt the process.
    fn default() -> Self {
        Self {
            max_bytes: 8 * 1024 * 1024,
            max_depth: 64,
            max_nodes: 500_000,
        }
    }
}

/// Why a document could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The document is larger than [`DocumentLimits::max_bytes`].
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the rejected document.
        size: usize,
        /// The limit it crossed.
        limit: usize,
    },
    /// The bytes are not UTF-8 text.
    #[error("document is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The document is empty or only whitespace and comments.
    #[error("document is empty (expected a mapping with modules, pipelines, plugins, runtime)")]
    Empty,
    /// The text is not valid YAML or JSON, or it crossed a nesting or size limit while parsing.
    #[error("{format} syntax: {message}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with its line and column.
        message: String,
    },
}

/// A parsed document: its value tree, and the keys that appeared twice in one mapping.
///
/// A repeated key is not a syntax error here: the first value is kept and the repeat is
/// reported with its place, so that validation can list it with every other problem.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    /// The value tree.
    pub value: Value,
    /// Each repeated key, in document order.
    pub duplicate_keys: Vec<DuplicateKey>,
}

/// A key that appeared more than once in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DuplicateKey {
    /// The place of the mapping, such as `pipelines` (empty for the top level).
    pub mapping: String,
    /// The repeated key.
    pub key: String,
}

impl DuplicateKey {
    /// The place of the repeated key, such as `pipelines.hello`.
    pub(crate) fn place(&self) -> String {
        place::key(&self.mapping, &self.key)
    }
}

/// Parses `bytes` as a YAML or JSON document into a value tree, within `limits`.
pub(crate) fn parse_document(
    bytes: &[u8],
    limits: &DocumentLimits,
) -> Result<Document, DocumentError> {
    if bytes.len() > limits.max_bytes {
        return Err(DocumentError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DocumentError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        // JSON, or a YAML flow mapping such as `{ name: x }`. Strict JSON (`{"...`) gets the
        // JSON parser's error messages; anything else that is not JSON is read as YAML.
        let budget = Budget::new(limits);
        let mut deserializer = serde_json::Deserializer::from_str(text);
        // Our own depth limit is the one that applies; serde_json's fixed 128 is a backstop.
        let json = BoundedValue::root(&budget)
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        match json {
            Ok(value) => return Ok(budget.finish(value)),
            Err(error) if looks_like_json(trimmed) => {
                return Err(DocumentError::Syntax {
                    format: "JSON",
                    message: error.to_string(),
                });
            }
            Err(_) => {}
        }
    }
    // Refused before the parser spends anything on it: deep nesting, too many values, tags.
    super::scan::check(text, limits).map_err(|refusal| DocumentError::Syntax {
        format: "YAML",
        message: refusal.to_string(),
    })?;
    let budget = Budget::new(limits);
    let mut documents = serde_yaml::Deserializer::from_str(text);
    let Some(first) = documents.next() else {
        return Err(DocumentError::Empty);
    };
    let value = BoundedValue::root(&budget)
        .deserialize(first)
        .map_err(|e| DocumentError::Syntax {
            format: "YAML",
            message: explain_yaml_error(e.to_string()),
        })?;
    if documents.next().is_some() {
        return Err(DocumentError::Syntax {
            format: "YAML",
            message: "more than one document in the stream (remove the extra `---`)".into(),
        });
    }
    if value.is_null() {
        return Err(DocumentError::Empty);
    }
    Ok(budget.finish(value))
}

/// serde_yaml guards against alias bombs and deep recursion itself, sometimes before our own
/// budget trips; its messages for those say less than ours, so they are reworded.
fn explain_yaml_error(message: String) -> String {
    if message.contains("repetition limit exceeded") {
        "document expands its aliases too many times (an alias bomb?); refusing it".to_owned()
    } else if message.contains("recursion limit exceeded") {
        format!("nesting is too deep; refusing it ({message})")
    } else {
        message
    }
}

/// `{"` or `{}`: a document that means to be JSON.
fn looks_like_json(text: &str) -> bool {
    let inside = text[1..].trim_start();
    inside.starts_with('"') || inside.starts_with('}')
}

/// A short name for the kind of a value, for error messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Value, DocumentError> {
        parse_document(text.as_bytes(), &DocumentLimits::default()).map(|doc| doc.value)
    }

    #[test]
    fn yaml_and_json_give_the_same_tree() {
        let yaml = parse("a: 1\nb: [x, {c: true}]\n").unwrap();
        let json = parse(r#"{"a": 1, "b": ["x", {"c": true}]}"#).unwrap();
        assert_eq!(yaml, json);
    }

    #[test]
    fn duplicate_keys_are_reported_with_their_place() {
        let doc = parse_document(
            b"a: 1\na: 2\nb:\n  - {c: 1, c: 2}\n",
            &DocumentLimits::default(),
        )
        .unwrap();
        let places: Vec<String> = doc.duplicate_keys.iter().map(DuplicateKey::place).collect();
        assert_eq!(places, vec!["a", "b[0].c"]);
        assert_eq!(doc.value["a"], 1);
    }

    #[test]
    fn a_yaml_flow_mapping_is_not_mistaken_for_json() {
        assert_eq!(
            parse("{ name: x, list: [1] }").unwrap(),
            serde_json::json!({"name": "x", "list": [1]})
        );
        let err = parse(r#"{"name": }"#).unwrap_err().to_string();
        assert!(err.starts_with("JSON syntax:"), "{err}");
    }

    #[test]
    fn empty_documents_are_refused() {
        assert_eq!(parse("").unwrap_err(), DocumentError::Empty);
        assert_eq!(
            parse("# only a comment\n").unwrap_err(),
            DocumentError::Empty
        );
    }

    #[test]
    fn depth_limit_names_the_limit() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let err = parse(&deep).unwrap_err().to_string();
        assert!(err.contains("deeper than 64 levels"), "{err}");
    }

    #[test]
    fn node_budget_stops_alias_expansion() {
        let limits = DocumentLimits {
            max_nodes: 1_000,
            ..DocumentLimits::default()
        };
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse_document(doc.as_bytes(), &limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 1000 values"), "{err}");
    }

    #[test]
    fn non_utf8_names_the_offset() {
        let err = parse_document(b"a: \xff\xfe", &DocumentLimits::default()).unwrap_err();
        assert_eq!(err, DocumentError::NotUtf8 { offset: 3 });
    }

    #[test]
    fn size_limit_is_checked_before_parsing() {
        let limits = DocumentLimits {
            max_bytes: 10,
            ..DocumentLimits::default()
        };
        let err = parse_document(b"a: 123456789012", &limits).unwrap_err();
        assert_eq!(
            err,
            DocumentError::TooLarge {
                size: 15,
                limit: 10
            }
        );
    }
}
