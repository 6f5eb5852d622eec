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

pub async fn serve(
    path: PathBuf,
    owner: Option<&str>,
    dispatcher: Arc<Dispatcher>,
) -> Result<(), TransportError> {
    // Resolved first, so a bad name fails before anything is created.
    let owner = owner.map(resolve_owner).transpose()?;
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
    // Only the socket's owner (root, the agent's user, unless `unix-socket-owner` names another)
    // may talk to the agent through it: connecting needs write permission on the socket.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(&path, Some(uid), gid).map_err(|e| io(e.into()))?;
    }
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

/// `USER[:GROUP]` from `unix-socket-owner` as ids; a name the guest does not know is an error.
fn resolve_owner(
    spec: &str,
) -> Result<(nix::unistd::Uid, Option<nix::unistd::Gid>), TransportError> {
    use nix::unistd::{Group, User};
    let bad = |message: String| TransportError::Config {
        method: "unix-listen",
        message,
    };
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let uid = User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| bad(format!("unix-socket-owner: no user '{user}' in this guest")))?
        .uid;
    let gid = match group {
        Some(group) => Some(
            Group::from_name(group)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    bad(format!(
                        "unix-socket-owner: no group '{group}' in this guest"
                    ))
                })?
                .gid,
        ),
        None => None,
    };
    Ok((uid, gid))
}
