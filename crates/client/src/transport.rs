//! Transports to a guest agent, each bounded by a deadline.
//!
//! The agent protocol mostly runs over a bidirectional byte stream: a unix socket (a QEMU
//! chardev or a libvirt channel), AF_VSOCK to a guest's (CID, port) (QEMU's vhost-vsock), or a
//! hybrid vsock unix socket (Firecracker, Cloud Hypervisor, vhost-device-vsock) reached through
//! its `CONNECT <port>` preamble. Each is an [`Endpoint`] variant; all three end up as a
//! [`StreamTransport`] over a socket with kernel timeouts, and the client frames the stream and
//! synchronises with `guest-sync-delimited`.
//!
//! A libvirt domain's agent is different: libvirt holds the channel and only passes whole
//! requests and replies (`virsh qemu-agent-command`), synchronising by itself. That is a
//! [`RequestTransport`] ([`VirshTransport`]); see the `virsh` module for why.
//!
//! Every read and write takes an absolute deadline rather than a timeout so that a caller can
//! bound a whole exchange (many reads) by one budget: a peer that trickles one byte per second
//! cannot stretch a call past its deadline.

mod hybrid;
mod virsh;
mod vsock;

use crate::error::ClientError;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use hybrid::{parse_hybrid_vsock, HYBRID_RETRY};
pub use virsh::{LibvirtError, VirshTransport, MAX_REPLY_BYTES as VIRSH_MAX_REPLY_BYTES};
pub use vsock::{parse_vsock, VsockTransport};

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

/// A transport that carries whole requests and replies, its far end keeping them in step
/// (libvirt, which does its own `guest-sync`): no framing and no handshake on our side.
pub trait RequestTransport: Send {
    /// Sends one request (a JSON object) for `command` and returns the reply's bytes, within
    /// `timeout` and `max_reply` bytes.
    fn exchange(
        &mut self,
        command: &str,
        request: &[u8],
        timeout: Duration,
        max_reply: usize,
    ) -> Result<Vec<u8>, ClientError>;

    /// Where this transport leads, for error messages (`libvirt:vm1`).
    fn describe(&self) -> String;

    /// The largest request it can carry.
    fn max_request_bytes(&self) -> usize;

    /// The largest reply it can carry.
    fn max_reply_bytes(&self) -> usize;
}

/// An opened transport of either shape.
pub enum Connection {
    Stream(Box<dyn Transport>),
    Requests(Box<dyn RequestTransport>),
}

/// Where an agent can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix stream socket: QEMU's `-chardev socket,server=on` or a libvirt channel.
    Unix(PathBuf),
    /// AF_VSOCK: the guest's context id and the port its agent listens on.
    Vsock { cid: u32, port: u32 },
    /// A hybrid vsock unix socket (Firecracker, Cloud Hypervisor, vhost-device-vsock) and the
    /// guest port to ask it for.
    HybridVsock { path: PathBuf, port: u32 },
    /// A libvirt domain, whose agent channel libvirt owns: calls go through
    /// `virsh qemu-agent-command`. `uri` is the libvirt connection URI (`None`: virsh's
    /// default, which honours `LIBVIRT_DEFAULT_URI`).
    Libvirt { domain: String, uri: Option<String> },
}

impl Endpoint {
    /// Opens the transport, waiting at most `timeout` for the connection. A libvirt domain
    /// opens nothing yet: each call runs virsh, which may take `timeout` to reach the daemon.
    pub fn connect(&self, timeout: Duration) -> Result<Connection, ClientError> {
        let stream = |t: Box<dyn Transport>| Ok(Connection::Stream(t));
        match self {
            Endpoint::Unix(path) => {
                stream(Box::new(UnixTransport::connect(path.clone(), timeout)?))
            }
            Endpoint::Vsock { cid, port } => {
                stream(Box::new(vsock::connect(*cid, *port, timeout)?))
            }
            Endpoint::HybridVsock { path, port } => {
                stream(Box::new(hybrid::connect(path, *port, timeout)?))
            }
            Endpoint::Libvirt { domain, uri } => Ok(Connection::Requests(Box::new(
                VirshTransport::new(domain.clone(), uri.clone(), timeout),
            ))),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Endpoint::HybridVsock { path, port } => {
                write!(f, "hybrid-vsock:{}:{port}", path.display())
            }
            Endpoint::Libvirt { domain, uri: None } => write!(f, "libvirt:{domain}"),
            Endpoint::Libvirt {
                domain,
                uri: Some(uri),
            } => write!(f, "libvirt:{domain}@{uri}"),
        }
    }
}

/// A stream socket with kernel read and write timeouts.
pub trait TimedStream: Read + Write + Send {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl TimedStream for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}

/// A connected socket and a description of where it leads.
#[derive(Debug)]
pub struct StreamTransport<S> {
    stream: S,
    description: String,
}

/// A unix stream socket.
pub type UnixTransport = StreamTransport<UnixStream>;

impl UnixTransport {
    /// Connects to `path`. A unix connect does not block on a listening socket (the backlog takes
    /// it), so `timeout` is unused today; it is part of the signature for transports that do.
    pub fn connect(path: PathBuf, _timeout: Duration) -> Result<Self, ClientError> {
        connect_unix(&path).map(|stream| Self::from_stream(stream, path))
    }

    /// Wraps an already connected stream (a socketpair, or a socket from a parent process).
    pub fn from_stream(stream: UnixStream, path: PathBuf) -> Self {
        Self::new(stream, format!("unix:{}", path.display()))
    }
}

impl<S: TimedStream> StreamTransport<S> {
    /// Wraps a connected stream; `description` names it in error messages.
    pub fn new(stream: S, description: String) -> Self {
        Self {
            stream,
            description,
        }
    }
}

/// Turns the errno of a failed unix connect into the operator's likely cause.
fn connect_error(path: PathBuf, source: io::Error) -> ClientError {
    match source.kind() {
        io::ErrorKind::NotFound => ClientError::NoSuchSocket { path },
        io::ErrorKind::ConnectionRefused => ClientError::NothingListening { path },
        _ => ClientError::Connect { path, source },
    }
}

/// Connects a unix stream socket, naming the likely cause on failure.
fn connect_unix(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path).map_err(|e| connect_error(path.to_path_buf(), e))
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

impl<S: TimedStream> Transport for StreamTransport<S> {
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
        self.description.clone()
    }
}
