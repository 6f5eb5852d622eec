//! Request envelopes of both dialects, and the replies to them.
//!
//! One framed message is decoded into a [`Request`] whatever its dialect: a QGA envelope
//! (`{"execute", "arguments"?, "id"?}`) or, when it carries `"jsonrpc"`, a JSON-RPC 2.0 call
//! (`{"jsonrpc": "2.0", "method", "params"?, "id"?}`, and batches of them). Handlers see only the
//! command name and the argument object; [`encode_reply`] writes the answer back in the dialect
//! the request came in.

use crate::error::{CommandError, ErrorKind};
use crate::framer::MAX_DEPTH;
use crate::wire::write_qemu_json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which protocol a message spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// qemu-guest-agent's QMP-style envelope.
    Qga,
    /// JSON-RPC 2.0.
    JsonRpc,
}

/// A decoded request, ready for dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub dialect: Dialect,
    pub command: String,
    pub arguments: Map<String, Value>,
    /// The id to echo. For JSON-RPC, `None` marks a notification, which gets no reply.
    pub id: Option<Value>,
}

/// A message that is not a valid request, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub dialect: Dialect,
    pub id: Option<Value>,
    pub error: CommandError,
}

/// The result of decoding one framed message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Single(Result<Request, Rejection>),
    /// A JSON-RPC batch: each element stands alone, the replies go back as one array.
    Batch(Vec<Result<Request, Rejection>>),
}

/// Decodes one framed message. `fallback` is the dialect used to report a message whose own
/// dialect cannot be told (unparseable JSON): the session passes the dialect it last saw.
pub fn decode(message: &[u8], fallback: Dialect) -> Decoded {
    let value = match parse_json(message) {
        Ok(value) => value,
        Err(e) => {
            return Decoded::Single(Err(Rejection {
                dialect: fallback,
                // JSON-RPC answers an unparseable request with `"id": null`.
                id: (fallback == Dialect::JsonRpc).then_some(Value::Null),
                error: parse_error(message, &e),
            }));
        }
    };
    match value {
        Value::Object(map) if map.contains_key("jsonrpc") => Decoded::Single(decode_jsonrpc(map)),
        Value::Object(map) => Decoded::Single(decode_qga(map)),
        Value::Array(items) if is_jsonrpc_batch(&items) => Decoded::Batch(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(map) => decode_jsonrpc(map),
                    _ => Err(invalid_jsonrpc(None, "batch element is not an object")),
                })
                .collect(),
        ),
        _ => Decoded::Single(Err(match fallback {
            Dialect::JsonRpc => invalid_jsonrpc(None, "request is not an object"),
            Dialect::Qga => qga_rejection(None, "QMP input must be a JSON object"),
        })),
    }
}

