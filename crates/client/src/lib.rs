//! Host-side client for guest agents that speak the QGA protocol (qemu-ga, porthole-agent).
//!
//! A [`Client`] owns one connection. It synchronises with `guest-sync-delimited` before the first
//! call (and again after anything that may have left the stream out of step: a timeout, a
//! garbage reply), so replies meant for an earlier client that vanished mid-call never get taken
//! for ours. Every read is bounded by a deadline and every reply by a size limit, so a silent or
//! hostile agent can cost us time up to the timeout and memory up to the limit, nothing more.
//!
//! A libvirt domain ([`Endpoint::Libvirt`]) is reached through `virsh qemu-agent-command`
//! instead: libvirt owns the agent's channel and synchronises with the agent itself, so the
//! client skips its handshake there and sizes file and output chunks to what virsh carries.
//!
//! ```no_run
//! use porthole_client::{Client, Options};
//! let mut agent = Client::connect_unix("/run/vm1/qga.sock", Options::default())?;
//! println!("{}", agent.host_name()?);
//! # Ok::<(), porthole_client::ClientError>(())
//! ```

mod client;
mod error;
pub mod transport;
mod typed;

pub use client::{Client, Options};
pub use error::ClientError;
pub use transport::{
    Endpoint, LibvirtError, RequestTransport, StreamTransport, Transport, UnixTransport,
    VirshTransport, VsockTransport,
};
pub use typed::{ExecOutput, ReadChunk};

/// The protocol crate's typed commands, re-exported so callers need one import.
pub use porthole_proto::commands;
