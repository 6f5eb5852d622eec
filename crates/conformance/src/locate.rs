//! Finding the agent binaries.
//!
//! porthole-agent lives in another crate of the workspace, so `env!("CARGO_BIN_EXE_...")` is not
//! available here. Resolution order:
//! 1. `PORTHOLE_AGENT_BIN` (absolute path) if set: CI or a developer can point at any build,
//!    including `/usr/sbin/qemu-ga` itself for a self-test of the suite.
//! 2. Otherwise run `cargo build -p porthole-agent --bin porthole-agent --message-format=json`
//!    once per process and take the `executable` path cargo reports for the artifact. Asking cargo
//!    for the path (instead of guessing `<target>/debug/...`) works with any `CARGO_TARGET_DIR`,
//!    `--target` triple or custom profile layout. The build is a no-op when `cargo test` already
//!    built the workspace member.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where Debian's package `qemu-guest-agent` installs the reference agent.
pub const QEMU_GA: &str = "/usr/sbin/qemu-ga";

/// Build profile of porthole-agent to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

/// Failure to locate or build porthole-agent.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("PORTHOLE_AGENT_BIN={0} does not exist")]
    EnvMissing(PathBuf),
    #[error("running cargo to build porthole-agent: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`cargo build -p porthole-agent` failed ({status}):\n{stderr}")]
    BuildFailed { status: String, stderr: String },
    #[error("cargo built porthole-agent but reported no executable path")]
    NoExecutable,
}

/// Path of qemu-ga. Panics with the Debian package name when it is missing: tests that need it
/// must fail, not skip.
pub fn require_qemu_ga() -> PathBuf {
    let p = PathBuf::from(QEMU_GA);
    assert!(
        p.is_file(),
        "{QEMU_GA} is missing: install Debian package qemu-guest-agent (apt-get install -y qemu-guest-agent)"
    );
    p
}

/// Path of porthole-agent for `profile`, building it if needed (once per process and profile).
pub fn porthole_agent(profile: Profile) -> Result<PathBuf, LocateError> {
    if let Some(p) = std::env::var_os("PORTHOLE_AGENT_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LocateError::EnvMissing(p))
        };
    }
    static DEBUG: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static RELEASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cell = match profile {
        Profile::Debug => &DEBUG,
        Profile::Release => &RELEASE,
    };
    // OnceLock cannot hold the non-Clone error, so keep its rendering and re-wrap it.
    cell.get_or_init(|| cargo_build(profile).map_err(|e| e.to_string()))
        .clone()
        .map_err(|stderr| LocateError::BuildFailed {
            status: "see message".into(),
            stderr,
        })
}

/// True when the porthole side is really qemu-ga (self-test mode, see the crate docs).
pub fn porthole_is_qemu_ga() -> bool {
    std::env::var_os("PORTHOLE_AGENT_BIN")
        .map(|p| Path::new(&p).file_name() == Some("qemu-ga".as_ref()))
        .unwrap_or(false)
}

fn cargo_build(profile: Profile) -> Result<PathBuf, LocateError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "-p",
        "porthole-agent",
        "--bin",
        "porthole-agent",
        "--message-format=json-render-diagnostics",
    ]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(LocateError::Spawn)?;
    if !out.status.success() {
        return Err(LocateError::BuildFailed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    executable_from_messages(&out.stdout).ok_or(LocateError::NoExecutable)
}

/// The `executable` of the last `compiler-artifact` message for target `porthole-agent`.
fn executable_from_messages(stdout: &[u8]) -> Option<PathBuf> {
    stdout
        .rsplit(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "porthole-agent")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_artifact_messages() {
        let msgs = br#"{"reason":"compiler-artifact","target":{"name":"serde"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"porthole-agent"},"executable":"/t/debug/porthole-agent"}
{"reason":"build-finished","success":true}
"#;
        assert_eq!(
            executable_from_messages(msgs),
            Some(PathBuf::from("/t/debug/porthole-agent"))
        );
        assert_eq!(executable_from_messages(b"garbage\n"), None);
    }
}
