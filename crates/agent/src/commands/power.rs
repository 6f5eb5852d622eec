//! guest-shutdown: power off, halt or reboot the guest.
//!
//! Like qemu-ga it runs `shutdown -P|-H|-r +0 "hypervisor initiated shutdown"` and sends no reply on
//! success (the host sees the VM go away). Guests without a shutdown(8) — busybox systems — get
//! `poweroff`, `halt` or `reboot` from PATH instead.
//!
//! guest-suspend-disk, -ram and -hybrid: hibernate, suspend to RAM, or both, through systemd,
//! pm-utils or /sys/power/state (see [`suspend`]); no reply on success either.

use super::{blocking, errno_text, NoArgs};
use crate::agent::Agent;
use porthole_proto::commands::ShutdownArgs;
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

pub async fn shutdown(agent: Arc<Agent>, args: ShutdownArgs) -> Result<Value, CommandError> {
    let mode = args.mode.unwrap_or_else(|| "powerdown".to_string());
    let (flag, fallback) = match mode.as_str() {
        "powerdown" => ("-P", "poweroff"),
        "halt" => ("-H", "halt"),
        "reboot" => ("-r", "reboot"),
        // qemu-ga's text, unbalanced parenthesis included.
        _ => {
            return Err(CommandError::failed(
                "mode is invalid (valid values are: halt|powerdown|reboot",
            ))
        }
    };
    let program = agent.config.shutdown_command.clone();
    blocking(move || {
        let mut command = if program.exists() {
            let mut c = Command::new(&program);
            c.args([flag, "+0", "hypervisor initiated shutdown"]);
            c
        } else {
            Command::new(fallback)
        };
        let status = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| {
                CommandError::failed(format!("cannot run shutdown: {}", errno_text(&e)))
            })?;
        if status.success() {
            Ok(json!({}))
        } else {
            Err(CommandError::failed(format!(
                "child process has failed to shutdown: {status}"
            )))
        }
    })
    .await
}

/// What guest-suspend-disk, -ram and -hybrid ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendMode {
    Disk,
    Ram,
    Hybrid,
}

impl SuspendMode {
    fn systemd_unit(self) -> &'static str {
        match self {
            SuspendMode::Disk => "systemd-hibernate",
            SuspendMode::Ram => "systemd-suspend",
            SuspendMode::Hybrid => "systemd-hybrid-sleep",
        }
    }
    fn systemctl_verb(self) -> &'static str {
        match self {
            SuspendMode::Disk => "hibernate",
            SuspendMode::Ram => "suspend",
            SuspendMode::Hybrid => "hybrid-sleep",
        }
    }
    fn pm_flag(self) -> &'static str {
        match self {
            SuspendMode::Disk => "--hibernate",
            SuspendMode::Ram => "--suspend",
            SuspendMode::Hybrid => "--suspend-hybrid",
        }
    }
    fn pm_program(self) -> &'static str {
        match self {
            SuspendMode::Disk => "pm-hibernate",
            SuspendMode::Ram => "pm-suspend",
            SuspendMode::Hybrid => "pm-suspend-hybrid",
        }
    }
    /// The word /sys/power/state takes; hybrid sleep has none.
    fn sys_word(self) -> Option<&'static str> {
        match self {
            SuspendMode::Disk => Some("disk"),
            SuspendMode::Ram => Some("mem"),
            SuspendMode::Hybrid => None,
        }
    }
}

const SYS_POWER_STATE: &str = "/sys/power/state";

pub async fn suspend_disk(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| suspend(SuspendMode::Disk)).await
}

pub async fn suspend_ram(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| suspend(SuspendMode::Ram)).await
}

pub async fn suspend_hybrid(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| suspend(SuspendMode::Hybrid)).await
}

