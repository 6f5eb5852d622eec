//! A raw-socket QGA client that can misbehave on purpose.
//!
//! Sending is byte-exact (split frames, concatenated frames, 0xFF, garbage). Receiving parses the
//! agent's reply stream: each reply is one JSON object followed by `\n`; a reply to
//! guest-sync-delimited is preceded by 0xFF. JSON never contains a raw newline inside a value, so
//! splitting on `\n` is exact.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Default time to wait for one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Failure to get a well-formed reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no complete reply within {waited:?}; partial bytes: {partial:?}")]
    Timeout { waited: Duration, partial: String },
    #[error("agent closed the connection; partial bytes: {partial:?}")]
    Eof { partial: String },
    #[error("reply is not JSON ({source}): {raw:?}")]
    BadReply {
        raw: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One reply from the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// True when the reply was preceded by 0xFF (guest-sync-delimited).
    pub delimited: bool,
    pub value: Value,
}

/// A connection to an agent.
pub struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already known to hold no `\n` (keeps huge replies linear to parse).
    scanned: usize,
    /// Timeout of [`Conn::request`] and friends.
    timeout: Duration,
    /// Scratch buffer for `read`, allocated on first use.
    rbuf: Vec<u8>,
}

impl Conn {
    pub(crate) fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            scanned: 0,
            timeout: REPLY_TIMEOUT,
            rbuf: Vec::new(),
        }
    }

    /// Change the timeout of [`Conn::request`] (default [`REPLY_TIMEOUT`]), e.g. for replies of
    /// tens of MiB.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Send raw bytes in one write.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Send raw bytes in `chunk`-sized writes with `delay` between them.
    pub fn send_split(
        &mut self,
        bytes: &[u8],
        chunk: usize,
        delay: Duration,
    ) -> Result<(), ClientError> {
        for piece in bytes.chunks(chunk.max(1)) {
            self.stream.write_all(piece)?;
            self.stream.flush()?;
            std::thread::sleep(delay);
        }
        Ok(())
    }

    /// Send a JSON value (compact serialisation).
    pub fn send_json(&mut self, v: &Value) -> Result<(), ClientError> {
        self.send(v.to_string().as_bytes())
    }

    /// Send one request and read one reply.
    pub fn request(&mut self, v: &Value) -> Result<Value, ClientError> {
        self.send_json(v)?;
        Ok(self.read_reply(self.timeout)?.value)
    }

    /// `{"execute": name, "arguments": args}` (arguments omitted when `Null`), one reply.
    pub fn execute(&mut self, name: &str, args: Value) -> Result<Value, ClientError> {
        let mut req = serde_json::json!({ "execute": name });
        if !args.is_null() {
            req["arguments"] = args;
        }
        self.request(&req)
    }

    /// Like [`Conn::execute`] but returns `return`, panicking with the reply otherwise.
    pub fn ok(&mut self, name: &str, args: Value) -> Value {
        match self.execute(name, args.clone()) {
            Ok(mut v) if v.get("return").is_some() => v["return"].take(),
            other => panic!("{name} {args} did not succeed: {other:?}"),
        }
    }

    /// Read the next reply, waiting at most `timeout`.
    pub fn read_reply(&mut self, timeout: Duration) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(reply) = self.take_buffered()? {
                return Ok(reply);
            }
            self.fill(deadline, timeout)?;
        }
    }

    /// Read replies until one carries `"id": id` (or, for a sync, `"return": id`); returns the
    /// skipped replies and the matching one.
    pub fn read_until(
        &mut self,
        mut pred: impl FnMut(&Reply) -> bool,
        timeout: Duration,
    ) -> Result<(Vec<Reply>, Reply), ClientError> {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.read_reply(left)?;
            if pred(&r) {
                return Ok((skipped, r));
            }
            skipped.push(r);
        }
    }

    /// The libvirt/qemu-ga client recovery procedure: discard everything up to a 0xFF-prefixed
    /// reply and return that reply (plus what was discarded).
    pub fn read_delimited(
        &mut self,
        timeout: Duration,
    ) -> Result<(Vec<Reply>, Reply), ClientError> {
        self.read_until(|r| r.delimited, timeout)
    }

    /// Assert-friendly: `Ok(())` if no byte arrives within `dur`, else the bytes that came.
    pub fn expect_silence(&mut self, dur: Duration) -> Result<(), Vec<u8>> {
        let deadline = Instant::now() + dur;
        loop {
            if !self.buf.is_empty() {
                return Err(self.buf.clone());
            }
            match self.fill(deadline, dur) {
                Ok(()) => {}
                Err(ClientError::Timeout { .. }) => return Ok(()),
                Err(_) => {
                    self.scanned = 0;
                    return Err(std::mem::take(&mut self.buf));
                }
            }
        }
    }

    /// The underlying socket (e.g. to clone it for a writer thread).
    pub fn raw_stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Half-close the writing side (the agent sees EOF).
    pub fn shutdown_write(&self) -> Result<(), ClientError> {
        self.stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    }

    /// Parse one reply out of the buffer if a complete line is there.
    fn take_buffered(&mut self) -> Result<Option<Reply>, ClientError> {
        loop {
            let Some(off) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                return Ok(None);
            };
            let nl = self.scanned + off;
            self.scanned = 0;
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let body = &line[..nl];
            let start = body.iter().position(|&b| b != 0xFF).unwrap_or(body.len());
            let payload = &body[start..];
            if payload.iter().all(u8::is_ascii_whitespace) {
                continue; // an empty line carries no reply
            }
            let value =
                serde_json::from_slice(payload).map_err(|source| ClientError::BadReply {
                    raw: preview(&line),
                    source,
                })?;
            return Ok(Some(Reply {
                delimited: start > 0,
                value,
            }));
        }
    }

    /// Read more bytes into the buffer, up to `deadline`.
    fn fill(&mut self, deadline: Instant, waited: Duration) -> Result<(), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout {
                waited,
                partial: preview(&self.buf),
            });
        }
        self.stream.set_read_timeout(Some(left))?;
        // A persistent 1 MiB scratch buffer: one read drains a full socket buffer, and nothing
        // is re-zeroed per call (that made 64 MiB replies quadratic-ish).
        if self.rbuf.is_empty() {
            self.rbuf = vec![0u8; 1 << 20];
        }
        let res = self.stream.read(&mut self.rbuf);
        if let Ok(n) = res {
            self.buf.extend_from_slice(&self.rbuf[..n]);
        }
        match res {
            Ok(0) => Err(ClientError::Eof {
                partial: preview(&self.buf),
            }),
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(ClientError::Timeout {
                    waited,
                    partial: preview(&self.buf),
                })
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// At most 300 bytes of `bytes` (lossy UTF-8) plus the total length: error messages must stay
/// readable even when a reply is 64 MiB.
fn preview(bytes: &[u8]) -> String {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{head}... ({} bytes in all)", bytes.len())
    } else {
        head
    }
}
