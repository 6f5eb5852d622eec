//! The harness's error type: each variant says what to install or where to look.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot run {tool} ({source}): {install}")]
    ToolMissing {
        tool: String,
        install: String,
        source: io::Error,
    },

    #[error("{tool} failed ({status}):\n{stderr}")]
    ToolFailed {
        tool: String,
        status: String,
        stderr: String,
    },

    #[error("cannot build porthole-agent: {0}")]
    Agent(String),

    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("{what} did not appear within {}s", timeout.as_secs())]
    NotReady { what: String, timeout: Duration },

    #[error(
        "the agent did not answer within {}s of boot ({accel}); last client error: {last}\n\
         --- guest console ---\n{console}",
        timeout.as_secs()
    )]
    BootTimeout {
        timeout: Duration,
        accel: String,
        last: String,
        console: String,
    },

    #[error("QEMU exited ({status}) before the agent answered\n--- QEMU ---\n{stderr}\n--- guest console ---\n{console}")]
    QemuExited {
        status: String,
        stderr: String,
        console: String,
    },
}

impl VmError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        VmError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
