//! The connection: raw calls and reply decoding, over a framed byte stream (`stream`, with the
//! `guest-sync-delimited` handshake) or a request/response transport (libvirt, which keeps the
//! agent in step itself, so there is no handshake of ours).

mod stream;

use crate::error::ClientError;
use crate::transport::{Connection, Endpoint, RequestTransport, Transport};
use porthole_proto::framer::RESET_BYTE;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use stream::StreamLink;

const SYNC_COMMAND: &str = "guest-sync-delimited";
/// Room left in a request or reply for everything but the base64 data of a chunk.
const ENVELOPE_ROOM: usize = 4096;

/// Timeouts and limits of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// For opening the transport.
    pub connect_timeout: Duration,
    /// For the `guest-sync-delimited` handshake, counted apart from the call that triggers it
    /// (streams only: libvirt synchronises within each call's own timeout).
    pub handshake_timeout: Duration,
    /// For the typed calls (`ping`, `info`, ...); [`Client::call`] takes its own.
    pub call_timeout: Duration,
    /// Largest reply accepted; larger ones fail without being buffered. qemu-ga's own input
    /// limit is 64 MiB, and a 48 MiB file read is about 64 MiB of base64.
    pub max_reply_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            max_reply_bytes: porthole_proto::framer::MAX_MESSAGE_BYTES,
        }
    }
}

/// How requests reach the agent.
enum Link {
    Stream(StreamLink),
    Requests(Box<dyn RequestTransport>),
}

/// One connection to a guest agent; see the crate docs.
pub struct Client {
    link: Link,
    options: Options,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let in_sync = match &self.link {
            Link::Stream(stream) => stream.in_sync,
            Link::Requests(_) => true,
        };
        f.debug_struct("Client")
            .field("transport", &self.describe())
            .field("options", &self.options)
            .field("in_sync", &in_sync)
            .finish()
    }
}

impl Client {
    /// Connects to an agent's unix socket and synchronises with it.
    pub fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, ClientError> {
        Self::connect(&Endpoint::Unix(path.as_ref().to_path_buf()), options)
    }

    /// Connects to `endpoint` and synchronises with the agent (a libvirt domain: neither; the
    /// first call finds out whether the domain and its agent are there).
    pub fn connect(endpoint: &Endpoint, options: Options) -> Result<Self, ClientError> {
        match endpoint.connect(options.connect_timeout)? {
            Connection::Stream(transport) => Self::with_transport(transport, options),
            Connection::Requests(transport) => Ok(Self::with_requests(transport, options)),
        }
    }

    /// Synchronises with the agent over an already open transport.
    pub fn with_transport(
        transport: Box<dyn Transport>,
        options: Options,
    ) -> Result<Self, ClientError> {
        let mut client = Self {
            link: Link::Stream(StreamLink::new(transport, options.max_reply_bytes)),
            options,
        };
        client.sync()?;
        Ok(client)
    }

