//! Hybrid vsock: Firecracker's and Cloud Hypervisor's host side of virtio-vsock, also served by
//! rust-vmm's vhost-device-vsock.
//!
//! The VM has one host unix socket. To reach guest port P, a client connects to it, writes
//! `CONNECT P\n` and reads `OK <host port>\n`; from then on the socket is the byte stream to the
//! guest. When nothing listens on P in the guest, the VMM closes the connection instead of
//! answering, so we retry (a booting guest's agent may not listen yet) until the timeout ends.

use super::{connect_unix, remaining, StreamTransport, UnixTransport};
use crate::error::ClientError;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pause between attempts while the guest does not listen.
pub const HYBRID_RETRY: Duration = Duration::from_millis(100);
/// The longest acknowledgement line accepted (`OK 4294967295\n` is 14 bytes).
const MAX_REPLY: usize = 64;

/// `PATH:PORT`: the VMM's unix socket and the guest port; the path may itself contain `:`, so
/// the port is what follows the last one.
pub fn parse_hybrid_vsock(text: &str) -> Result<(PathBuf, u32), String> {
    let (path, port) = text
        .rsplit_once(':')
        .filter(|(path, _)| !path.is_empty())
        .ok_or_else(|| format!("'{text}' is not of the form PATH:PORT"))?;
    let port = port
        .parse::<u32>()
        .map_err(|_| format!("'{port}' is not a vsock port (0 to 4294967295)"))?;
    Ok((PathBuf::from(path), port))
}

/// Why one attempt did not give a connection.
enum Attempt {
    /// The VMM closed the connection: nothing listens on the port (yet).
    Refused,
    /// The deadline passed before the VMM answered `CONNECT`.
    TimedOut,
    /// Anything else ends the retries.
    Failed(ClientError),
}

/// Connects to guest port `port` through the VMM's socket `path`, retrying while the VMM
/// reports that nothing listens, for at most `timeout`.
pub fn connect(path: &Path, port: u32, timeout: Duration) -> Result<UnixTransport, ClientError> {
    let deadline = Instant::now() + timeout;
    let endpoint = format!("hybrid-vsock:{}:{port}", path.display());
    let mut refused = false;
    loop {
        match attempt(path, port, deadline) {
            Ok(stream) => return Ok(StreamTransport::new(stream, endpoint)),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Refused) if Instant::now() + HYBRID_RETRY < deadline => {
                refused = true;
                std::thread::sleep(HYBRID_RETRY);
            }
            // The VMM waits for the guest's answer before it answers us, so a slow guest can
            // run the clock out mid-attempt: after a refusal that still means "not listening".
            Err(Attempt::Refused) => {
                return Err(ClientError::GuestNotListening { endpoint, timeout })
            }
            Err(Attempt::TimedOut) if refused => {
                return Err(ClientError::GuestNotListening { endpoint, timeout })
            }
            Err(Attempt::TimedOut) => {
                let detail = format!(
                    "no answer to CONNECT {port} within {:.1}s: the VMM asks the guest first, \
                     so the guest is hung or too busy to answer (is the VM running?)",
                    timeout.as_secs_f64()
                );
                return Err(hybrid_error(path, &detail));
            }
        }
    }
}

/// One `CONNECT` exchange.
fn attempt(path: &Path, port: u32, deadline: Instant) -> Result<UnixStream, Attempt> {
    let mut stream = connect_unix(path).map_err(Attempt::Failed)?;
    let io_failed = |e: io::Error| match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Attempt::Refused,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Attempt::TimedOut,
        _ => Attempt::Failed(hybrid_error(path, &format!("i/o error: {e}"))),
    };
    let left = remaining(deadline).map_err(io_failed)?;
    stream.set_write_timeout(Some(left)).map_err(io_failed)?;
    stream.set_read_timeout(Some(left)).map_err(io_failed)?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(io_failed)?;
    match read_line(&mut stream).map_err(io_failed)? {
        None => Err(Attempt::Refused),
        Some(line) => check_ack(&line)
            .map(|_host_port| stream)
            .map_err(|detail| Attempt::Failed(hybrid_error(path, &detail))),
    }
}

/// Reads one line byte by byte (nothing past the `\n` may be taken from the guest's stream);
/// `None` when the VMM closes the connection first.
fn read_line(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() <= MAX_REPLY {
        match stream.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) if byte[0] == b'\n' => return Ok(Some(line)),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(line))
}

/// `OK <host port>` → the host port; anything else is the VMM's complaint, quoted.
fn check_ack(line: &[u8]) -> Result<u32, String> {
    let text = String::from_utf8_lossy(line);
    text.strip_prefix("OK ")
        .and_then(|port| port.trim_end_matches('\r').parse::<u32>().ok())
        .ok_or_else(|| format!("expected 'OK <port>' after CONNECT, got {:?}", text))
}

fn hybrid_error(path: &Path, detail: &str) -> ClientError {
    ClientError::HybridVsock {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            parse_hybrid_vsock("/run/fc/v.sock:1234"),
            Ok((PathBuf::from("/run/fc/v.sock"), 1234))
        );
        assert_eq!(parse_hybrid_vsock("a:b:52"), Ok((PathBuf::from("a:b"), 52)));
        for bad in ["/x", ":1", "/x:", "/x:port", "/x:-1"] {
            assert!(parse_hybrid_vsock(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acknowledgements() {
        assert_eq!(check_ack(b"OK 1073741824"), Ok(1_073_741_824));
        assert_eq!(check_ack(b"OK 5\r"), Ok(5));
        for bad in [&b"ok"[..], b"OK", b"OK x", b"ERR no", b"\xff\xfe"] {
            assert!(check_ack(bad).is_err());
        }
    }
}
