//! The wire protocol between the runtime and a process plugin (docs/PLUGIN_PROTOCOL.md).
//!
//! JSON-RPC 2.0, one JSON object per line, UTF-8. The runtime sends requests on the plugin's
//! stdin and the plugin answers on its stdout, in any order, matched by id. Both sides read
//! lines with [`read_line`], which refuses a line longer than the agreed maximum instead of
//! buffering it without end.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The protocol version this runtime speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default longest line either side sends, newline excluded: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Method names.
pub mod method {
    /// The handshake: first, once.
    pub const INITIALIZE: &str = "initialize";
    /// One call of an operation.
    pub const CALL: &str = "call";
    /// Hand the state over (old process, after its last call).
    pub const EXPORT: &str = "state/export";
    /// Take the predecessor's state (new process, before its first call).
    pub const IMPORT: &str = "state/import";
    /// Finish; stdin closes after the answer.
    pub const SHUTDOWN: &str = "shutdown";
    /// A notification from the plugin: its latest state, to keep as a checkpoint.
    pub const CHECKPOINT: &str = "state/checkpoint";
}

/// Error codes: JSON-RPC's own, and [`error_code::FAILED`] for an operation that failed.
pub mod error_code {
    /// The line is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params are wrong for the method.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The plugin failed outside the operation.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The operation failed; the plugin goes on serving.
    pub const FAILED: i64 = 1;
}

/// `initialize`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// The runtime's [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The instance's name in the config.
    pub name: String,
    /// The entry's `config.settings` (an empty object when absent).
    pub config: Value,
    /// The longest line either side may send.
    pub max_line_bytes: usize,
    /// The largest state a `state/checkpoint` may carry, as compact JSON (a runtime that does
    /// not say: [`DEFAULT_CHECKPOINT_LIMIT`](crate::plugin::DEFAULT_CHECKPOINT_LIMIT)).
    #[serde(default = "default_checkpoint_bytes")]
    pub max_checkpoint_bytes: usize,
}

fn default_checkpoint_bytes() -> usize {
    crate::extension::plugin::DEFAULT_CHECKPOINT_LIMIT
}

/// `initialize`'s answer: what the plugin is and offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The protocol version the plugin speaks; must equal the runtime's.
    pub protocol_version: u32,
    /// The plugin's kind, such as `counter`.
    pub kind: String,
    /// The plugin's version, shown in status.
    pub version: String,
    /// The operations `call` accepts.
    pub ops: Vec<String>,
    /// Step types the plugin contributes: a step of one is a `call` with the type as op.
    #[serde(default)]
    pub step_types: Vec<String>,
}

/// `call`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallParams {
    /// The operation.
    pub op: String,
    /// Its arguments (null when none).
    #[serde(default)]
    pub args: Value,
}

/// `state/import`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportParams {
    /// What the predecessor's `state/export` answered.
    pub state: Value,
}

/// `state/checkpoint`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointParams {
    /// The plugin's state, any JSON value: what a successor's `state/import` gets.
    pub state: Value,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// One of [`error_code`], or the plugin's own.
    pub code: i64,
    /// What went wrong, for people.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// One request line, without its newline.
pub fn request_line(id: u64, method: &str, params: &Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct Request<'a> {
        jsonrpc: &'static str,
        id: u64,
        method: &'a str,
        params: &'a Value,
    }
    let request = Request {
        jsonrpc: "2.0",
        id,
        method,
        params,
    };
    // A Value and plain fields always serialize.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// One notification line (a request without an id, never answered), without its newline.
pub fn notification_line(method: &str, params: &Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct Notification<'a> {
        jsonrpc: &'static str,
        method: &'a str,
        params: &'a Value,
    }
    let notification = Notification {
        jsonrpc: "2.0",
        method,
        params,
    };
    // A Value and plain fields always serialize.
    serde_json::to_vec(&notification).unwrap_or_default()
}

/// One response line, without its newline. `id` is null when the request's id was unreadable.
pub fn response_line(id: Value, result: Result<Value, RpcError>) -> Vec<u8> {
    let mut response = Map::new();
    response.insert("jsonrpc".into(), "2.0".into());
    response.insert("id".into(), id);
    match result {
        Ok(value) => response.insert("result".into(), value),
        Err(error) => response.insert(
            "error".into(),
            serde_json::to_value(error).unwrap_or_default(),
        ),
    };
    serde_json::to_vec(&Value::Object(response)).unwrap_or_default()
}

/// A response as the runtime reads it.
#[derive(Debug, PartialEq)]
pub struct Response {
    /// The request it answers.
    pub id: u64,
    /// The result, or the error.
    pub result: Result<Value, RpcError>,
}

/// Reads one response line; `Err` says why the line is not one.
pub fn parse_response(line: &[u8]) -> Result<Response, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(object) = value else {
        return Err("not a JSON object".into());
    };
    response_of(object)
}

fn response_of(mut object: Map<String, Value>) -> Result<Response, String> {
    let id = object
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("a response without a numeric \"id\"")?;
    let result = match (object.remove("result"), object.remove("error")) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(serde_json::from_value::<RpcError>(error)
            .map_err(|e| format!("an \"error\" that is not {{code, message}} ({e})"))?),
        _ => return Err("a response needs exactly one of \"result\" and \"error\"".into()),
    };
    Ok(Response { id, result })
}

/// A line from a plugin, as the runtime reads it: an answer, or a notification of its own.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The answer to a request.
    Response(Response),
    /// A notification (`method` and no `id`), such as `state/checkpoint`.
    Notification {
        /// Which notification.
        method: String,
        /// Its params (null when absent).
        params: Value,
    },
}

