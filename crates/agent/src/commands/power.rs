//! guest-shutdown: power off, halt or reboot the guest.
//!
//! Like qemu-ga it runs `shutdown -P|-H|-r +0 "hypervisor initiated shutdown"` and sends no reply on
//! success (the host sees the VM go away). Guests without a shutdown(8) — busybox systems — get
//! `poweroff`, `halt` or `reboot` from PATH instead.

use super::{blocking, errno_text};
use crate::agent::Agent;
use porthole_proto::commands::ShutdownArgs;
use porthole_proto::CommandError;
use serde_json::{json, Value};
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
