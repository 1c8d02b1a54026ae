//! Between JSON and SQL: parameters bound from rendered templates, and rows read as JSON.
//!
//! | SQL type | a row's JSON | a parameter from JSON |
//! |---|---|---|
//! | NULL | `null` | `null` |
//! | SQLite INTEGER, PostgreSQL `int2`/`int4`/`int8` | number | a number, or a string of one |
//! | SQLite REAL, PostgreSQL `float4`/`float8` | number (`null` for NaN and infinities) | a number, or a string of one |
//! | a SQLite column declared BOOLEAN, PostgreSQL `bool` | `true`/`false` | `true`/`false` (or `"true"`/`"false"`) |
//! | SQLite TEXT, PostgreSQL `text`/`varchar`/`char`/`name` | string | a string (numbers and booleans as their text) |
//! | PostgreSQL `json`/`jsonb` | the value | any value |
//! | PostgreSQL `uuid` | string | a string |
//! | PostgreSQL `timestamptz`, `timestamp`, `date` | RFC 3339 string (UTC), without `Z`, `YYYY-MM-DD` | a string of that form |
//! | SQLite BLOB, PostgreSQL `bytea` | base64 string | a base64 string (PostgreSQL) |
//!
//! SQLite keeps what it is given, converted by the column's affinity; a string that is a
//! canonical integer (`"42"`, not `"042"`) is bound as that integer, so that `WHERE id = $1`
//! finds the rowid key from a path's text (a TEXT column turns it back into the same text; a
//! column declared without a type keeps the integer). An object or array is bound as its JSON
//! text. PostgreSQL types every
//! parameter: the store asks the server once per statement which type each `$n` has and
//! converts the JSON value to it, so `WHERE id = $1` takes `"42"` from a path. Other
//! PostgreSQL types (`numeric`, arrays, ...) are cast in the SQL: `$1::text::numeric` for a
//! parameter, `price::text` for a column.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// Seconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const PG_EPOCH: u64 = 946_684_800;

/// The SQLite arguments of `params`.
pub(super) fn sqlite_arguments(params: &[Value]) -> Result<SqliteArguments<'static>, String> {
    use sqlx::Arguments as _;
    let mut arguments = SqliteArguments::default();
    for value in params {
        let added = match value {
            Value::Null => arguments.add(None::<i64>),
            Value::Bool(b) => arguments.add(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => arguments.add(i),
                None => arguments.add(n.as_f64().unwrap_or(f64::NAN)),
            },
            // A path's "42" must find the rowid key 42, which SQLite compares without
            // converting text. A canonical integer's text binds as the integer: a TEXT column
            // turns it back into the very same text.
            Value::String(s) => match s.parse::<i64>() {
                Ok(i) if i.to_string() == *s => arguments.add(i),
                _ => arguments.add(s.clone()),
            },
            other => arguments.add(other.to_string()),
        };
        added.map_err(|e| e.to_string())?;
    }
    Ok(arguments)
}

/// A SQLite row as a JSON object, by column name.
pub(super) fn sqlite_row(row: &SqliteRow) -> Result<Value, String> {
    use sqlx::Decode;
    let mut object = Map::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let declared_bool = column.type_info().name() == "BOOLEAN";
            let dynamic = raw.type_info().name().to_owned();
            let decoded = match dynamic.as_str() {
                "INTEGER" if declared_bool => {
                    <bool as Decode<Sqlite>>::decode(raw).map(Value::Bool)
                }
                "INTEGER" => <i64 as Decode<Sqlite>>::decode(raw).map(Value::from),
                "REAL" => <f64 as Decode<Sqlite>>::decode(raw).map(float),
                "BLOB" => {
                    <Vec<u8> as Decode<Sqlite>>::decode(raw).map(|b| Value::String(base64(&b)))
                }
                _ => <String as Decode<Sqlite>>::decode(raw).map(Value::String),
            };
            decoded.map_err(|e| format!("column {:?}: {e}", column.name()))?
        };
        object.insert(column.name().to_owned(), value);
    }
    Ok(Value::Object(object))
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One PostgreSQL parameter, converted to the type the server gave its `$n`.
#[derive(Debug)]
pub(super) struct PgParam {
    type_info: PgTypeInfo,
    /// Its binary encoding; `None` for NULL.
    bytes: Option<Vec<u8>>,
}

