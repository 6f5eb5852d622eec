//! The security policy gate every request passes, whatever its dialect or channel.
//!
//! For now it holds qemu-ga's command filters (`-b` block list, `-a` allow list); path, exec and
//! size rules join it here, so there is exactly one place that says yes or no.

use porthole_proto::CommandError;
use std::collections::HashSet;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    blocked: HashSet<String>,
    /// When set, only these commands are enabled (qemu-ga 8.0's `--allow-rpcs`).
    allowed: Option<HashSet<String>>,
}

impl Policy {
    pub fn new(blocked: &[String], allowed: Option<&[String]>) -> Self {
        Self {
            blocked: blocked.iter().cloned().collect(),
            allowed: allowed.map(|list| list.iter().cloned().collect()),
        }
    }

    /// Whether `command` may run at all; `guest-info` reports this as `enabled`.
    pub fn command_enabled(&self, command: &str) -> bool {
        let allowed = self
            .allowed
            .as_ref()
            .is_none_or(|set| set.contains(command));
        allowed && !self.blocked.contains(command)
    }

    /// Refuses a disabled command the way qemu-ga does (class CommandNotFound).
    pub fn check_command(&self, command: &str) -> Result<(), CommandError> {
        if self.command_enabled(command) {
            Ok(())
        } else {
            Err(CommandError::command_disabled(command, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_allow_lists() {
        let policy = Policy::new(&["guest-exec".into()], None);
        assert!(!policy.command_enabled("guest-exec"));
        assert!(policy.command_enabled("guest-ping"));
        let err = policy.check_command("guest-exec").err();
        assert_eq!(
            err.map(|e| e.desc),
            Some("Command guest-exec has been disabled".to_string())
        );
        let allow = ["guest-ping".to_string(), "guest-exec".to_string()];
        let policy = Policy::new(&["guest-exec".into()], Some(&allow));
        assert!(policy.command_enabled("guest-ping"));
        assert!(
            !policy.command_enabled("guest-exec"),
            "block wins over allow"
        );
        assert!(!policy.command_enabled("guest-info"));
    }
}
