//! rust-vmm's `vhost-device-vsock`: the host side of the guest's virtio-vsock device when the
//! host has no `/dev/vhost-vsock`. QEMU talks vhost-user to it (`-device vhost-user-vsock-pci`),
//! and it exposes the guest's ports on one unix socket with Firecracker's hybrid vsock
//! `CONNECT <port>` scheme.

use crate::error::VmError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get the daemon, for error messages.
pub const INSTALL: &str = "install it with `cargo install vhost-device-vsock --locked` \
     (scripts/deps.sh does), or set PORTHOLE_VHOST_DEVICE_VSOCK to its path";
/// How long the daemon may take to create its vhost-user socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's executable: `PORTHOLE_VHOST_DEVICE_VSOCK`, else `PATH`, else `~/.cargo/bin`.
pub fn find() -> Result<PathBuf, VmError> {
    if let Some(path) = std::env::var_os("PORTHOLE_VHOST_DEVICE_VSOCK") {
        return Ok(PathBuf::from(path));
    }
    let in_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    in_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("vhost-device-vsock"))
        .find(|path| path.is_file())
        .ok_or_else(|| VmError::ToolMissing {
            tool: "vhost-device-vsock".into(),
            install: INSTALL.into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

/// Starts the daemon for guest `cid`: QEMU connects to `vhost_socket`, host clients to
/// `uds_path`. Returns once the vhost-user socket exists.
pub fn start(
    daemon: &Path,
    cid: u32,
    vhost_socket: &Path,
    uds_path: &Path,
    log: &Path,
) -> Result<Child, VmError> {
    let log_file =
        std::fs::File::create(log).map_err(|e| VmError::io("creating the vsock log", log, e))?;
    let stderr = log_file
        .try_clone()
        .map_err(|e| VmError::io("opening the vsock log", log, e))?;
    let mut child = Command::new(daemon)
        .arg(format!("--guest-cid={cid}"))
        .arg(format!("--socket={}", vhost_socket.display()))
        .arg(format!("--uds-path={}", uds_path.display()))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .spawn()
        .map_err(|source| VmError::ToolMissing {
            tool: daemon.display().to_string(),
            install: INSTALL.into(),
            source,
        })?;
    let start = Instant::now();
    while !vhost_socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(VmError::ToolFailed {
                tool: "vhost-device-vsock".into(),
                status: status.to_string(),
                stderr: std::fs::read_to_string(log).unwrap_or_default(),
            });
        }
        if start.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VmError::NotReady {
                what: format!("vhost-device-vsock's socket {}", vhost_socket.display()),
                timeout: START_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}
