//! A serde deserializer for untrusted documents: it builds a [`Value`] while charging every
//! node and every level of nesting to a [`Budget`], and stops at the first limit crossed.
//!
//! Counting at the visitor is what makes alias bombs cheap to refuse: an alias is expanded by
//! the YAML parser into more values, and each one costs a node here, so the expansion stops
//! as soon as the budget is spent, whatever the size of the text. Repeated keys in one mapping
//! are noted with their place rather than silently overwritten.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::document::{Document, DocumentLimits, DuplicateKey, kind_of};
use super::error::place;

/// What is left to spend while parsing one document. Shared by every level of the recursion.
pub(super) struct Budget {
    nodes_left: Cell<usize>,
    max_nodes: usize,
    max_depth: usize,
    /// The place being parsed, such as `modules[2].config`; kept only to name repeated keys.
    path: RefCell<String>,
    duplicate_keys: RefCell<Vec<DuplicateKey>>,
}

impl Budget {
    pub(super) fn new(limits: &DocumentLimits) -> Self {
        Self {
            nodes_left: Cell::new(limits.max_nodes),
            max_nodes: limits.max_nodes,
            max_depth: limits.max_depth,
            path: RefCell::new(String::new()),
            duplicate_keys: RefCell::new(Vec::new()),
        }
    }

    /// The parsed document, with the repeated keys met on the way.
    pub(super) fn finish(self, value: Value) -> Document {
        Document {
            value,
            duplicate_keys: self.duplicate_keys.into_inner(),
        }
    }

    /// Runs `parse` with `segment` appended to the current path.
    fn within<T>(&self, segment: Segment<'_>, parse: impl FnOnce() -> T) -> T {
        let length = self.path.borrow().len();
        {
            let mut path = self.path.borrow_mut();
            let here = match segment {
                Segment::Key(key) => place::key(&path, key),
                Segment::Index(index) => place::index(&path, index),
            };
            *path = here;
        }
        let result = parse();
        self.path.borrow_mut().truncate(length);
        result
    }

    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.nodes_left.get().checked_sub(1) {
            Some(left) => {
                self.nodes_left.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "document has more than {} values (after expanding aliases); refusing it",
                self.max_nodes
            ))),
        }
    }
}

enum Segment<'k> {
    Key(&'k str),
    Index(usize),
}

/// A `DeserializeSeed` that builds a [`Value`] while charging every node to the budget.
#[derive(Clone, Copy)]
pub(super) struct BoundedValue<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl<'b> BoundedValue<'b> {
    /// The whole document, at depth 0.
    pub(super) fn root(budget: &'b Budget) -> Self {
        Self { budget, depth: 0 }
    }

    fn nested<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > self.budget.max_depth {
            return Err(E::custom(format_args!(
                "nesting is deeper than {} levels; refusing it",
                self.budget.max_depth
            )));
        }
        Ok(Self { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.spend()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.spend()?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("numbers must be finite (.nan and .inf are not accepted)"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.spend()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.spend()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.spend()?;
        let item = self.nested()?;
        let mut items = Vec::new();
        while let Some(value) = self
            .budget
            .within(Segment::Index(items.len()), || seq.next_element_seed(item))?
        {
            items.push(value);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.spend()?;
        let item = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(item)? {
            let key = match key {
                Value::String(key) => key,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(de::Error::custom(format_args!(
                        "mapping keys must be strings, found {}",
                        kind_of(&other)
                    )));
                }
            };
            let value = self
                .budget
                .within(Segment::Key(&key), || map.next_value_seed(item))?;
            if object.contains_key(&key) {
                let mapping = self.budget.path.borrow().clone();
                self.budget
                    .duplicate_keys
                    .borrow_mut()
                    .push(DuplicateKey { mapping, key });
            } else {
                object.insert(key, value);
            }
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags (such as !Tag value) are not supported in configs",
        ))
    }

    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported in configs"))
    }
}