/// Parses one JSON text, allowing qemu's nesting depth (1024) rather than serde_json's 128.
///
/// serde_json's recursion limit is lifted only after a linear pre-scan has proved the depth within
/// [`MAX_DEPTH`], so the recursive parse (a few hundred bytes of stack per level) stays bounded
/// whoever calls this.
pub fn parse_json(message: &[u8]) -> Result<Value, String> {
    if nesting_depth(message) > MAX_DEPTH {
        return Err(format!(
            "JSON nesting depth limit exceeded ({MAX_DEPTH} levels)"
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(message);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// The deepest bracket nesting outside strings.
fn nesting_depth(message: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while let Some(&byte) = message.get(i) {
        i += 1;
        match byte {
            b'"' => i = string_end(message, i),
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The index just past the closing quote of the string whose contents start at `from` (the
/// message's length when it is unterminated). Skips runs of plain bytes with memchr: a file
/// write's megabytes of base64 are one string.
fn string_end(message: &[u8], mut from: usize) -> usize {
    loop {
        let rest = message.get(from..).unwrap_or_default();
        match memchr::memchr2(b'"', b'\\', rest) {
            None => return message.len(),
            // A backslash: skip it and the byte it escapes.
            Some(at) if rest.get(at) == Some(&b'\\') => from += at + 2,
            Some(at) => return from + at + 1,
        }
    }
}

/// A parse error in qemu's words where its grammar explains it, else in serde's.
fn parse_error(message: &[u8], error: &str) -> CommandError {
    let reason = crate::qemu_json::diagnose(message).unwrap_or_else(|| error.to_string());
    CommandError::new(ErrorKind::Parse, format!("JSON parse error, {reason}"))
}

fn is_jsonrpc_batch(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .any(|item| item.as_object().is_some_and(|m| m.contains_key("jsonrpc")))
}

fn qga_rejection(id: Option<Value>, desc: impl Into<String>) -> Rejection {
    Rejection {
        dialect: Dialect::Qga,
        id,
        error: CommandError::new(ErrorKind::InvalidRequest, desc),
    }
}

/// Checks a QGA envelope the way qemu's qmp_dispatch does, with its texts.
fn decode_qga(mut map: Map<String, Value>) -> Result<Request, Rejection> {
    let id = map.get("id").cloned();
    for (key, value) in &map {
        match key.as_str() {
            "execute" if !value.is_string() => {
                return Err(qga_rejection(
                    id,
                    "QMP input member 'execute' must be a string",
                ))
            }
            "arguments" if !value.is_object() => {
                // qemu drops the id when `arguments` is malformed.
                return Err(qga_rejection(
                    None,
                    "QMP input member 'arguments' must be an object",
                ));
            }
            "execute" | "arguments" | "id" => {}
            other => {
                let desc = format!("QMP input member '{other}' is unexpected");
                return Err(qga_rejection(id, desc));
            }
        }
    }
    let Some(Value::String(command)) = map.remove("execute") else {
        return Err(qga_rejection(id, "QMP input lacks member 'execute'"));
    };
    let arguments = match map.remove("arguments") {
        Some(Value::Object(arguments)) => arguments,
        _ => Map::new(),
    };
    Ok(Request {
        dialect: Dialect::Qga,
        command,
        arguments,
        id,
    })
}

fn invalid_jsonrpc(id: Option<Value>, why: &str) -> Rejection {
    Rejection {
        dialect: Dialect::JsonRpc,
        // JSON-RPC answers an unidentifiable request with `"id": null`.
        id: Some(id.unwrap_or(Value::Null)),
        error: CommandError::new(ErrorKind::InvalidRequest, format!("Invalid Request: {why}")),
    }
}

fn decode_jsonrpc(mut map: Map<String, Value>) -> Result<Request, Rejection> {
    let id = match map.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => return Err(invalid_jsonrpc(None, "id must be a string, number or null")),
    };
    if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid_jsonrpc(id, "member 'jsonrpc' must be \"2.0\""));
    }
    let Some(Value::String(command)) = map.remove("method") else {
        return Err(invalid_jsonrpc(id, "member 'method' must be a string"));
    };
    let arguments = match map.remove("params") {
        None => Map::new(),
        Some(Value::Object(params)) => params,
        Some(Value::Array(params)) if params.is_empty() => Map::new(),
        Some(Value::Array(_)) => {
            return Err(Rejection {
                dialect: Dialect::JsonRpc,
                id: Some(id.unwrap_or(Value::Null)),
                error: CommandError::invalid_params("params must be an object (by-name)"),
            })
        }
        Some(_) => return Err(invalid_jsonrpc(id, "member 'params' must be an object")),
    };
    Ok(Request {
        dialect: Dialect::JsonRpc,
        command,
        arguments,
        id,
    })
}

#[derive(Serialize)]
struct QgaReturn<'a> {
    #[serde(rename = "return")]
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
}

#[derive(Serialize)]
struct QgaErrorBody<'a> {
    class: &'static str,
    desc: &'a str,
}

#[derive(Serialize)]
struct QgaError<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    error: QgaErrorBody<'a>,
}

#[derive(Serialize)]
struct RpcResult<'a> {
    jsonrpc: &'static str,
    result: &'a Value,
    id: &'a Value,
}

#[derive(Serialize)]
struct RpcErrorData {
    class: &'static str,
}

#[derive(Serialize)]
struct RpcErrorBody<'a> {
    code: i64,
    message: &'a str,
    data: RpcErrorData,
}

#[derive(Serialize)]
struct RpcError<'a> {
    jsonrpc: &'static str,
    error: RpcErrorBody<'a>,
    id: &'a Value,
}

/// The JSON of one reply, without framing; `None` for a JSON-RPC notification.
pub fn reply_value(
    dialect: Dialect,
    id: Option<&Value>,
    outcome: &Result<Value, CommandError>,
) -> Option<Value> {
    let mut out = Vec::new();
    write_reply(&mut out, dialect, id, outcome)?;
    serde_json::from_slice(&out).ok()
}

