//! Spawning an agent on a fresh socket and state directory.
//!
//! Both agents get the same qemu-ga command line (`-m unix-listen -p SOCK -t STATEDIR -f PIDFILE`
//! plus per-test extras) and the same small, fixed environment, so that differences in replies
//! come from the agents and not from the harness. The child is killed when the [`Agent`] drops.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::locate::{self, LocateError, Profile};

/// How long an agent may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may be refused after the socket file appeared (bind before listen).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// Debian's `/usr/sbin/qemu-ga`.
    QemuGa,
    /// porthole-agent, debug build (tests).
    Porthole,
    /// porthole-agent, release build (benchmarks).
    PortholeRelease,
}

impl AgentKind {
    /// Short label for messages.
    pub fn label(self) -> &'static str {
        match self {
            AgentKind::QemuGa => "qemu-ga",
            AgentKind::Porthole | AgentKind::PortholeRelease => "porthole-agent",
        }
    }

    /// Binary path; for qemu-ga panics with the Debian package name when missing.
    pub fn binary(self) -> Result<PathBuf, HarnessError> {
        Ok(match self {
            AgentKind::QemuGa => locate::require_qemu_ga(),
            AgentKind::Porthole => locate::porthole_agent(Profile::Debug)?,
            AgentKind::PortholeRelease => locate::porthole_agent(Profile::Release)?,
        })
    }
}

/// Failures of the harness itself (not of the agent under test's replies).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error("creating temp dir: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("spawning {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{label} exited before serving ({status}); stderr:\n{stderr}")]
    Exited {
        label: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{label} did not create socket {path} within {START_TIMEOUT:?}; stderr:\n{stderr}")]
    NoSocket {
        label: &'static str,
        path: PathBuf,
        stderr: String,
    },
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading /proc/{pid}/status: {source}")]
    ProcStatus {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// Memory figures from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemStatus {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
}

/// A running agent; killed (and reaped) on drop.
pub struct Agent {
    pub kind: AgentKind,
    child: Child,
    sock: PathBuf,
    dir: tempfile::TempDir,
}

/// Options beyond the fixed command line.
#[derive(Debug, Default, Clone)]
pub struct AgentOpts {
    /// Extra command-line arguments (e.g. `-b guest-exec`).
    pub args: Vec<String>,
    /// Extra environment variables (e.g. `QGA_OS_RELEASE`).
    pub env: Vec<(String, String)>,
}

impl AgentOpts {
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// The fixed environment given to both agents (their children inherit it via guest-exec).
pub const AGENT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Agent {
    /// Start `kind` with default options.
    pub fn start(kind: AgentKind) -> Result<Agent, HarnessError> {
        Self::start_with(kind, &AgentOpts::default())
    }

    /// Start `kind` with extra arguments and environment; returns once the socket accepts.
    pub fn start_with(kind: AgentKind, opts: &AgentOpts) -> Result<Agent, HarnessError> {
        let bin = kind.binary()?;
        let dir = tempfile::Builder::new()
            .prefix("porthole-conf-")
            .tempdir()
            .map_err(HarnessError::TempDir)?;
        let state = dir.path().join("state");
        let scratch = dir.path().join("scratch");
        for d in [&state, &scratch] {
            std::fs::create_dir(d).map_err(HarnessError::TempDir)?;
        }
        let sock = dir.path().join("qga.sock");
        let stderr = File::create(dir.path().join("stderr.log")).map_err(HarnessError::TempDir)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-m")
            .arg("unix-listen")
            .arg("-p")
            .arg(&sock)
            .arg("-t")
            .arg(&state)
            .arg("-f")
            .arg(dir.path().join("agent.pid"))
            .args(&opts.args)
            .env_clear()
            .env("PATH", AGENT_PATH)
            .env("LANG", "C")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            bin: bin.clone(),
            source,
        })?;
        let mut agent = Agent {
            kind,
            child,
            sock,
            dir,
        };
        agent.wait_for_socket()?;
        Ok(agent)
    }

    fn wait_for_socket(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.sock.exists() {
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(HarnessError::NoSocket {
                    label: self.kind.label(),
                    path: self.sock.clone(),
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Error if the agent process has exited.
    pub fn check_alive(&mut self) -> Result<(), HarnessError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(HarnessError::Exited {
                label: self.kind.label(),
                status,
                stderr: self.stderr(),
            }),
            _ => Ok(()),
        }
    }

    /// Connect a new client, retrying while the listener is not yet ready.
    pub fn connect(&self) -> Result<Conn, HarnessError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match UnixStream::connect(&self.sock) {
                Ok(s) => return Ok(Conn::new(s)),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(source) => {
                    return Err(HarnessError::Connect {
                        path: self.sock.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Socket path.
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// The agent's state directory (`-t`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A per-agent scratch directory for test files (also the agent's cwd).
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Process id of the agent.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// VmRSS and VmHWM of the agent process.
    pub fn mem_status(&self) -> Result<MemStatus, HarnessError> {
        let pid = self.pid();
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| HarnessError::ProcStatus { pid, source })?;
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Ok(MemStatus {
            vm_rss_kib: field("VmRSS:"),
            vm_hwm_kib: field("VmHWM:"),
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
