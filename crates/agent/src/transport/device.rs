//! virtio-serial and isa-serial: one character device, one host at a time.
//!
//! A virtio-serial port has no notion of a client session: while no host client is attached,
//! reads return end-of-file at once. The session treats that as "nobody there", drops any half
//! request a vanished client left behind, and polls again after [`IDLE_POLL`], which is what
//! qemu-ga does. Bytes a new client writes meanwhile wait in the port and are read on the next
//! poll, so its first request is never lost.

use super::TransportError;
use crate::config::{DEFAULT_SERIAL_PATH, DEFAULT_VIRTIO_PORT};
use crate::dispatch::Dispatcher;
use crate::policy::{Caller, Peer};
use crate::session::{self, OnEof};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often an unattached virtio port is polled for a host.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How often a missing device is looked for again with `--retry-path`.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Finds a virtio-serial port's device node.
///
/// `spec` is a path (contains `/`) or a port name (default `org.qemu.guest_agent.0`). A name is
/// looked up in `<dev>/virtio-ports/` (udev's symlinks) and, when udev did not run (initramfs,
/// minimal images), in `<sys>/class/virtio-ports/*/name`.
pub fn resolve_virtio_port(
    spec: Option<&str>,
    dev: &Path,
    sys: &Path,
) -> Result<PathBuf, TransportError> {
    let name = spec.unwrap_or(DEFAULT_VIRTIO_PORT);
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let link = dev.join("virtio-ports").join(name);
    if link.exists() {
        return Ok(link);
    }
    let ports = sys.join("class/virtio-ports");
    let entries =
        std::fs::read_dir(&ports).map_err(|_| TransportError::PortNotFound(name.to_string()))?;
    for entry in entries.flatten() {
        let port_name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if port_name.trim() == name {
            return Ok(dev.join(entry.file_name()));
        }
    }
    Err(TransportError::PortNotFound(name.to_string()))
}

fn open_device(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

pub async fn serve_virtio(
    spec: Option<String>,
    retry: bool,
    dispatcher: Arc<Dispatcher>,
) -> Result<(), TransportError> {
    loop {
        let path = match resolve_virtio_port(spec.as_deref(), Path::new("/dev"), Path::new("/sys"))
        {
            Ok(path) => path,
            Err(e) if retry => {
                tracing::debug!("{e}; retrying");
                tokio::time::sleep(RETRY_INTERVAL).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        serve_device("virtio-serial", &path, retry, None, &dispatcher).await?;
    }
}

pub async fn serve_serial(
    spec: Option<String>,
    retry: bool,
    dispatcher: Arc<Dispatcher>,
) -> Result<(), TransportError> {
    let path = PathBuf::from(spec.unwrap_or_else(|| DEFAULT_SERIAL_PATH.to_string()));
    loop {
        serve_device("isa-serial", &path, retry, Some(make_raw), &dispatcher).await?;
    }
}

/// Puts a tty in raw mode: no echo, no line editing, no translation of the protocol's bytes.
fn make_raw(file: &File) -> io::Result<()> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, ControlFlags, SetArg};
    let mut attrs = tcgetattr(file).map_err(io::Error::from)?;
    cfmakeraw(&mut attrs);
    attrs.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD;
    tcsetattr(file, SetArg::TCSANOW, &attrs).map_err(io::Error::from)
}

/// Opens and serves one device; returns when it fails and `retry` asks to reopen it.
async fn serve_device(
    method: &'static str,
    path: &Path,
    retry: bool,
    setup: Option<fn(&File) -> io::Result<()>>,
    dispatcher: &Dispatcher,
) -> Result<(), TransportError> {
    let io_err = |source| TransportError::Io {
        method,
        path: path.display().to_string(),
        source,
    };
    let file = match open_device(path) {
        Ok(file) => file,
        Err(e) if retry => {
            tracing::debug!("{method} {}: {e}; retrying", path.display());
            tokio::time::sleep(RETRY_INTERVAL).await;
            return Ok(());
        }
        Err(e) => return Err(io_err(e)),
    };
    if let Some(setup) = setup {
        setup(&file).map_err(io_err)?;
    }
    // SAFETY: the File owns its descriptor and moves into the AsyncFd, so the descriptor stays
    // open and unchanged for the AsyncFd's whole life.
    let fd = unsafe { AsyncFd::register(file) }.map_err(|e| io_err(e.into()))?;
    let device = Device { fd };
    tracing::info!("listening on {method} {}", path.display());
    let caller = Caller::new(format!("{method} {}", path.display()), Peer::Host);
    match session::serve(device, dispatcher, OnEof::Poll(IDLE_POLL), caller).await {
        Ok(()) => Ok(()),
        Err(e) if retry => {
            tracing::warn!("{method} {}: {e}; reopening", path.display());
            tokio::time::sleep(RETRY_INTERVAL).await;
            Ok(())
        }
        Err(e) => Err(io_err(e)),
    }
}

/// A non-blocking character device driven by the tokio reactor.
struct Device {
    fd: AsyncFd<File>,
}

impl AsyncRead for Device {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| inner.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Device {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|inner| inner.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_port_through_sysfs_without_udev() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let dev = root.path().join("dev");
        let sys = root.path().join("sys");
        for (port, name) in [
            ("vport1p1", "org.porthole.agent.0"),
            ("vport1p2", DEFAULT_VIRTIO_PORT),
        ] {
            let dir = sys.join("class/virtio-ports").join(port);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("name"), format!("{name}\n"))?;
        }
        std::fs::create_dir_all(&dev)?;
        assert_eq!(resolve_virtio_port(None, &dev, &sys)?, dev.join("vport1p2"));
        assert_eq!(
            resolve_virtio_port(Some("org.porthole.agent.0"), &dev, &sys)?,
            dev.join("vport1p1")
        );
        assert!(matches!(
            resolve_virtio_port(Some("nope"), &dev, &sys),
            Err(TransportError::PortNotFound(_))
        ));
        // udev's symlink wins when present.
        std::fs::create_dir_all(dev.join("virtio-ports"))?;
        std::fs::write(dev.join("virtio-ports").join(DEFAULT_VIRTIO_PORT), "")?;
        assert_eq!(
            resolve_virtio_port(None, &dev, &sys)?,
            dev.join("virtio-ports").join(DEFAULT_VIRTIO_PORT)
        );
        Ok(())
    }
}
