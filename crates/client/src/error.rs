//! The client's error type.
//!
//! Each variant names the layer that failed (connect, handshake, transport, protocol, agent) and,
//! for the failures an operator meets first, the likely cause: virtio-serial gives no connection
//! signal, so "the agent is not running" shows up only as silence and needs saying outright.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no such socket {}: is the VM running and does it have a channel for the agent?",
        path.display()
    )]
    NoSuchSocket { path: PathBuf },

    #[error("nothing is listening on {}", path.display())]
    NothingListening { path: PathBuf },

    #[error("cannot connect to {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },

    #[error(
        "cannot use AF_VSOCK on this host ({source}): load the vsock module (modprobe vhost_vsock)"
    )]
    VsockUnavailable { source: io::Error },

    #[error("cannot connect to vsock {cid}:{port}: {source}{hint}")]
    VsockConnect {
        cid: u32,
        port: u32,
        source: io::Error,
        /// The likely cause for the errno, with a leading separator, or empty.
        hint: &'static str,
    },

    /// Only vsock connects wait (a unix connect lands in the backlog at once).
    #[error(
        "could not connect to {endpoint} within {}: no guest with that CID answered (is the VM \
         running with a vhost-vsock-pci device of that guest-cid?)",
        secs(*timeout)
    )]
    ConnectTimeout { endpoint: String, timeout: Duration },

    #[error(
        "nothing in the guest listens on {endpoint}: the VMM closed every connection for {} \
         (is the agent running with vsock-listen on that port?)",
        secs(*timeout)
    )]
    GuestNotListening { endpoint: String, timeout: Duration },

    #[error("hybrid vsock {}: {detail}", path.display())]
    HybridVsock { path: PathBuf, detail: String },

    #[error(
        "the agent did not answer guest-sync-delimited within {}: is the agent running inside the \
         guest? (virtio-serial gives no connection signal, so a missing agent looks like silence)",
        secs(*timeout)
    )]
    HandshakeTimeout { timeout: Duration },

    #[error("the agent did not answer {command} within {}", secs(*timeout))]
    Timeout { command: String, timeout: Duration },

    #[error(
        "the agent began its reply to {command} but did not finish it within {}: the agent \
         stopped mid-write or the reply needs a longer timeout",
        secs(*timeout)
    )]
    UnfinishedReply { command: String, timeout: Duration },

    #[error("guest process {pid} did not exit within {}", secs(*timeout))]
    ExecTimeout { pid: i64, timeout: Duration },

    #[error("the agent closed the connection while we waited for the reply to {command}")]
    Closed { command: String },

    #[error("i/o error on {endpoint} during {command}: {source}")]
    Io {
        endpoint: String,
        command: String,
        source: io::Error,
    },

    #[error("reply to {command} exceeds the limit of {limit} bytes")]
    ReplyTooLarge { command: String, limit: usize },

    #[error("protocol error in the reply to {command}: {detail}")]
    Protocol { command: String, detail: String },

    /// The agent answered with `{"error": {"class", "desc"}}`.
    #[error("agent error ({class}): {desc}")]
    Agent { class: String, desc: String },

    #[error("invalid arguments for {command}: {detail}")]
    InvalidArguments { command: String, detail: String },

    #[error("cannot write the output of {command}: {source}")]
    Output { command: String, source: io::Error },

    /// A request too large for the transport (virsh takes a request as one argument).
    #[error("the request for {command} is {size} bytes; {endpoint} takes at most {limit}")]
    RequestTooLarge {
        command: String,
        endpoint: String,
        size: usize,
        limit: usize,
    },

    /// Talking to the agent through libvirt (`virsh qemu-agent-command`) failed.
    #[error(transparent)]
    Libvirt(#[from] crate::transport::LibvirtError),
}

impl ClientError {
    /// True for the agent's way of saying a command is unknown or disabled (libvirt treats
    /// both as "unsupported").
    pub fn is_command_not_found(&self) -> bool {
        matches!(self, ClientError::Agent { class, .. }
            if class == "CommandNotFound" || class == "CommandDisabled")
    }

    /// True for any kind of timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::HandshakeTimeout { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::GuestNotListening { .. }
                | ClientError::Timeout { .. }
                | ClientError::UnfinishedReply { .. }
                | ClientError::ExecTimeout { .. }
                | ClientError::Libvirt(crate::transport::LibvirtError::AgentTimeout { .. })
        )
    }
}

/// `5s`, `0.25s`: durations as an operator writes them.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{s}s")
    }
}