/// qemu-ga's order: systemd, then pm-utils, then /sys/power/state; each is asked whether it
/// supports the mode before it is used. Unlike qemu-ga 7.2, systemd counts only when it is the
/// running init (qemu-ga trusts `systemctl status`' exit code, which is 1 without systemd), and
/// a mode that some method supports but every such method failed to enter reports the last
/// failure (qemu-ga then reports success).
fn suspend(mode: SuspendMode) -> Result<Value, CommandError> {
    let mut failure = None;
    if systemd_supports(mode) {
        match expect_success("systemctl", &[mode.systemctl_verb()]) {
            Ok(()) => return Ok(json!({})),
            Err(e) => failure = Some(e),
        }
    }
    if pmutils_supports(mode) {
        match expect_success(mode.pm_program(), &[]) {
            Ok(()) => return Ok(json!({})),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(word) = mode
        .sys_word()
        .filter(|w| sys_state_supports(Path::new(SYS_POWER_STATE), w))
    {
        match std::fs::write(SYS_POWER_STATE, word) {
            Ok(()) => return Ok(json!({})),
            Err(e) => {
                failure = Some(CommandError::failed(format!(
                    "suspend: cannot write to '{SYS_POWER_STATE}': {}",
                    errno_text(&e)
                )))
            }
        }
    }
    Err(failure.unwrap_or_else(|| {
        CommandError::failed("the requested suspend mode is not supported by the guest")
    }))
}

/// sd_booted(3)'s test, then `systemctl status UNIT`: LSB codes 1-3 mean the unit exists.
fn systemd_supports(mode: SuspendMode) -> bool {
    Path::new("/run/systemd/system").is_dir()
        && matches!(
            run_helper("systemctl", &["status", mode.systemd_unit()]),
            Ok(Some(1..=3))
        )
}

fn pmutils_supports(mode: SuspendMode) -> bool {
    matches!(
        run_helper("pm-is-supported", &[mode.pm_flag()]),
        Ok(Some(0))
    )
}

/// Whether /sys/power/state lists `word` (read with a small bound).
fn sys_state_supports(path: &Path, word: &str) -> bool {
    super::sysfs::read_text(path, 4096).is_ok_and(|text| text.split_whitespace().any(|w| w == word))
}

/// Runs a helper from PATH with output discarded; `Ok(None)` when it is not installed, else
/// its exit code (128 + signal when a signal ended it).
fn run_helper(program: &str, args: &[&str]) -> Result<Option<i32>, CommandError> {
    use std::os::unix::process::ExitStatusExt;
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) => Ok(Some(
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CommandError::failed(format!(
            "failed to create child process, error '{}'",
            errno_text(&e)
        ))),
    }
}

/// Runs the helper that enters the sleep state, with qemu-ga's texts on failure.
fn expect_success(program: &str, args: &[&str]) -> Result<(), CommandError> {
    let name = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    match run_helper(program, args)? {
        Some(0) => Ok(()),
        None => Err(CommandError::failed(format!(
            "the helper program '{name}' was not found"
        ))),
        Some(code) => Err(CommandError::failed(format!(
            "the helper program '{name}' returned an unexpected exit status code ({code})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_power_state_words() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state");
        std::fs::write(&path, "freeze mem disk\n")?;
        assert!(sys_state_supports(&path, "mem"));
        assert!(sys_state_supports(&path, "disk"));
        std::fs::write(&path, "freeze\n")?;
        assert!(!sys_state_supports(&path, "mem"));
        assert!(!sys_state_supports(&dir.path().join("missing"), "mem"));
        assert_eq!(SuspendMode::Hybrid.sys_word(), None);
        Ok(())
    }

    #[test]
    fn helper_failures_have_qemu_gas_texts() {
        let err = expect_success("false", &[]).err().map(|e| e.desc);
        assert_eq!(
            err.as_deref(),
            Some("the helper program 'false' returned an unexpected exit status code (1)")
        );
        let err = expect_success("porthole-no-such-helper", &["x"])
            .err()
            .map(|e| e.desc);
        assert_eq!(
            err.as_deref(),
            Some("the helper program 'porthole-no-such-helper x' was not found")
        );
    }
}
