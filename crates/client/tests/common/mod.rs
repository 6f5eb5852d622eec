//! Starting real guest agents for the tests: Debian's qemu-ga and (when present) porthole-agent,
//! which take the same command line. Shared by the client and CLI test suites (`#[path]`).
#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const QEMU_GA: &str = "/usr/sbin/qemu-ga";

/// Which agent binary a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    QemuGa,
    /// porthole's own agent, built from this workspace (or `PORTHOLE_AGENT_BIN`).
    Porthole,
}

impl AgentKind {
    fn binary(self) -> PathBuf {
        match self {
            AgentKind::QemuGa => {
                assert!(
                    Path::new(QEMU_GA).exists(),
                    "{QEMU_GA} is missing: install the Debian package qemu-guest-agent \
                     (apt-get install -y qemu-guest-agent)"
                );
                PathBuf::from(QEMU_GA)
            }
            AgentKind::Porthole => porthole_agent().clone(),
        }
    }
}

/// porthole-agent: `PORTHOLE_AGENT_BIN`, else built once per test binary with the cargo running
/// the tests, into the workspace's target directory (already built artifacts are reused).
pub fn porthole_agent() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PORTHOLE_AGENT_BIN") {
            return PathBuf::from(bin);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "porthole-agent",
                "--bin",
                "porthole-agent",
            ])
            .current_dir(&workspace)
            .status()
            .expect("run cargo build -p porthole-agent");
        assert!(status.success(), "cargo build -p porthole-agent failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let bin = target.join("debug/porthole-agent");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// Every agent the suites exercise.
pub fn agent_kinds() -> Vec<AgentKind> {
    vec![AgentKind::QemuGa, AgentKind::Porthole]
}

/// A running agent listening on a unix socket in a private temporary directory; killed on drop.
pub struct Agent {
    pub kind: AgentKind,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Agent {
    /// Starts `kind` with `-m unix-listen -p SOCK -t STATEDIR` plus `extra` arguments and waits
    /// until its socket accepts connections.
    pub fn start(kind: AgentKind, extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("temporary directory");
        let socket = dir.path().join("agent.sock");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state directory");
        // The agent's log goes to a file beside its socket, quoted when it dies early.
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let child = Command::new(kind.binary())
            .arg("-m")
            .arg("unix-listen")
            .arg("-p")
            .arg(&socket)
            .arg("-t")
            .arg(&state)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {kind:?}: {e}"));
        let mut agent = Agent {
            kind,
            socket,
            dir,
            child,
        };
        agent.wait_listening();
        agent
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.path("agent.log")).unwrap_or_default();
                panic!(
                    "{:?} exited early with {status}; its log:\n{log}",
                    self.kind
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{:?} did not listen on {} within 10 s",
            self.kind,
            self.socket.display()
        );
    }

    /// A path inside the agent's private directory (the agent runs on this host, so guest paths
    /// are host paths).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
