//! A client over a byte stream: framing, the `guest-sync-delimited` handshake, deadlines.

use super::{
    deadline_after, decode_reply, is_sync_reply, protocol, request_with_reset, SYNC_COMMAND,
};
use crate::error::ClientError;
use crate::transport::Transport;
use porthole_proto::framer::{Frame, FrameError, Framer, Limits, RESET_BYTE};
use serde_json::Value;
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Bytes asked of the transport per read.
const READ_CHUNK: usize = 64 * 1024;

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

/// One framed byte stream to an agent.
pub(super) struct StreamLink {
    transport: Box<dyn Transport>,
    framer: Framer,
    /// Frames already split off the stream but not yet consumed.
    frames: VecDeque<Frame>,
    /// False until a handshake succeeds, and again after anything that may leave a late reply
    /// in the stream; the next call then handshakes first.
    pub(super) in_sync: bool,
}

impl StreamLink {
    pub(super) fn new(transport: Box<dyn Transport>, max_reply_bytes: usize) -> Self {
        Self {
            transport,
            framer: Framer::new(Limits {
                max_message_bytes: max_reply_bytes,
                ..Limits::default()
            }),
            frames: VecDeque::new(),
            in_sync: false,
        }
    }

    pub(super) fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Runs the `guest-sync-delimited` handshake: a 0xFF byte (which makes the agent drop any
    /// half-received request), the sync request with a fresh random id, then everything up to
    /// the agent's own 0xFF is discarded and replies are read until the one carrying our id.
    pub(super) fn sync(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.in_sync = false;
        self.frames.clear();
        self.framer.reset();
        let deadline = deadline_after(timeout);
        let (request, id) = request_with_reset()?;
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

    /// Sends `request` and returns its `return` value (the caller has synchronised).
    pub(super) fn call(
        &mut self,
        command: &str,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let deadline = deadline_after(timeout);
        let result = self
            .send(command, request, deadline, timeout)
            .and_then(|()| self.read_reply(command, deadline, timeout));
        if let Err(e) = &result {
            // After anything but a clean agent error a late or partial reply may still come.
            if !matches!(e, ClientError::Agent { .. }) {
                self.in_sync = false;
            }
        }
        result
    }

    /// Sends a command without a success response: an error reply within `wait` is an error;
    /// silence, or the connection closing, is success.
    pub(super) fn call_no_reply(
        &mut self,
        command: &str,
        request: &[u8],
        wait: Duration,
    ) -> Result<(), ClientError> {
        let deadline = deadline_after(wait);
        self.send(command, request, deadline, wait)?;
        let result = self.read_reply(command, deadline, wait);
        // Whatever happened, a reply may still be on its way.
        self.in_sync = false;
        match result {
            Ok(_) | Err(ClientError::Timeout { .. } | ClientError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
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
