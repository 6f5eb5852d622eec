//! Named policy profiles: the qemu-ga-compatible default and the documented hardened one.
//!
//! A profile supplies defaults; every key set explicitly in the configuration wins over it, except
//! the profile's disabled commands, which stay disabled (use the default profile with your own
//! lists to build something in between). docs/policy.md lists what each profile sets.

use serde::Deserialize;
use std::path::PathBuf;

/// Where the hardened profile lets the host write, and read back what it wrote.
pub const SPOOL_DIR: &str = "/var/lib/porthole-agent/spool";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Behaves like qemu-ga: every command, every path, no exec restrictions.
    #[default]
    Default,
    /// No command execution, no password or key changes, file access only under a few prefixes.
    Hardened,
}

impl Profile {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "default" => Some(Profile::Default),
            "hardened" => Some(Profile::Hardened),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Hardened => "hardened",
        }
    }

    /// Commands this profile disables whatever the allow/block lists say.
    pub fn disabled_commands(self) -> &'static [&'static str] {
        match self {
            Profile::Default => &[],
            Profile::Hardened => &[
                "guest-exec",
                "guest-exec-status",
                "guest-set-user-password",
                "guest-ssh-add-authorized-keys",
                "guest-ssh-remove-authorized-keys",
                "guest-set-vcpus",
                "guest-set-memory-blocks",
                "exec_command",
            ],
        }
    }

    pub fn read_prefixes(self) -> Vec<PathBuf> {
        match self {
            Profile::Default => vec![PathBuf::from("/")],
            Profile::Hardened => [
                SPOOL_DIR,
                "/var/log",
                "/etc/os-release",
                "/usr/lib/os-release",
                "/etc/hostname",
                "/etc/machine-id",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
        }
    }

    pub fn write_prefixes(self) -> Vec<PathBuf> {
        match self {
            Profile::Default => vec![PathBuf::from("/")],
            Profile::Hardened => vec![PathBuf::from(SPOOL_DIR)],
        }
    }

    /// Programs guest-exec may run: `None` is any.
    pub fn exec_programs(self) -> Option<Vec<PathBuf>> {
        match self {
            Profile::Default => None,
            Profile::Hardened => Some(Vec::new()),
        }
    }

    /// Users the exec-as-user extension may run as: `None` is any.
    pub fn exec_users(self) -> Option<Vec<String>> {
        match self {
            Profile::Default => None,
            Profile::Hardened => Some(Vec::new()),
        }
    }

    /// The largest request message, bytes.
    pub fn max_message(self) -> usize {
        match self {
            Profile::Default => porthole_proto::framer::MAX_MESSAGE_BYTES,
            Profile::Hardened => 16 << 20,
        }
    }
}