/// Reads one line from a plugin: a response, or (a `method` and no `id`) a notification; `Err`
/// says why the line is neither.
pub fn parse_incoming(line: &[u8]) -> Result<Incoming, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(mut object) = value else {
        return Err("not a JSON object".into());
    };
    if !object.contains_key("id")
        && let Some(Value::String(method)) = object.remove("method")
    {
        let params = object.remove("params").unwrap_or(Value::Null);
        return Ok(Incoming::Notification { method, params });
    }
    response_of(object).map(Incoming::Response)
}

/// A request as a plugin reads it.
#[derive(Debug, PartialEq, Deserialize)]
pub struct Request {
    /// Echoed in the answer.
    pub id: Value,
    /// Which method.
    pub method: String,
    /// Its params.
    #[serde(default)]
    pub params: Value,
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, in the buffer, without its newline.
    Complete,
    /// The other side closed the stream (a partial last line is dropped).
    End,
    /// The line passed the limit; what was read of it is discarded.
    TooLong,
}

/// Reads one line into `line` (cleared first), refusing to buffer more than `max` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        let (consumed, found) = take_line(available, line, max);
        reader.consume(consumed);
        if let Some(found) = found {
            return Ok(found);
        }
    }
}

/// [`read_line`] for blocking readers (a plugin's stdin).
pub fn read_line_blocking<R: std::io::BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    line.clear();
    loop {
        let available = reader.fill_buf()?;
        let (consumed, found) = take_line(available, line, max);
        reader.consume(consumed);
        if let Some(found) = found {
            return Ok(found);
        }
    }
}

/// Moves what `available` holds of the current line into `line`: how many bytes to consume,
/// and what was found, if the line is decided.
fn take_line(available: &[u8], line: &mut Vec<u8>, max: usize) -> (usize, Option<Line>) {
    if available.is_empty() {
        return (0, Some(Line::End));
    }
    let newline = available.iter().position(|&b| b == b'\n');
    let taken = newline.unwrap_or(available.len());
    let consumed = newline.map_or(taken, |at| at + 1);
    if line.len() + taken > max {
        line.clear();
        return (consumed, Some(Line::TooLong));
    }
    line.extend_from_slice(&available[..taken]);
    (consumed, newline.map(|_| Line::Complete))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn lines_past_the_limit_are_refused_and_the_next_line_still_reads() {
        let input: &[u8] = b"{\"a\":1}\nxxxxxxxxxxxxxxxxxxxx\n{}\npartial";
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut line, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"{\"a\":1}");
        assert_eq!(
            read_line(&mut reader, &mut line, 10).await.unwrap(),
            Line::TooLong
        );
        // What is left of the long line comes in pieces, each within the limit.
        let mut rest = 0;
        while read_line(&mut reader, &mut line, 10).await.unwrap() == Line::TooLong {
            rest += 1;
        }
        assert!(line.iter().all(|&b| b == b'x') && rest < 5);
        assert_eq!(
            read_line(&mut reader, &mut line, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"{}");
        assert_eq!(
            read_line(&mut reader, &mut line, 10).await.unwrap(),
            Line::End
        );
    }

    #[test]
    fn responses_need_an_id_and_exactly_one_outcome() {
        let ok = parse_response(br#"{"jsonrpc":"2.0","id":3,"result":null}"#).unwrap();
        assert_eq!(
            ok,
            Response {
                id: 3,
                result: Ok(Value::Null)
            }
        );
        let failed =
            parse_response(br#"{"jsonrpc":"2.0","id":4,"error":{"code":1,"message":"no"}}"#);
        assert_eq!(failed.unwrap().result, Err(RpcError::new(1, "no")));
        assert!(
            parse_response(b"this is not json")
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert!(
            parse_response(br#"{"id":1}"#)
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(
            parse_response(br#"{"result":1}"#)
                .unwrap_err()
                .contains("\"id\"")
        );
    }

    #[test]
    fn a_checkpoint_notification_reads_back_and_a_line_without_an_id_or_method_is_refused() {
        let line = notification_line(method::CHECKPOINT, &json!({"state": {"count": 17}}));
        assert_eq!(
            String::from_utf8_lossy(&line),
            r#"{"jsonrpc":"2.0","method":"state/checkpoint","params":{"state":{"count":17}}}"#
        );
        let Incoming::Notification { method, params } = parse_incoming(&line).unwrap() else {
            panic!("not a notification")
        };
        assert_eq!(method, "state/checkpoint");
        let params: CheckpointParams = serde_json::from_value(params).unwrap();
        assert_eq!(params.state, json!({"count": 17}));
        let answer = parse_incoming(br#"{"jsonrpc":"2.0","id":3,"result":null}"#).unwrap();
        assert!(matches!(answer, Incoming::Response(Response { id: 3, .. })));
        assert!(parse_incoming(br#"{"jsonrpc":"2.0"}"#).is_err());
        // An older runtime's initialize says nothing of checkpoints: the default bound.
        let params: InitializeParams = serde_json::from_value(
            json!({"protocolVersion": 1, "name": "a", "config": {}, "maxLineBytes": 1024}),
        )
        .unwrap();
        assert_eq!(params.max_checkpoint_bytes, 1 << 20);
    }

    #[test]
    fn a_request_line_reads_back_as_the_request() {
        let line = request_line(7, method::CALL, &json!({"op": "get", "args": null}));
        let request: Request = serde_json::from_slice(&line).unwrap();
        assert_eq!(request.id, json!(7));
        assert_eq!(request.method, "call");
        let params: CallParams = serde_json::from_value(request.params).unwrap();
        assert_eq!(params.op, "get");
        let answer = response_line(json!(7), Err(RpcError::new(error_code::FAILED, "no")));
        assert_eq!(
            parse_response(&answer).unwrap().result,
            Err(RpcError::new(1, "no"))
        );
    }
}
