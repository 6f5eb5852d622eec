//! AF_VSOCK to a guest's (CID, port): QEMU's `vhost-vsock-pci`, which needs `/dev/vhost-vsock`
//! (module `vhost_vsock`) on the host.
//!
//! The connect is non-blocking and polled, so `timeout` bounds it: a vsock connect to a guest
//! that never answers would otherwise wait for the kernel's own connect timeout.

use super::{StreamTransport, TimedStream};
use crate::error::ClientError;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, VsockAddr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use vsock::VsockStream;

/// A connected vsock stream.
pub type VsockTransport = StreamTransport<VsockStream>;

impl TimedStream for VsockStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        VsockStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        VsockStream::set_write_timeout(self, timeout)
    }
}

/// `CID:PORT` (both decimal u32) as the CLI and configuration files write it.
pub fn parse_vsock(text: &str) -> Result<(u32, u32), String> {
    let (cid, port) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not of the form CID:PORT"))?;
    let number = |what: &str, value: &str| {
        value
            .parse::<u32>()
            .map_err(|_| format!("'{value}' is not a vsock {what} (0 to 4294967295)"))
    };
    Ok((number("CID", cid)?, number("port", port)?))
}

/// Connects to `cid:port`, giving up after `timeout`.
pub fn connect(cid: u32, port: u32, timeout: Duration) -> Result<VsockTransport, ClientError> {
    let deadline = Instant::now() + timeout;
    let fd = socket::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| ClientError::VsockUnavailable { source: e.into() })?;
    let failed = |errno: Errno| connect_error(cid, port, errno);
    match socket::connect(fd.as_raw_fd(), &VsockAddr::new(cid, port)) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => wait_connected(&fd, deadline, cid, port, timeout)?,
        Err(errno) => return Err(failed(errno)),
    }
    // Back to blocking mode: reads and writes are bounded by SO_RCVTIMEO / SO_SNDTIMEO.
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty())).map_err(failed)?;
    Ok(StreamTransport::new(
        VsockStream::from(fd),
        format!("vsock:{cid}:{port}"),
    ))
}

/// Polls a non-blocking connect until it completes, fails or `deadline` passes.
fn wait_connected(
    fd: &OwnedFd,
    deadline: Instant,
    cid: u32,
    port: u32,
    timeout: Duration,
) -> Result<(), ClientError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if left.is_zero() {
            return Err(ClientError::ConnectTimeout {
                endpoint: format!("vsock:{cid}:{port}"),
                timeout,
            });
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, PollTimeout::from(millis.max(1))) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => break,
            Err(errno) => return Err(connect_error(cid, port, errno)),
        }
    }
    match socket::getsockopt(fd, sockopt::SocketError) {
        Ok(0) => Ok(()),
        Ok(code) => Err(connect_error(cid, port, Errno::from_raw(code))),
        Err(errno) => Err(connect_error(cid, port, errno)),
    }
}

/// A failed vsock connect, with the operator's likely cause for the errno.
fn connect_error(cid: u32, port: u32, errno: Errno) -> ClientError {
    let hint = match errno {
        Errno::ENODEV | Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EADDRNOTAVAIL => {
            ": no VM with that CID is reachable (is it running with a vhost-vsock-pci device, \
             and does the host have /dev/vhost-vsock?)"
        }
        Errno::ECONNREFUSED | Errno::ECONNRESET => {
            ": the guest is there but nothing listens on that port (is the agent running with \
             vsock-listen?)"
        }
        // What the host kernel reports after its own 2 s when no VM has the CID (vhost-vsock
        // drops the packet) or the guest's kernel does not answer.
        Errno::ETIMEDOUT => {
            ": no guest with that CID answered (is the VM running with a vhost-vsock-pci device \
             of that guest-cid?)"
        }
        _ => "",
    };
    ClientError::VsockConnect {
        cid,
        port,
        source: errno.into(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(parse_vsock("3:1234"), Ok((3, 1234)));
        assert_eq!(parse_vsock("4294967295:0"), Ok((u32::MAX, 0)));
        for bad in ["3", "x:1", "3:", "-1:1234", "3:99999999999"] {
            assert!(parse_vsock(bad).is_err(), "{bad}");
        }
    }
}
