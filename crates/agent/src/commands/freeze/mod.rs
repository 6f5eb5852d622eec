//! Filesystem freezing: guest-fsfreeze-freeze, -freeze-list, -thaw and -status.
//!
//! Freeze, as qemu-ga 7.2 does it: run the hook ([`hook`]), list the block-device mounts
//! ([`mounts`]), record the frozen state (the marker [`FROZEN_MARKER`] in the state directory,
//! so a restarted agent comes back frozen), then FIFREEZE each mount in reverse mount order.
//! EOPNOTSUPP (not freezable) and EBUSY (a bind mount of a filesystem already frozen) are
//! skipped; any other error thaws everything and fails. Thaw: FITHAW every mount, clear the
//! marker, then the hook with `thaw`.
//!
//! While frozen only [`FREEZE_ALLOWED`] commands run (everything else might write to a frozen
//! filesystem and hang the agent), and the log is held in memory ([`log`]).
//!
//! Beyond qemu-ga: an auto-thaw timer (`fsfreeze-auto-thaw`, seconds, 0 disables) thaws
//! filesystems a host forgot, or died before thawing. It is armed by every successful freeze,
//! cancelled by an explicit thaw, and re-armed from scratch by an agent that starts and finds
//! the marker.

pub mod hook;
pub mod log;
pub mod mounts;

use super::fsinfo::Mount;
use super::sysfs::os_error;
use super::{blocking, NoArgs};
use crate::agent::Agent;
use porthole_proto::commands::{FreezeListArgs, FsfreezeStatus};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The marker file, in the state directory, whose presence means "filesystems are frozen"
/// (qemu-ga's equivalent is `qga.state.isfrozen`). Created by freeze, removed by thaw.
pub const FROZEN_MARKER: &str = "porthole-agent.frozen";

/// The commands that run while frozen (qemu-ga's freeze allow list).
pub const FREEZE_ALLOWED: &[&str] = &[
    "guest-ping",
    "guest-info",
    "guest-sync",
    "guest-sync-delimited",
    "guest-fsfreeze-status",
    "guest-fsfreeze-thaw",
];

/// qemu-ga's reason for refusing a command while frozen.
const FROZEN_REASON: &str = "the agent is in frozen state";

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

/// The freeze state one agent shares across sessions.
pub struct FreezeState {
    marker: PathBuf,
    frozen: AtomicBool,
    /// Serializes freeze, thaw and the auto-thaw.
    op: tokio::sync::Mutex<()>,
    /// Bumped by every freeze and thaw: a timer fires only for the freeze that armed it.
    generation: AtomicU64,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FreezeState {
    /// The state of an agent starting with `statedir`: frozen when the marker is there.
    pub fn new(statedir: &Path) -> Self {
        let marker = frozen_marker(statedir);
        Self {
            frozen: AtomicBool::new(marker.exists()),
            marker,
            op: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            timer: Mutex::new(None),
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Records the frozen state before the first FIFREEZE (the marker cannot be written later).
    fn mark(&self) -> Result<(), CommandError> {
        std::fs::write(&self.marker, b"frozen\n").map_err(|e| {
            os_error(
                format!(
                    "cannot record the frozen state in {}",
                    self.marker.display()
                ),
                &e,
            )
        })?;
        self.frozen.store(true, Ordering::SeqCst);
        log::set_frozen(true);
        Ok(())
    }

    fn unmark(&self) {
        if let Err(e) = std::fs::remove_file(&self.marker) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("removing {}: {e}", self.marker.display());
            }
        }
        self.frozen.store(false, Ordering::SeqCst);
        log::set_frozen(false);
    }

    fn set_timer(&self, task: Option<tokio::task::JoinHandle<()>>) {
        let mut slot = self.timer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = std::mem::replace(&mut *slot, task) {
            old.abort();
        }
    }
}

/// Holds the log back if `statedir` says the filesystems are frozen; called before the log
/// file is opened, so a restarted agent never blocks on a frozen log.
pub fn hold_log_if_frozen(statedir: &Path) {
    log::set_frozen(frozen_marker(statedir).exists());
}

/// Whether `command` may run in the current freeze state (guest-info's `enabled`).
pub fn enabled_now(agent: &Agent, command: &str) -> bool {
    !agent.freeze.is_frozen() || FREEZE_ALLOWED.contains(&command)
}

/// Refuses a command that is unsafe while frozen, with qemu-ga's class and text.
pub fn refuse_while_frozen(agent: &Agent, command: &str) -> Result<(), CommandError> {
    if enabled_now(agent, command) {
        Ok(())
    } else {
        Err(CommandError::command_disabled(command, Some(FROZEN_REASON)))
    }
}

/// Start-up: an agent that finds the marker comes back frozen, with a fresh auto-thaw timer.
pub fn resume(agent: &Arc<Agent>) {
    if agent.freeze.is_frozen() {
        log::set_frozen(true);
        tracing::warn!(
            "a previous instance left filesystems frozen; commands other than fsfreeze-thaw \
             and friends are disabled until guest-fsfreeze-thaw (or until {} is removed)",
            agent.freeze.marker.display()
        );
        arm_timer(agent);
    }
}

pub async fn get_status(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    super::to_value(status(&agent.config.statedir))
}

pub async fn freeze(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    freeze_some(agent, None).await
}

pub async fn freeze_list(agent: Arc<Agent>, args: FreezeListArgs) -> Result<Value, CommandError> {
    // policy: a rule on which mount points the host may freeze would check `args.mountpoints`
    // here. They are only compared with mountinfo's names, never opened as given.
    freeze_some(agent, args.mountpoints).await
}

pub async fn thaw(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    let _op = agent.freeze.op.lock().await;
    // We hold the lock, so the timer is asleep or waiting for it: aborting it is safe.
    agent.freeze.set_timer(None);
    thaw_locked(&agent).await.map(|n| json!(n))
}

async fn freeze_some(
    agent: Arc<Agent>,
    wanted: Option<Vec<String>>,
) -> Result<Value, CommandError> {
    let _op = agent.freeze.op.lock().await;
    agent.freeze.generation.fetch_add(1, Ordering::SeqCst);
    let worker = agent.clone();
    let frozen = blocking(move || freeze_blocking(&worker, wanted.as_deref())).await?;
    if frozen > 0 {
        arm_timer(&agent);
    }
    Ok(json!(frozen))
}

fn freeze_blocking(agent: &Agent, wanted: Option<&[String]>) -> Result<i64, CommandError> {
    tracing::info!("guest-fsfreeze called");
    let hook = agent.config.fsfreeze_hook.as_deref();
    hook::freeze(hook)?;
    let undo_hook = |e: CommandError| {
        if let Err(h) = hook::thaw(hook) {
            tracing::warn!("thaw hook after a failed freeze: {h}");
        }
        e
    };
    let mounts = mounts::list().map_err(undo_hook)?;
    agent.freeze.mark().map_err(undo_hook)?;
    match freeze_mounts(&mounts, wanted) {
        Ok(0) => {
            // Nothing frozen: no frozen state; unlike qemu-ga, let the hook resume what it paused.
            agent.freeze.unmark();
            hook::thaw(hook).map_err(|e| tracing::warn!("{e}")).ok();
            Ok(0)
        }
        Ok(n) => {
            tracing::info!("froze {n} filesystem(s)");
            Ok(n)
        }
        Err(e) => {
            if let Err(t) = thaw_blocking(agent) {
                tracing::warn!("thaw after a failed freeze: {t}");
            }
            Err(e)
        }
    }
}

/// FIFREEZE in reverse mount order (children before the filesystems they sit on).
fn freeze_mounts(mounts: &[Mount], wanted: Option<&[String]>) -> Result<i64, CommandError> {
    let mut frozen = 0;
    for mount in mounts.iter().rev() {
        if wanted.is_some_and(|list| !list.contains(&mount.dir)) {
            continue;
        }
        let file = mounts::open(mount)
            .map_err(|e| os_error(format!("failed to open {}", mount.dir), &e))?;
        if !mounts::is_that_filesystem(&file, mount) {
            tracing::warn!(
                "{} is no longer the mount point of {}",
                mount.dir,
                mount.source
            );
            continue;
        }
        match mounts::freeze(&file) {
            Ok(()) => frozen += 1,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EBUSY)) => {}
            Err(e) => return Err(os_error(format!("failed to freeze {}", mount.dir), &e)),
        }
    }
    Ok(frozen)
}

