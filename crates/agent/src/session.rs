//! One conversation with a host client: bytes in, replies out.
//!
//! A session owns a framer and remembers the dialect its client last spoke (so an unparseable
//! message is answered in that dialect). Requests are handled one at a time in arrival order,
//! as QGA clients expect. The same session logic serves sockets, where end-of-file ends the
//! session, and character devices, where end-of-file only means the host side is not connected
//! right now (virtio-serial).

use crate::dispatch::{Dispatcher, Outcome, Payload};
use crate::policy::Caller;
use base64::Engine as _;
use porthole_proto::envelope::{encode_batch, Decoded, Rejection};
use porthole_proto::framer::RESET_BYTE;
use porthole_proto::{
    decode, encode_reply, encode_reply_around, CommandError, Dialect, ErrorKind, Frame, Framer,
    Limits,
};
use serde_json::Value;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What end-of-file on the channel means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEof {
    /// A socket: the client left; the session ends.
    Close,
    /// A device: no host is attached; drop any partial request and poll again after this delay.
    Poll(Duration),
}

/// A write that makes no progress for this long is abandoned (a host that stopped reading).
const WRITE_STALL: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 64 << 10;
/// Raw bytes per piece of a streamed base64 member: 768 KiB in, 1 MiB of text out.
const BASE64_PIECE: usize = 3 << 18;

/// Replies ready to send, in order: encoded bytes, and raw data to be base64-encoded piece by
/// piece as it is written (see [`crate::dispatch::Streamed`]).
#[derive(Debug, Default)]
pub struct Replies {
    /// Finished parts, then `tail`, the bytes being appended to.
    parts: Vec<Part>,
    tail: Vec<u8>,
}

#[derive(Debug)]
enum Part {
    Bytes(Vec<u8>),
    Base64(Vec<u8>),
}

impl Replies {
    /// The buffer to append encoded bytes to.
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Raw data whose base64 text goes next.
    fn push_base64(&mut self, raw: Vec<u8>) {
        if !self.tail.is_empty() {
            self.parts.push(Part::Bytes(std::mem::take(&mut self.tail)));
        }
        self.parts.push(Part::Base64(raw));
    }

    fn into_parts(mut self) -> Vec<Part> {
        if !self.tail.is_empty() {
            self.parts.push(Part::Bytes(self.tail));
        }
        self.parts
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.tail.is_empty()
    }