    /// A client over a request/response transport, which keeps the agent in step itself.
    pub fn with_requests(transport: Box<dyn RequestTransport>, options: Options) -> Self {
        Self {
            link: Link::Requests(transport),
            options,
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Changes the timeout of the typed calls.
    pub fn set_call_timeout(&mut self, timeout: Duration) {
        self.options.call_timeout = timeout;
    }

    /// Where the connection leads, for messages.
    pub fn describe(&self) -> String {
        match &self.link {
            Link::Stream(stream) => stream.describe(),
            Link::Requests(transport) => transport.describe(),
        }
    }

    /// The largest reply this connection carries.
    pub fn max_reply_bytes(&self) -> usize {
        match &self.link {
            Link::Stream(_) => self.options.max_reply_bytes,
            Link::Requests(t) => t.max_reply_bytes().min(self.options.max_reply_bytes),
        }
    }

    /// Whether replies are limited below what the agent sends by default (libvirt's are), so
    /// calls that take a size should ask for no more than [`Client::reply_data_limit`].
    pub fn limits_replies(&self) -> bool {
        matches!(self.link, Link::Requests(_))
    }

    /// Raw bytes that fit one reply as base64, with room for the rest of the reply.
    pub fn reply_data_limit(&self) -> usize {
        base64_room(self.max_reply_bytes().saturating_sub(ENVELOPE_ROOM))
    }

    /// Raw bytes that fit one request as base64 beside `other` bytes of other arguments (a
    /// path, say); unlimited over a stream, about 95 KiB through virsh.
    pub fn request_data_limit(&self, other: usize) -> usize {
        match &self.link {
            Link::Stream(_) => usize::MAX,
            Link::Requests(t) => {
                base64_room(t.max_request_bytes().saturating_sub(ENVELOPE_ROOM + other))
            }
        }
    }

    /// Runs the `guest-sync-delimited` handshake on a stream; a no-op through
    /// libvirt, which synchronises before every command itself.
    pub fn sync(&mut self) -> Result<(), ClientError> {
        match &mut self.link {
            Link::Stream(stream) => stream.sync(self.options.handshake_timeout),
            Link::Requests(_) => Ok(()),
        }
    }

    fn ensure_sync(&mut self) -> Result<(), ClientError> {
        match &self.link {
            Link::Stream(stream) if !stream.in_sync => self.sync(),
            _ => Ok(()),
        }
    }

    /// Sends `command` and returns its `return` value; an `error` reply becomes
    /// [`ClientError::Agent`]. `arguments` is a JSON object, or `null` for none.
    pub fn call(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let request = build_request(command, arguments)?;
        self.ensure_sync()?;
        let max_reply = self.options.max_reply_bytes;
        match &mut self.link {
            Link::Stream(stream) => stream.call(command, &request, timeout),
            Link::Requests(transport) => {
                let reply = transport.exchange(command, &request, timeout, max_reply)?;
                decode_reply(command, &reply)
            }
        }
    }

    /// Sends a command that has no success response (guest-shutdown, guest-suspend-*): an error
    /// reply within `wait` is an error; silence, or the connection closing, is success.
    pub fn call_no_reply(
        &mut self,
        command: &str,
        arguments: Value,
        wait: Duration,
    ) -> Result<(), ClientError> {
        let request = build_request(command, arguments)?;
        self.ensure_sync()?;
        let max_reply = self.options.max_reply_bytes;
        match &mut self.link {
            Link::Stream(stream) => stream.call_no_reply(command, &request, wait),
            Link::Requests(transport) => {
                // libvirt reports an agent that never answers and one that goes quiet after
                // taking the command alike, so make sure it answers first.
                let ping = build_request("guest-ping", Value::Null)?;
                let reply = transport.exchange("guest-ping", &ping, wait, max_reply)?;
                decode_reply("guest-ping", &reply)?;
                match transport.exchange(command, &request, wait, max_reply) {
                    Ok(reply) => decode_reply(command, &reply).map(drop),
                    Err(e) if e.is_timeout() || matches!(e, ClientError::Closed { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Raw bytes whose base64 fits in `room` bytes.
fn base64_room(room: usize) -> usize {
    room / 4 * 3
}

/// The handshake's bytes: 0xFF, then `guest-sync-delimited` with a fresh id; and the id.
fn request_with_reset() -> Result<(Vec<u8>, i64), ClientError> {
    let id = sync_id();
    let mut request = vec![RESET_BYTE];
    request.extend(build_request(SYNC_COMMAND, json!({ "id": id }))?);
    Ok((request, id))
}

/// `timeout` from now; absurd timeouts (`Duration::MAX`) are cut to a year rather than
/// overflowing the clock.
fn deadline_after(timeout: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    Instant::now() + timeout.min(YEAR)
}

fn protocol(command: &str, detail: impl Into<String>) -> ClientError {
    ClientError::Protocol {
        command: command.into(),
        detail: detail.into(),
    }
}

/// A request envelope; a struct rather than a map so that `execute` comes first on the wire.
#[derive(Serialize)]
struct Envelope<'a> {
    execute: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a Map<String, Value>>,
}

/// `{"execute": command, "arguments": ...}` as bytes; `null` arguments are left out.
fn build_request(command: &str, arguments: Value) -> Result<Vec<u8>, ClientError> {
    let arguments = match &arguments {
        Value::Null => None,
        Value::Object(arguments) => Some(arguments),
        other => {
            return Err(ClientError::InvalidArguments {
                command: command.into(),
                detail: format!("arguments must be a JSON object, not {}", kind(other)),
            })
        }
    };
    request_bytes(
        command,
        &Envelope {
            execute: command,
            arguments,
        },
    )
}

fn request_bytes(command: &str, request: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(request).map_err(|e| ClientError::InvalidArguments {
        command: command.into(),
        detail: e.to_string(),
    })
}

fn is_sync_reply(message: &[u8], id: i64) -> bool {
    serde_json::from_slice::<Value>(message)
        .ok()
        .and_then(|v| v.get("return").and_then(Value::as_i64))
        == Some(id)
}

/// Turns one framed reply into its `return` value or the agent's error.
fn decode_reply(command: &str, message: &[u8]) -> Result<Value, ClientError> {
    let value: Value = serde_json::from_slice(message).map_err(|e| {
        protocol(
            command,
            format!("not valid JSON ({e}): {}", snippet(message)),
        )
    })?;
    let Value::Object(mut reply) = value else {
        return Err(protocol(
            command,
            format!("expected a JSON object, got {}", kind(&value)),
        ));
    };
    if let Some(value) = reply.remove("return") {
        return Ok(value);
    }
    match reply.remove("error") {
        Some(error) => Err(agent_error(command, &error)?),
        None => {
            let members: Vec<&str> = reply.keys().map(String::as_str).collect();
            Err(protocol(
                command,
                format!(
                    "a JSON object with neither 'return' nor 'error' (members: {})",
                    members.join(", ")
                ),
            ))
        }
    }
}

/// `{"class": ..., "desc": ...}` → [`ClientError::Agent`].
fn agent_error(command: &str, error: &Value) -> Result<ClientError, ClientError> {
    let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
    match (text("class"), text("desc")) {
        (Some(class), Some(desc)) => Ok(ClientError::Agent { class, desc }),
        _ => Err(protocol(
            command,
            format!(
                "'error' must be an object with string 'class' and 'desc', got {}",
                snippet(error.to_string().as_bytes())
            ),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The start of a message, for error texts.
fn snippet(message: &[u8]) -> String {
    const MAX: usize = 80;
    let shown = String::from_utf8_lossy(message.get(..MAX).unwrap_or(message)).into_owned();
    if message.len() > MAX {
        format!("{shown}...")
    } else {
        shown
    }
}

/// A sync id no earlier client is likely to have used: time, pid and a counter, mixed, kept
/// within 53 bits so that agents storing numbers as doubles echo it exactly.
fn sync_id() -> i64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ count.wrapping_mul(0x9E37_79B9);
    (splitmix64(seed) & ((1 << 53) - 1)) as i64
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_leave_out_null_arguments() -> Result<(), ClientError> {
        assert_eq!(
            build_request("guest-ping", Value::Null)?,
            br#"{"execute":"guest-ping"}"#
        );
        assert_eq!(
            build_request("guest-sync", json!({"id": 1}))?,
            br#"{"execute":"guest-sync","arguments":{"id":1}}"#
        );
        assert!(matches!(
            build_request("guest-sync", json!([1])),
            Err(ClientError::InvalidArguments { .. })
        ));
        Ok(())
    }

    #[test]
    fn replies_decode_or_name_the_fault() {
        assert_eq!(
            decode_reply("c", br#"{"return": {}}"#).ok(),
            Some(json!({}))
        );
        let agent = decode_reply(
            "c",
            br#"{"error": {"class": "GenericError", "desc": "boom"}}"#,
        );
        assert_eq!(
            agent.map_err(|e| e.to_string()),
            Err("agent error (GenericError): boom".to_string())
        );
        for (input, expected) in [
            (&b"[1]"[..], "expected a JSON object, got an array"),
            (b"{\"x\": 1}", "neither 'return' nor 'error' (members: x)"),
            (b"{\"error\": 5}", "'error' must be an object"),
            (b"{\"return\": tru}", "not valid JSON"),
        ] {
            match decode_reply("guest-x", input) {
                Err(ClientError::Protocol { command, detail }) => {
                    assert_eq!(command, "guest-x");
                    assert!(detail.contains(expected), "{detail}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn sync_ids_differ_and_fit_53_bits() {
        let a = sync_id();
        let b = sync_id();
        assert_ne!(a, b);
        assert!((0..1 << 53).contains(&a));
        assert!(is_sync_reply(format!("{{\"return\": {a}}}").as_bytes(), a));
        assert!(!is_sync_reply(format!("{{\"return\": {b}}}").as_bytes(), a));
    }
}
