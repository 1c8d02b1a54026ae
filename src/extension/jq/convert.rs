//! Between JSON values and jaq's.

use jaq_json::{Num, Val};
use serde_json::{Map, Value};

/// The deepest nesting a program's output may have: serde_json's own limit for parsing.
pub(crate) const MAX_DEPTH: usize = 128;

/// A JSON value as a jq value.
pub(crate) fn to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Val::Num(Num::from_integral(i)),
            (None, Some(u)) => Val::Num(Num::from_integral(u)),
            _ => Val::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => items.iter().map(to_val).collect(),
        Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::from(k.clone()), to_val(v)))
                .collect(),
        ),
    }
}

/// A jq value as JSON: non-finite numbers become null (as jq writes them), byte strings and
/// text are read as UTF-8 (lossily), and keys that are not strings are written as JSON. A
/// value nested deeper than [`MAX_DEPTH`] is refused, so that no later walk of it (a render,
/// a response, its drop) recurses deeper than a request body may.
pub(crate) fn from_val(value: &Val) -> Result<Value, String> {
    from_val_at(value, 0)
}

fn from_val_at(value: &Val, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("its output nests deeper than {MAX_DEPTH} levels"));
    }
    let inner = |v: &Val| from_val_at(v, depth + 1);
    Ok(match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number(n),
        Val::TStr(bytes) | Val::BStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(items.iter().map(inner).collect::<Result<_, _>>()?),
        Val::Obj(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Val::TStr(bytes) | Val::BStr(bytes) => {
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                        other => inner(other)?.to_string(),
                    };
                    Ok((key, inner(v)?))
                })
                .collect::<Result<Map<_, _>, String>>()?,
        ),
    })
}

fn number(n: &Num) -> Value {
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::BigInt(big) => {
            let text = big.to_string();
            text.parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<u64>().map(Value::from))
                .unwrap_or_else(|_| float(text.parse::<f64>().unwrap_or(f64::NAN)))
        }
        Num::Float(f) => float(*f),
        Num::Dec(text) => {
            let text: &str = text;
            text.parse::<serde_json::Number>()
                .map(Value::Number)
                .unwrap_or_else(|_| float(text.parse::<f64>().unwrap_or(f64::NAN)))
        }
    }
}