    /// Everything as one buffer (tests, and callers that need the bytes at once).
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in self.into_parts() {
            match part {
                Part::Bytes(b) => out.extend_from_slice(&b),
                Part::Base64(raw) => out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(raw)
                        .as_bytes(),
                ),
            }
        }
        out
    }

    /// Writes every part, encoding base64 members one piece at a time.
    async fn write_to<S: AsyncWrite + Unpin>(self, stream: &mut S) -> io::Result<()> {
        let mut text = Vec::new();
        for part in self.into_parts() {
            match part {
                Part::Bytes(b) => write_with_progress(stream, &b).await?,
                Part::Base64(raw) => {
                    for piece in raw.chunks(BASE64_PIECE) {
                        text.clear();
                        text.resize(piece.len().div_ceil(3) * 4, 0);
                        let n = base64::engine::general_purpose::STANDARD
                            .encode_slice(piece, &mut text)
                            .map_err(io::Error::other)?;
                        write_with_progress(stream, &text[..n]).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

pub struct Session<'a> {
    dispatcher: &'a Dispatcher,
    framer: Framer,
    dialect: Dialect,
    /// Who is at the other end, for the audit log.
    caller: Caller,
}

impl<'a> Session<'a> {
    /// A session whose requests are capped at the policy's `max-message`.
    pub fn new(dispatcher: &'a Dispatcher, caller: Caller) -> Self {
        let limits = Limits {
            max_message_bytes: dispatcher.agent().policy.max_message,
            ..Limits::default()
        };
        Self {
            dispatcher,
            framer: Framer::new(limits),
            dialect: Dialect::Qga,
            caller,
        }
    }

    /// Forgets any partial request (the peer went away).
    pub fn reset(&mut self) {
        self.framer.reset();
    }

    /// Feeds received bytes; returns the replies to send, in order.
    pub async fn receive(&mut self, bytes: &[u8]) -> Replies {
        let mut out = Replies::default();
        for frame in self.framer.push(bytes) {
            match frame {
                Frame::Message(message) => self.handle_message(&message, &mut out).await,
                Frame::Error(error) => {
                    let error = CommandError::new(ErrorKind::Parse, error.to_string());
                    let id = (self.dialect == Dialect::JsonRpc).then_some(Value::Null);
                    encode_reply(out.bytes(), self.dialect, id.as_ref(), &Err(error));
                }
            }
        }
        out
    }

    async fn handle_message(&mut self, message: &[u8], out: &mut Replies) {
        match decode(message, self.dialect) {
            Decoded::Single(Ok(request)) => {
                self.dialect = request.dialect;
                let delimited = request.command == "guest-sync-delimited";
                let outcome = self
                    .dispatcher
                    .execute(&self.caller, &request.command, request.arguments)
                    .await;
                if let Outcome::Reply(result) = outcome {
                    if delimited && result.is_ok() {
                        out.bytes().push(RESET_BYTE);
                    }
                    encode_payload(out, request.dialect, request.id.as_ref(), result);
                }
            }
            Decoded::Single(Err(rejection)) => self.reject(rejection, out),
            Decoded::Batch(items) => {
                self.dialect = Dialect::JsonRpc;
                let mut replies = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Ok(request) => {
                            let outcome = self
                                .dispatcher
                                .execute(&self.caller, &request.command, request.arguments)
                                .await;
                            if let Outcome::Reply(result) = outcome {
                                replies.push((request.id, result.map(Payload::into_value)));
                            }
                        }
                        Err(rejection) => replies.push((rejection.id, Err(rejection.error))),
                    }
                }
                encode_batch(out.bytes(), &replies);
            }
        }
    }

    fn reject(&mut self, rejection: Rejection, out: &mut Replies) {
        if rejection.error.kind != ErrorKind::Parse {
            self.dialect = rejection.dialect;
        }
        encode_reply(
            out.bytes(),
            rejection.dialect,
            rejection.id.as_ref(),
            &Err(rejection.error),
        );
    }
}

/// Appends one reply; a streamed payload is split around its raw member.
fn encode_payload(
    out: &mut Replies,
    dialect: Dialect,
    id: Option<&Value>,
    result: Result<Payload, CommandError>,
) {
    let payload = match result {
        Ok(Payload::Streamed(streamed)) => {
            let split = encode_reply_around(dialect, id, streamed.value.clone(), streamed.field);
            if let Some((before, after)) = split {
                out.bytes().extend_from_slice(&before);
                out.push_base64(streamed.bytes);
                out.bytes().extend_from_slice(&after);
                return;
            }
            Ok(Payload::Streamed(streamed).into_value())
        }
        other => other.map(Payload::into_value),
    };
    encode_reply(out.bytes(), dialect, id, &payload);
}

/// Serves one channel until it closes (sockets) or forever (devices).
pub async fn serve<S>(
    mut stream: S,
    dispatcher: &Dispatcher,
    on_eof: OnEof,
    caller: Caller,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::new(dispatcher, caller);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => match on_eof {
                OnEof::Close => return Ok(()),
                OnEof::Poll(delay) => {
                    session.reset();
                    tokio::time::sleep(delay).await;
                    continue;
                }
            },
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let replies = session.receive(&buf[..n]).await;
        if replies.is_empty() {
            continue;
        }
        if let Err(e) = replies.write_to(&mut stream).await {
            match on_eof {
                OnEof::Close => return Err(e),
                // The host vanished mid-reply; the next host starts clean.
                OnEof::Poll(_) => {
                    tracing::warn!("dropping a reply: {e}");
                    session.reset();
                }
            }
        }
    }
}

/// Writes everything, failing if the peer accepts nothing for [`WRITE_STALL`].
async fn write_with_progress<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut data: &[u8],
) -> io::Result<()> {
    while !data.is_empty() {
        let n = tokio::time::timeout(WRITE_STALL, stream.write(data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    tokio::time::timeout(WRITE_STALL, stream.flush())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))?
}
