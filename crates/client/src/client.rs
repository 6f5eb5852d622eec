//! The connection: handshake, raw calls, and reply decoding.

use crate::error::ClientError;
use crate::transport::{Endpoint, Transport};
use porthole_proto::framer::{Frame, FrameError, Framer, Limits, RESET_BYTE};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SYNC_COMMAND: &str = "guest-sync-delimited";
/// Bytes asked of the transport per read.
const READ_CHUNK: usize = 64 * 1024;

/// Timeouts and limits of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// For opening the transport.
    pub connect_timeout: Duration,
    /// For the `guest-sync-delimited` handshake, counted apart from the call that triggers it.
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

/// Why waiting for a frame ended without one.
enum ReadFail {
    TimedOut,
    Closed,
    Io(io::Error),
}

impl From<io::Error> for ReadFail {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut => ReadFail::TimedOut,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ReadFail::Closed,
            _ => ReadFail::Io(e),
        }
    }
}

/// One connection to a guest agent; see the crate docs.
pub struct Client {
    transport: Box<dyn Transport>,
    framer: Framer,
    /// Frames already split off the stream but not yet consumed.
    frames: VecDeque<Frame>,
    options: Options,
    /// False until a handshake succeeds, and again after anything that may leave a late reply
    /// in the stream; the next call then handshakes first.
    in_sync: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.transport.describe())
            .field("options", &self.options)
            .field("in_sync", &self.in_sync)
            .finish()
    }
}

impl Client {
    /// Connects to an agent's unix socket and synchronises with it.
    pub fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, ClientError> {
        Self::connect(&Endpoint::Unix(path.as_ref().to_path_buf()), options)
    }

    /// Connects to `endpoint` and synchronises with the agent.
    pub fn connect(endpoint: &Endpoint, options: Options) -> Result<Self, ClientError> {
        let transport = endpoint.connect(options.connect_timeout)?;
        Self::with_transport(transport, options)
    }

    /// Synchronises with the agent over an already open transport.
    pub fn with_transport(
        transport: Box<dyn Transport>,
        options: Options,
    ) -> Result<Self, ClientError> {
        let mut client = Self {
            transport,
            framer: Framer::new(Self::limits(&options)),
            frames: VecDeque::new(),
            options,
            in_sync: false,
        };
        client.sync()?;
        Ok(client)
    }

    fn limits(options: &Options) -> Limits {
        Limits {
            max_message_bytes: options.max_reply_bytes,
            ..Limits::default()
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
        self.transport.describe()
    }

    /// Runs the `guest-sync-delimited` handshake: a 0xFF byte (which makes the agent drop any
    /// half-received request), the sync request with a fresh random id, then everything up to
    /// the agent's own 0xFF is discarded and replies are read until the one carrying our id.
    pub fn sync(&mut self) -> Result<(), ClientError> {
        self.in_sync = false;
        self.frames.clear();
        self.framer.reset();
        let timeout = self.options.handshake_timeout;
        let deadline = deadline_after(timeout);
        let id = sync_id();
        let mut request = vec![RESET_BYTE];
        request.extend(build_request(SYNC_COMMAND, json!({ "id": id }))?);
        let handshake_error = |fail: ReadFail, endpoint: String| match fail {
            ReadFail::TimedOut => ClientError::HandshakeTimeout { timeout },
            ReadFail::Closed => ClientError::Closed {
                command: SYNC_COMMAND.into(),
            },
            ReadFail::Io(source) => ClientError::Io {
                endpoint,
                command: SYNC_COMMAND.into(),
                source,
            },
        };
        self.transport
            .write_all_until(&request, deadline)
            .map_err(|e| handshake_error(e.into(), self.transport.describe()))?;
        self.skip_to_delimiter(deadline)
            .map_err(|e| handshake_error(e, self.transport.describe()))?;
        loop {
            match self.next_frame(deadline) {
                // Replies meant for an earlier client, errors for its half request, garbage:
                // all of it is discarded until our own id comes back.
                Ok(Frame::Message(message)) if is_sync_reply(&message, id) => break,
                Ok(_) => continue,
                Err(fail) => return Err(handshake_error(fail, self.transport.describe())),
            }
        }
        self.in_sync = true;
        Ok(())
    }

    /// Discards raw bytes up to and including the agent's 0xFF; what follows goes to the framer.
    fn skip_to_delimiter(&mut self, deadline: Instant) -> Result<(), ReadFail> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = self.read_some(&mut buf, deadline)?;
            let received = buf.get(..n).unwrap_or_default();
            if let Some(pos) = received.iter().position(|&b| b == RESET_BYTE) {
                let rest = received.get(pos + 1..).unwrap_or_default();
                self.frames.extend(self.framer.push(rest));
                return Ok(());
            }
        }
    }

    fn read_some(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, ReadFail> {
        match self.transport.read_until(buf, deadline)? {
            0 => Err(ReadFail::Closed),
            n => Ok(n),
        }
    }

    /// The next frame of the stream, reading as needed until `deadline`.
    fn next_frame(&mut self, deadline: Instant) -> Result<Frame, ReadFail> {
        let mut buf = Vec::new();
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Ok(frame);
            }
            if buf.is_empty() {
                buf = vec![0u8; READ_CHUNK];
            }
            let n = self.read_some(&mut buf, deadline)?;
            let frames = self.framer.push(buf.get(..n).unwrap_or_default());
            self.frames.extend(frames);
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
        let deadline = deadline_after(timeout);
        let result = self
            .send(command, &request, deadline, timeout)
            .and_then(|()| self.read_reply(command, deadline, timeout));
        if let Err(e) = &result {
            // After anything but a clean agent error a late or partial reply may still come.
            if !matches!(e, ClientError::Agent { .. }) {
                self.in_sync = false;
            }
        }
        result
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
        let deadline = deadline_after(wait);
        self.send(command, &request, deadline, wait)?;
        let result = self.read_reply(command, deadline, wait);
        // Whatever happened, a reply may still be on its way.
        self.in_sync = false;
        match result {
            Ok(_) | Err(ClientError::Timeout { .. } | ClientError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn ensure_sync(&mut self) -> Result<(), ClientError> {
        if self.in_sync {
            Ok(())
        } else {
            self.sync()
        }
    }

    fn send(
        &mut self,
        command: &str,
        request: &[u8],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.transport
            .write_all_until(request, deadline)
            .map_err(|e| self.transport_error(command, e.into(), timeout))
    }

    fn read_reply(
        &mut self,
        command: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        match self.next_frame(deadline) {
            Ok(Frame::Message(message)) => decode_reply(command, &message),
            Ok(Frame::Error(FrameError::TooLarge { limit })) => Err(ClientError::ReplyTooLarge {
                command: command.into(),
                limit,
            }),
            Ok(Frame::Error(e)) => Err(protocol(command, e.to_string())),
            Err(fail) => Err(self.transport_error(command, fail, timeout)),
        }
    }

    fn transport_error(&self, command: &str, fail: ReadFail, timeout: Duration) -> ClientError {
        match fail {
            // Part of a reply is buffered: not silence, and saying so points at the right cause.
            ReadFail::TimedOut if !self.framer.is_idle() => ClientError::UnfinishedReply {
                command: command.into(),
                timeout,
            },
            ReadFail::TimedOut => ClientError::Timeout {
                command: command.into(),
                timeout,
            },
            ReadFail::Closed => ClientError::Closed {
                command: command.into(),
            },
            ReadFail::Io(source) => ClientError::Io {
                endpoint: self.transport.describe(),
                command: command.into(),
                source,
            },
        }
    }
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
