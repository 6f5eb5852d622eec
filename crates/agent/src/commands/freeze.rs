//! Filesystem freezing. For now guest-fsfreeze-status; the freeze/thaw commands will live here
//! and use [`FROZEN_MARKER`], so a restarted agent comes back knowing it froze the guest.

use super::NoArgs;
use crate::agent::Agent;
use porthole_proto::commands::FsfreezeStatus;
use porthole_proto::CommandError;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The marker file, in the state directory, whose presence means "filesystems are frozen"
/// (qemu-ga's equivalent is `qga.state.isfrozen`). Created by freeze, removed by thaw.
pub const FROZEN_MARKER: &str = "porthole-agent.frozen";

/// Where the frozen marker of the agent with state directory `statedir` lives.
pub fn frozen_marker(statedir: &Path) -> PathBuf {
    statedir.join(FROZEN_MARKER)
}

pub fn status(statedir: &Path) -> FsfreezeStatus {
    if frozen_marker(statedir).exists() {
        FsfreezeStatus::Frozen
    } else {
        FsfreezeStatus::Thawed
    }
}

pub async fn get_status(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    super::to_value(status(&agent.config.statedir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_decides() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(status(dir.path()), FsfreezeStatus::Thawed);
        std::fs::write(frozen_marker(dir.path()), b"")?;
        assert_eq!(status(dir.path()), FsfreezeStatus::Frozen);
        Ok(())
    }
}