/// Called with the op lock held.
async fn thaw_locked(agent: &Arc<Agent>) -> Result<i64, CommandError> {
    agent.freeze.generation.fetch_add(1, Ordering::SeqCst);
    let worker = agent.clone();
    blocking(move || thaw_blocking(&worker)).await
}

/// FITHAW every mount, clear the frozen state, then run the thaw hooks.
fn thaw_blocking(agent: &Agent) -> Result<i64, CommandError> {
    let mounts = mounts::list()?;
    let thawed = mounts
        .iter()
        .filter(|m| mounts::open(m).is_ok_and(|f| mounts::thaw(&f)))
        .count() as i64;
    agent.freeze.unmark();
    tracing::info!("thawed {thawed} filesystem(s)");
    hook::thaw(agent.config.fsfreeze_hook.as_deref())?;
    Ok(thawed)
}

/// Arms the auto-thaw for the current freeze (no-op when disabled or outside a runtime).
fn arm_timer(agent: &Arc<Agent>) {
    let seconds = agent.config.fsfreeze_auto_thaw;
    if seconds == 0 {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let generation = agent.freeze.generation.load(Ordering::SeqCst);
    let worker = agent.clone();
    let task = runtime.spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        auto_thaw(worker, generation, seconds).await;
    });
    agent.freeze.set_timer(Some(task));
}

async fn auto_thaw(agent: Arc<Agent>, generation: u64, seconds: u64) {
    let _op = agent.freeze.op.lock().await;
    if agent.freeze.generation.load(Ordering::SeqCst) != generation || !agent.freeze.is_frozen() {
        return;
    }
    tracing::warn!("filesystems frozen for {seconds} s without a thaw: auto-thaw");
    match thaw_locked(&agent).await {
        Ok(n) => tracing::warn!("auto-thaw thawed {n} filesystem(s)"),
        Err(e) => tracing::warn!("auto-thaw: {e}"),
    }
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
        assert!(FreezeState::new(dir.path()).is_frozen());
        Ok(())
    }

    #[test]
    fn only_listed_mounts_are_considered() {
        // A wanted list matching nothing freezes nothing and opens nothing.
        let mounts = vec![Mount {
            dir: "/".into(),
            fstype: "ext4".into(),
            source: "/dev/vda".into(),
            major: 254,
            minor: 0,
        }];
        let wanted = vec!["/nonexistent-porthole".to_string()];
        assert_eq!(freeze_mounts(&mounts, Some(&wanted)).ok(), Some(0));
        assert_eq!(freeze_mounts(&mounts, Some(&[])).ok(), Some(0));
    }
}