/// Appends one reply (JSON and its trailing newline) to `out`; writes nothing for a JSON-RPC
/// notification. Returns whether anything was written.
pub fn encode_reply(
    out: &mut Vec<u8>,
    dialect: Dialect,
    id: Option<&Value>,
    outcome: &Result<Value, CommandError>,
) -> bool {
    let written = write_reply(out, dialect, id, outcome).is_some();
    if written {
        out.push(b'\n');
    }
    written
}

/// Stands in for a streamed member while the rest of the reply is encoded. Only a client's own
/// `id` could contain it; [`encode_reply_around`] then declines and the caller encodes normally.
const STREAM_PLACEHOLDER: &str = "porthole:streamed-member:8d2f61c4";

/// Encodes a successful reply whose string member `field` of `value` is written separately
/// (a large base64 payload, encoded while it is sent): returns the reply's bytes before and after
/// that string's contents, quotes included on each side. `None` for a JSON-RPC notification, or
/// if the reply cannot be split unambiguously.
pub fn encode_reply_around(
    dialect: Dialect,
    id: Option<&Value>,
    mut value: Value,
    field: &str,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let slot = value.as_object_mut()?;
    slot.insert(field.to_string(), Value::String(STREAM_PLACEHOLDER.into()));
    let mut out = Vec::new();
    if !encode_reply(&mut out, dialect, id, &Ok(value)) {
        return None;
    }
    let needle = STREAM_PLACEHOLDER.as_bytes();
    let mut hits = out
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    let (at, _) = hits.next()?;
    if hits.next().is_some() {
        return None;
    }
    let suffix = out.split_off(at + needle.len());
    out.truncate(at);
    Some((out, suffix))
}

/// Appends the replies of a JSON-RPC batch as one array (nothing if every element was a
/// notification).
pub fn encode_batch(out: &mut Vec<u8>, replies: &[(Option<Value>, Result<Value, CommandError>)]) {
    let values: Vec<Value> = replies
        .iter()
        .filter_map(|(id, outcome)| reply_value(Dialect::JsonRpc, id.as_ref(), outcome))
        .collect();
    if values.is_empty() {
        return;
    }
    if write_qemu_json(out, &values).is_ok() {
        out.push(b'\n');
    }
}

