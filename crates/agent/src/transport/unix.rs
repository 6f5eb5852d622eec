//! unix-listen: a socket in the guest, serving many clients at once (qemu-ga serves one).

use super::TransportError;
use crate::dispatch::Dispatcher;
use crate::policy::{Caller, Peer};
use crate::session::{self, OnEof};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;

pub async fn serve(path: PathBuf, dispatcher: Arc<Dispatcher>) -> Result<(), TransportError> {
    let io = |source| TransportError::Io {
        method: "unix-listen",
        path: path.display().to_string(),
        source,
    };
    // A socket left by an earlier run would make bind fail; anything else at the path is kept.
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    let listener = UnixListener::bind(&path).map_err(io)?;
    // Only root (the agent's user) may talk to the agent through this socket.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    tracing::info!("listening on unix socket {}", path.display());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let dispatcher = dispatcher.clone();
                // SO_PEERCRED: who connected, for the audit log.
                let peer = match stream.peer_cred() {
                    Ok(cred) => Peer::Unix {
                        uid: cred.uid(),
                        gid: cred.gid(),
                        pid: cred.pid(),
                    },
                    Err(_) => Peer::Host,
                };
                let caller = Caller::new(format!("unix-listen {}", path.display()), peer);
                tokio::spawn(async move {
                    if let Err(e) = session::serve(stream, &dispatcher, OnEof::Close, caller).await
                    {
                        tracing::debug!("unix client: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors or similar: keep serving the clients we have.
                tracing::warn!("accept on {}: {e}", path.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
