//! One conversation with a host client: bytes in, replies out.
//!
//! A session owns a framer and remembers the dialect its client last spoke (so an unparseable
//! message is answered in that dialect). Requests are handled one at a time in arrival order,
//! as QGA clients expect. The same session logic serves sockets, where end-of-file ends the
//! session, and character devices, where end-of-file only means the host side is not connected
//! right now (virtio-serial).

use crate::dispatch::{Dispatcher, Outcome};
use porthole_proto::envelope::{encode_batch, Decoded, Rejection};
use porthole_proto::framer::RESET_BYTE;
use porthole_proto::{decode, encode_reply, CommandError, Dialect, ErrorKind, Frame, Framer};
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

pub struct Session<'a> {
    dispatcher: &'a Dispatcher,
    framer: Framer,
    dialect: Dialect,
}

impl<'a> Session<'a> {
    pub fn new(dispatcher: &'a Dispatcher) -> Self {
        Self {
            dispatcher,
            framer: Framer::default(),
            dialect: Dialect::Qga,
        }
    }

    /// Forgets any partial request (the peer went away).
    pub fn reset(&mut self) {
        self.framer.reset();
    }

    /// Feeds received bytes; returns the replies to send, in order.
    pub async fn receive(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in self.framer.push(bytes) {
            match frame {
                Frame::Message(message) => self.handle_message(&message, &mut out).await,
                Frame::Error(error) => {
                    let error = CommandError::new(ErrorKind::Parse, error.to_string());
                    let id = (self.dialect == Dialect::JsonRpc).then_some(Value::Null);
                    encode_reply(&mut out, self.dialect, id.as_ref(), &Err(error));
                }
            }
        }
        out
    }

    async fn handle_message(&mut self, message: &[u8], out: &mut Vec<u8>) {
        match decode(message, self.dialect) {
            Decoded::Single(Ok(request)) => {
                self.dialect = request.dialect;
                let delimited = request.command == "guest-sync-delimited";
                let outcome = self
                    .dispatcher
                    .execute(&request.command, request.arguments)
                    .await;
                if let Outcome::Reply(result) = outcome {
                    if delimited && result.is_ok() {
                        out.push(RESET_BYTE);
                    }
                    encode_reply(out, request.dialect, request.id.as_ref(), &result);
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
                                .execute(&request.command, request.arguments)
                                .await;
                            if let Outcome::Reply(result) = outcome {
                                replies.push((request.id, result));
                            }
                        }
                        Err(rejection) => replies.push((rejection.id, Err(rejection.error))),
                    }
                }
                encode_batch(out, &replies);
            }
        }
    }

    fn reject(&mut self, rejection: Rejection, out: &mut Vec<u8>) {
        if rejection.error.kind != ErrorKind::Parse {
            self.dialect = rejection.dialect;
        }
        encode_reply(
            out,
            rejection.dialect,
            rejection.id.as_ref(),
            &Err(rejection.error),
        );
    }
}

/// Serves one channel until it closes (sockets) or forever (devices).
pub async fn serve<S>(mut stream: S, dispatcher: &Dispatcher, on_eof: OnEof) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::new(dispatcher);
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
        if let Err(e) = write_with_progress(&mut stream, &replies).await {
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