fn write_reply(
    out: &mut Vec<u8>,
    dialect: Dialect,
    id: Option<&Value>,
    outcome: &Result<Value, CommandError>,
) -> Option<()> {
    let written = match (dialect, outcome) {
        (Dialect::Qga, Ok(value)) => write_qemu_json(out, &QgaReturn { value, id }),
        (Dialect::Qga, Err(e)) => write_qemu_json(
            out,
            &QgaError {
                id,
                error: QgaErrorBody {
                    class: e.kind.qga_class(),
                    desc: &e.desc,
                },
            },
        ),
        (Dialect::JsonRpc, Ok(result)) => write_qemu_json(
            out,
            &RpcResult {
                jsonrpc: "2.0",
                result,
                id: id?,
            },
        ),
        (Dialect::JsonRpc, Err(e)) => write_qemu_json(
            out,
            &RpcError {
                jsonrpc: "2.0",
                error: RpcErrorBody {
                    code: e.kind.jsonrpc_code(),
                    message: &e.desc,
                    data: RpcErrorData {
                        class: e.kind.qga_class(),
                    },
                },
                id: id?,
            },
        ),
    };
    written.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nesting_depth_skips_strings_and_escapes() {
        let cases: [(&[u8], usize); 7] = [
            (br#"{"a":[1,{"b":2}]}"#, 3),
            (br#"{"a":"[[[{{{"}"#, 1),
            (br#"{"a":"\"[[[","b":[[]]}"#, 3),
            (br#"{"a":"x\\"}"#, 1),
            (br#"{"a":"x\\",[[1]]}"#, 3),
            (br#"[[["unterminated [[[["#, 3),
            (br#"["ends in a backslash \"#, 1),
        ];
        for (input, depth) in cases {
            assert_eq!(
                nesting_depth(input),
                depth,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    fn single(input: &str) -> Result<Request, Rejection> {
        match decode(input.as_bytes(), Dialect::Qga) {
            Decoded::Single(r) => r,
            Decoded::Batch(_) => Err(qga_rejection(None, "unexpected batch")),
        }
    }

    fn desc(input: &str) -> String {
        match single(input) {
            Ok(r) => format!("OK {}", r.command),
            Err(r) => r.error.desc,
        }
    }

    #[test]
    fn qga_envelope_errors_use_qemu_texts() {
        assert_eq!(desc("[1,2]"), "QMP input must be a JSON object");
        assert_eq!(
            desc(r#"{"arguments":{}}"#),
            "QMP input lacks member 'execute'"
        );
        assert_eq!(
            desc(r#"{"execute":"x","arguments":[]}"#),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            desc(r#"{"execute":"x","exec-oob":1}"#),
            "QMP input member 'exec-oob' is unexpected"
        );
        assert_eq!(
            desc(r#"{"execute":1}"#),
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(desc("hello"), "JSON parse error, invalid keyword 'hello'");
        assert_eq!(desc(r#"{"execute":"guest-ping"}"#), "OK guest-ping");
    }

    #[test]
    fn qga_reply_layout_matches_qemu() {
        let mut out = Vec::new();
        encode_reply(&mut out, Dialect::Qga, Some(&json!("a")), &Ok(json!({})));
        let err = CommandError::command_not_found("guest-nope");
        encode_reply(&mut out, Dialect::Qga, Some(&json!(5)), &Err(err));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"return\": {}, \"id\": \"a\"}\n{\"id\": 5, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command guest-nope has not been found\"}}\n"
        );
    }

    #[test]
    fn jsonrpc_requests_and_errors() {
        let req = single(r#"{"jsonrpc":"2.0","method":"guest-ping","params":{"a":1},"id":7}"#);
        assert!(matches!(&req, Ok(r) if r.dialect == Dialect::JsonRpc && r.id == Some(json!(7))));
        let bad = single(r#"{"jsonrpc":"1.0","method":"x","id":1}"#);
        assert!(matches!(&bad, Err(r) if r.error.kind == ErrorKind::InvalidRequest));
        let mut out = Vec::new();
        let err = CommandError::command_not_found("nope");
        encode_reply(&mut out, Dialect::JsonRpc, Some(&json!(1)), &Err(err));
        let reply: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(reply["error"]["code"], json!(-32601));
        assert_eq!(reply["id"], json!(1));
        // Notifications get no reply.
        let mut out = Vec::new();
        assert!(!encode_reply(
            &mut out,
            Dialect::JsonRpc,
            None,
            &Ok(json!(1))
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn jsonrpc_batch_decodes_each_element() {
        let batch = decode(
            br#"[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b"},3]"#,
            Dialect::Qga,
        );
        let Decoded::Batch(items) = batch else {
            panic!("expected a batch");
        };
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
    }

    /// qemu accepts 1024 levels; the parse must fit a small thread stack even in debug builds.
    #[test]
    fn nesting_up_to_1024_parses_on_a_small_stack() -> std::thread::Result<()> {
        std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(|| {
                let deep = |n: usize| {
                    format!(
                        r#"{{"execute":"x","arguments":{{"a":{}1{}}}}}"#,
                        "[".repeat(n),
                        "]".repeat(n)
                    )
                };
                assert!(single(&deep(1022)).is_ok());
                let too_deep = single(&deep(1023)).err().map(|r| r.error.desc);
                assert_eq!(
                    too_deep.as_deref(),
                    Some("JSON parse error, JSON nesting depth limit exceeded (1024 levels)")
                );
            })
            .map_err(|e| Box::new(e) as Box<dyn std::any::Any + Send>)?
            .join()
    }

    #[test]
    fn streamed_member_splits_the_reply() {
        let value = json!({"count": 3, "buf-b64": "", "eof": true});
        let (before, after) =
            encode_reply_around(Dialect::Qga, Some(&json!(7)), value.clone(), "buf-b64")
                .expect("split");
        let whole = [before.as_slice(), b"YWJj", after.as_slice()].concat();
        assert_eq!(
            String::from_utf8_lossy(&whole),
            "{\"return\": {\"buf-b64\": \"YWJj\", \"count\": 3, \"eof\": true}, \"id\": 7}\n"
        );
        let rpc = encode_reply_around(Dialect::JsonRpc, Some(&json!(1)), value.clone(), "buf-b64");
        assert!(rpc.is_some());
        // A client id holding the placeholder: no split, the caller encodes normally.
        let sneaky = json!(STREAM_PLACEHOLDER);
        assert!(encode_reply_around(Dialect::Qga, Some(&sneaky), value, "buf-b64").is_none());
    }

    #[test]
    fn parse_errors_follow_the_fallback_dialect() {
        let Decoded::Single(Err(r)) = decode(b"{\"a\":", Dialect::JsonRpc) else {
            panic!("expected a rejection");
        };
        assert_eq!(r.dialect, Dialect::JsonRpc);
        assert_eq!(r.error.kind, ErrorKind::Parse);
    }
}
