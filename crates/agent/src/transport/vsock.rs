//! vsock-listen: AF_VSOCK, for QEMU vhost-vsock, Firecracker and Cloud Hypervisor.
//!
//! Only peers in the allowed CID list (the host, CID 2, by default) are served: vsock loopback
//! would otherwise let any guest user reach a root agent. After a VM snapshot restore every
//! connection is reset; the listener stays up and the host reconnects.

use super::TransportError;
use crate::config::DEFAULT_VSOCK_PORT;
use crate::dispatch::Dispatcher;
use crate::policy::{Caller, Peer};
use crate::session::{self, OnEof};
use std::sync::Arc;
use std::time::Duration;
use tokio_vsock::{VsockAddr, VsockListener};

/// Binds every local CID.
const CID_ANY: u32 = u32::MAX;

/// Parses `CID:PORT` (CID may be -1 for any), or a bare port.
pub fn parse_address(spec: Option<&str>) -> Result<(u32, u32), TransportError> {
    let bad = |why: &str| TransportError::Config {
        method: "vsock-listen",
        message: format!("invalid address '{}': {why}", spec.unwrap_or("")),
    };
    let Some(spec) = spec else {
        return Ok((CID_ANY, DEFAULT_VSOCK_PORT));
    };
    let (cid, port) = spec.split_once(':').unwrap_or(("-1", spec));
    let cid = match cid {
        "-1" => CID_ANY,
        n => n.parse().map_err(|_| bad("CID must be a number or -1"))?,
    };
    let port = port.parse().map_err(|_| bad("port must be a number"))?;
    Ok((cid, port))
}

pub async fn serve(
    spec: Option<String>,
    allowed: Vec<u32>,
    dispatcher: Arc<Dispatcher>,
) -> Result<(), TransportError> {
    let (cid, port) = parse_address(spec.as_deref())?;
    let listener =
        VsockListener::bind(VsockAddr::new(cid, port)).map_err(|source| TransportError::Io {
            method: "vsock-listen",
            path: format!("{cid}:{port}"),
            source,
        })?;
    tracing::info!("listening on vsock port {port}");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) if allowed.contains(&peer.cid()) => {
                let dispatcher = dispatcher.clone();
                let caller = Caller::new(
                    format!("vsock-listen {port}"),
                    Peer::Vsock {
                        cid: peer.cid(),
                        port: peer.port(),
                    },
                );
                tokio::spawn(async move {
                    if let Err(e) = session::serve(stream, &dispatcher, OnEof::Close, caller).await
                    {
                        tracing::debug!("vsock client: {e}");
                    }
                });
            }
            Ok((_, peer)) => tracing::warn!(
                "refused vsock connection from CID {} (allowed: {allowed:?})",
                peer.cid()
            ),
            Err(e) => {
                tracing::warn!("vsock accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(matches!(
            parse_address(None),
            Ok((CID_ANY, DEFAULT_VSOCK_PORT))
        ));
        assert!(matches!(parse_address(Some("3:5000")), Ok((3, 5000))));
        assert!(matches!(parse_address(Some("-1:77")), Ok((CID_ANY, 77))));
        assert!(matches!(parse_address(Some("88")), Ok((CID_ANY, 88))));
        assert!(parse_address(Some("x:1")).is_err());
    }
}