impl sqlx::Type<Postgres> for PgParam {
    fn type_info() -> PgTypeInfo {
        // Every value says its own type (`produces`).
        PgTypeInfo::with_name("text")
    }
}

impl sqlx::Encode<'_, Postgres> for PgParam {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match &self.bytes {
            None => Ok(sqlx::encode::IsNull::Yes),
            Some(bytes) => {
                buf.extend_from_slice(bytes);
                Ok(sqlx::encode::IsNull::No)
            }
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.type_info.clone())
    }
}

/// `value` as parameter `$n` of type `ty`, or why it cannot be.
pub(super) fn pg_param(value: &Value, ty: &PgTypeInfo, n: usize) -> Result<PgParam, String> {
    let name = ty.name().to_ascii_lowercase();
    let wrong = |expected: &str| {
        format!(
            "parameter ${n} ({name}) must be {expected}, not {}",
            short(value)
        )
    };
    let text = || match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let bytes = match (name.as_str(), value) {
        (_, Value::Null) => None,
        ("int2" | "int4" | "int8", _) => {
            let i = integer(value).ok_or_else(|| wrong("an integer"))?;
            Some(match name.as_str() {
                "int2" => i16::try_from(i)
                    .map_err(|_| wrong("an int2"))?
                    .to_be_bytes()
                    .to_vec(),
                "int4" => i32::try_from(i)
                    .map_err(|_| wrong("an int4"))?
                    .to_be_bytes()
                    .to_vec(),
                _ => i.to_be_bytes().to_vec(),
            })
        }
        ("float4" | "float8", _) => {
            let f = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            let f = f.ok_or_else(|| wrong("a number"))?;
            Some(match name.as_str() {
                "float4" => (f as f32).to_be_bytes().to_vec(),
                _ => f.to_be_bytes().to_vec(),
            })
        }
        ("bool", Value::Bool(b)) => Some(vec![u8::from(*b)]),
        ("bool", Value::String(s)) if s == "true" || s == "false" => {
            Some(vec![u8::from(s == "true")])
        }
        ("bool", _) => return Err(wrong("true or false")),
        ("text" | "varchar" | "bpchar" | "name" | "citext" | "unknown", _) => {
            Some(text().into_bytes())
        }
        ("json", _) => Some(value.to_string().into_bytes()),
        ("jsonb", _) => {
            // jsonb's binary form: a version byte, then the text.
            let mut bytes = vec![1];
            bytes.extend_from_slice(value.to_string().as_bytes());
            Some(bytes)
        }
        ("uuid", Value::String(s)) => Some(uuid_bytes(s).ok_or_else(|| wrong("a UUID"))?),
        ("timestamptz" | "timestamp", Value::String(s)) => {
            let micros = timestamp_micros(s).ok_or_else(|| wrong("an RFC 3339 timestamp"))?;
            Some(micros.to_be_bytes().to_vec())
        }
        ("date", Value::String(s)) => {
            let micros = timestamp_micros(&format!("{s}T00:00:00Z"))
                .ok_or_else(|| wrong("a date (YYYY-MM-DD)"))?;
            let days =
                i32::try_from(micros.div_euclid(86_400_000_000)).map_err(|_| wrong("a date"))?;
            Some(days.to_be_bytes().to_vec())
        }
        ("bytea", Value::String(s)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| wrong("base64 text"))?,
        ),
        ("uuid" | "timestamptz" | "timestamp" | "date" | "bytea", _) => {
            return Err(wrong("a string"));
        }
        _ => {
            return Err(format!(
                "parameter ${n} has type {name}, which is bound only from text: write ${n}::text::{name} in the SQL"
            ));
        }
    };
    Ok(PgParam {
        type_info: ty.clone(),
        bytes,
    })
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// What a value was, for an error: its text, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

