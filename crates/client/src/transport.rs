//! Byte transports to a guest agent, each bounded by a deadline.
//!
//! The agent protocol only needs a bidirectional byte stream. Today that is a unix socket (a QEMU
//! chardev or a libvirt channel); vsock, hybrid vsock and `virsh qemu-agent-command` slot in as
//! further [`Endpoint`] variants and [`Transport`] implementations without touching the client.
//!
//! Every read and write takes an absolute deadline rather than a timeout so that a caller can
//! bound a whole exchange (many reads) by one budget: a peer that trickles one byte per second
//! cannot stretch a call past its deadline.

use crate::error::ClientError;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A connected byte stream to an agent.
pub trait Transport: Send {
    /// Reads some bytes into `buf`, waiting no later than `deadline`. `Ok(0)` means the peer
    /// closed the stream; a passed deadline is an error of kind [`io::ErrorKind::TimedOut`].
    fn read_until(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize>;

    /// Writes all of `data`, failing with [`io::ErrorKind::TimedOut`] once `deadline` passes.
    fn write_all_until(&mut self, data: &[u8], deadline: Instant) -> io::Result<()>;

    /// Where this transport leads, for error messages (`unix:/run/vm1/qga.sock`).
    fn describe(&self) -> String;
}

/// Where an agent can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix stream socket: QEMU's `-chardev socket,server=on` or a libvirt channel.
    Unix(PathBuf),
}

impl Endpoint {
    /// Opens the transport, waiting at most `timeout` for the connection.
    pub fn connect(&self, timeout: Duration) -> Result<Box<dyn Transport>, ClientError> {
        match self {
            Endpoint::Unix(path) => Ok(Box::new(UnixTransport::connect(path.clone(), timeout)?)),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A unix stream socket.
#[derive(Debug)]
pub struct UnixTransport {
    stream: UnixStream,
    path: PathBuf,
}

impl UnixTransport {
    /// Connects to `path`. A unix connect does not block on a listening socket (the backlog takes
    /// it), so `timeout` is unused today; it is part of the signature for transports that do.
    pub fn connect(path: PathBuf, _timeout: Duration) -> Result<Self, ClientError> {
        match UnixStream::connect(&path) {
            Ok(stream) => Ok(Self { stream, path }),
            Err(e) => Err(connect_error(path, e)),
        }
    }

    /// Wraps an already connected stream (a socketpair, or a socket from a parent process).
    pub fn from_stream(stream: UnixStream, path: PathBuf) -> Self {
        Self { stream, path }
    }
}

/// Turns the errno of a failed connect into the operator's likely cause.
fn connect_error(path: PathBuf, source: io::Error) -> ClientError {
    match source.kind() {
        io::ErrorKind::NotFound => ClientError::NoSuchSocket { path },
        io::ErrorKind::ConnectionRefused => ClientError::NothingListening { path },
        _ => ClientError::Connect { path, source },
    }
}

/// Time left before `deadline`, or a timeout error when none is.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::from(io::ErrorKind::TimedOut))
    } else {
        Ok(left)
    }
}

/// Socket timeouts report expiry as WouldBlock (EAGAIN) on Unix; callers see one kind.
fn normalise_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::from(io::ErrorKind::TimedOut),
        _ => e,
    }
}

impl Transport for UnixTransport {
    fn read_until(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            self.stream.set_read_timeout(Some(remaining(deadline)?))?;
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map_err(normalise_timeout),
            }
        }
    }

    fn write_all_until(&mut self, mut data: &[u8], deadline: Instant) -> io::Result<()> {
        while !data.is_empty() {
            self.stream.set_write_timeout(Some(remaining(deadline)?))?;
            match self.stream.write(data) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => data = data.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(normalise_timeout(e)),
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}
