//! Running the same exchange against qemu-ga and porthole-agent.

use serde_json::Value;

use crate::agent::{Agent, AgentKind, AgentOpts};
use crate::client::{Conn, REPLY_TIMEOUT};

/// qemu-ga and porthole-agent, started with the same options.
pub struct Pair {
    pub qemu: Agent,
    pub porthole: Agent,
}

impl Pair {
    /// Start both agents; panics with the harness error (tests fail, never skip).
    pub fn start(opts: &AgentOpts) -> Pair {
        let start = |kind| {
            Agent::start_with(kind, opts)
                .unwrap_or_else(|e| panic!("starting {}: {e}", kind.label()))
        };
        Pair {
            qemu: start(AgentKind::QemuGa),
            porthole: start(AgentKind::Porthole),
        }
    }

    /// Start both with default options.
    pub fn new() -> Pair {
        Self::start(&AgentOpts::default())
    }

    /// Run `f` against both agents concurrently; returns `(qemu, porthole)` results.
    pub fn each<T: Send>(&self, f: impl Fn(&Agent) -> T + Sync) -> (T, T) {
        std::thread::scope(|s| {
            let q = s.spawn(|| f(&self.qemu));
            let p = f(&self.porthole);
            let q = match q.join() {
                Ok(q) => q,
                Err(e) => std::panic::resume_unwind(e),
            };
            (q, p)
        })
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

/// Connect to `agent`, panicking with the harness error.
pub fn connect(agent: &Agent) -> Conn {
    agent
        .connect()
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", agent.kind.label()))
}

/// Send `bytes`, then a `guest-sync` sentinel with a fresh id, and return every reply that came
/// before the sentinel's. This tolerates agents that answer one bad input with several error
/// replies and proves the agent recovered.
pub fn exchange(conn: &mut Conn, bytes: &[u8]) -> Vec<Value> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sentinel = serde_json::json!({"execute": "guest-sync", "arguments": {"id": id}});
    conn.send(bytes)
        .and_then(|()| conn.send_json(&sentinel))
        .unwrap_or_else(|e| panic!("sending {:?}: {e}", String::from_utf8_lossy(bytes)));
    let (before, _) = conn
        .read_until(|r| r.value.get("return") == Some(&id.into()), REPLY_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "no reply to the sync sentinel after {:?}: {e}",
                String::from_utf8_lossy(bytes)
            )
        });
    before.into_iter().map(|r| r.value).collect()
}