fn uuid_bytes(text: &str) -> Option<Vec<u8>> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect()
}

/// Microseconds since 2000-01-01 of an RFC 3339 timestamp.
fn timestamp_micros(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(text))
        .ok()?;
    let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH);
    match at.duration_since(pg_epoch) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => i64::try_from(before.duration().as_micros())
            .ok()
            .map(|m| -m),
    }
}

/// One PostgreSQL value of a row as JSON, from its binary form.
pub(super) fn pg_value(raw: PgValueRef<'_>, column: &str) -> Result<Value, String> {
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_ascii_lowercase();
    let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
    let bad = || format!("column {column:?} ({type_name}): a value the server sent malformed");
    if raw.format() == PgValueFormat::Text {
        return Ok(Value::String(String::from_utf8_lossy(bytes).into_owned()));
    }
    let fixed = |n: usize| bytes.get(..n).filter(|_| bytes.len() == n).ok_or_else(bad);
    Ok(match type_name.as_str() {
        "bool" => Value::Bool(fixed(1)?[0] != 0),
        "int2" => Value::from(i16::from_be_bytes(array(fixed(2)?))),
        "int4" => Value::from(i32::from_be_bytes(array(fixed(4)?))),
        "int8" => Value::from(i64::from_be_bytes(array(fixed(8)?))),
        "float4" => float(f64::from(f32::from_be_bytes(array(fixed(4)?)))),
        "float8" => float(f64::from_be_bytes(array(fixed(8)?))),
        "text" | "varchar" | "bpchar" | "name" | "citext" | "unknown" => {
            Value::String(std::str::from_utf8(bytes).map_err(|_| bad())?.to_owned())
        }
        "json" => serde_json::from_slice(bytes).map_err(|_| bad())?,
        "jsonb" => serde_json::from_slice(bytes.get(1..).ok_or_else(bad)?).map_err(|_| bad())?,
        "uuid" => {
            let hex: String = fixed(16)?.iter().map(|b| format!("{b:02x}")).collect();
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        "timestamptz" | "timestamp" => {
            let micros = i64::from_be_bytes(array(fixed(8)?));
            let text = rfc3339(micros).ok_or_else(bad)?;
            Value::String(match type_name.as_str() {
                "timestamp" => text.trim_end_matches('Z').to_owned(),
                _ => text,
            })
        }
        "date" => {
            let days = i64::from(i32::from_be_bytes(array(fixed(4)?)));
            let text = rfc3339(days * 86_400_000_000).ok_or_else(bad)?;
            Value::String(text.get(..10).ok_or_else(bad)?.to_owned())
        }
        "bytea" => Value::String(base64(bytes)),
        other => {
            return Err(format!(
                "column {column:?} has type {other}, which reads only as text: select it as {column}::text"
            ));
        }
    })
}

/// `bytes`, which `fixed(N)` checked to hold exactly `N`, as an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().unwrap_or([0; N])
}

/// A time `micros` after 2000-01-01 as RFC 3339 in UTC, to the microsecond when it has any.
fn rfc3339(micros: i64) -> Option<String> {
    let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH);
    let offset = Duration::from_micros(micros.unsigned_abs());
    let at: SystemTime = if micros >= 0 {
        pg_epoch.checked_add(offset)?
    } else {
        pg_epoch.checked_sub(offset)?
    };
    // humantime writes years 0000 to 9999 only.
    at.duration_since(UNIX_EPOCH).ok()?;
    let text = if micros % 1_000_000 == 0 {
        humantime::format_rfc3339_seconds(at).to_string()
    } else {
        humantime::format_rfc3339_micros(at).to_string()
    };
    Some(text)
}
