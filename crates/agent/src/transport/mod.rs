//! The channels an agent listens on. Each turns its medium into byte streams for
//! [`crate::session::serve`]; nothing above this module knows which medium a request came by.

mod device;
mod unix;
mod vsock;

use crate::config::{Config, Listener, Method};
use crate::dispatch::Dispatcher;
use std::path::PathBuf;
use std::sync::Arc;

pub use device::resolve_virtio_port;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{method} {path}: {source}")]
    Io {
        method: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{method}: {message}")]
    Config {
        method: &'static str,
        message: String,
    },
    #[error("virtio-serial port '{0}' not found in /dev/virtio-ports or /sys/class/virtio-ports (is the channel configured for this VM?)")]
    PortNotFound(String),
}

/// Serves one listener until it fails.
pub async fn serve(
    listener: Listener,
    config: Arc<Config>,
    dispatcher: Arc<Dispatcher>,
) -> Result<(), TransportError> {
    match listener.method {
        Method::UnixListen => {
            let path = listener.path.ok_or_else(|| TransportError::Config {
                method: "unix-listen",
                message: "a socket path is required (-p PATH)".into(),
            })?;
            let owner = config.unix_socket_owner.as_deref();
            unix::serve(PathBuf::from(path), owner, dispatcher).await
        }
        Method::VirtioSerial => {
            device::serve_virtio(listener.path, config.retry_path, dispatcher).await
        }
        Method::IsaSerial => {
            device::serve_serial(listener.path, config.retry_path, dispatcher).await
        }
        Method::VsockListen => {
            vsock::serve(listener.path, config.vsock_allowed_cids.clone(), dispatcher).await
        }
    }
}
