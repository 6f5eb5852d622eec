//! The audit log: one line per state-changing command (run or refused), naming the command, a
//! short summary of its arguments, the caller and the outcome.
//!
//! The summary never carries file contents, process input, environment, arguments of a program,
//! passwords or keys: those members are replaced by their size. Lines go to the configured audit
//! file (opened for append, created 0600) or, without one, to the agent log under the `audit`
//! target.
//!
//! Nothing is written while the guest's filesystems are frozen (a write would block the agent
//! until thaw, and qemu-ga's rule is that nothing touches the disk while frozen): lines are
//! *buffered* in memory, up to [`FROZEN_BUFFER`] of them, and written after thaw; beyond that
//! they are dropped and the number dropped is written instead.

use crate::commands::freeze::frozen_marker;
use porthole_proto::{CommandError, ErrorKind};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines kept while frozen.
pub const FROZEN_BUFFER: usize = 1024;
/// Longest string value quoted in a summary.
const VALUE_CHARS: usize = 96;
/// Members never written, only measured.
const SECRET_MEMBERS: &[&str] = &[
    "buf-b64",
    "input-data",
    "arg",
    "args",
    "env",
    "password",
    "keys",
    "content",
    "data-b64",
];

/// Commands that change nothing; every other command is audited.
const READ_ONLY: &[&str] = &[
    "guest-sync",
    "guest-sync-delimited",
    "guest-ping",
    "guest-info",
    "guest-file-read",
    "guest-file-seek",
    "guest-file-flush",
    "guest-file-close",
    "guest-exec-status",
    "guest-fsfreeze-status",
    "guest-ssh-get-authorized-keys",
    "ping",
    "file_read",
    // porthole's extensions that change nothing (exec-output only collects what is buffered).
    "guest-porthole-exec-output",
    "guest-porthole-file-read",
    "guest-porthole-file-sha256",
    "guest-porthole-file-partial",
    "guest-porthole-telemetry",
    "guest-porthole-processes",
    "guest-porthole-services",
    "guest-porthole-service-status",
];

/// Who sent a request: the listener and, where the medium tells, the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// e.g. `unix-listen /run/porthole.sock`, `virtio-serial org.qemu.guest_agent.0`.
    pub listener: String,
    pub peer: Peer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A character device: the host at the other end, unidentified.
    Host,
    /// A unix socket client, from SO_PEERCRED.
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
    /// A vsock client.
    Vsock { cid: u32, port: u32 },
}

impl Caller {
    pub fn new(listener: impl Into<String>, peer: Peer) -> Self {
        Self {
            listener: listener.into(),
            peer,
        }
    }

    /// A caller for in-process use (tests, benchmarks).
    pub fn internal() -> Self {
        Self::new("internal", Peer::Host)
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.listener)?;
        match self.peer {
            Peer::Host => Ok(()),
            Peer::Unix { uid, gid, pid } => {
                write!(f, " uid={uid} gid={gid}")?;
                match pid {
                    Some(pid) => write!(f, " pid={pid}"),
                    None => Ok(()),
                }
            }
            Peer::Vsock { cid, port } => write!(f, " cid={cid} port={port}"),
        }
    }
}

/// Whether `command` with `args` changes the guest (and so is audited).
pub fn is_state_changing(command: &str, args: &Map<String, Value>) -> bool {
    if command == "guest-file-open" {
        let mode = args.get("mode").and_then(Value::as_str).unwrap_or("r");
        return !matches!(mode, "r" | "rb");
    }
    !(READ_ONLY.contains(&command)
        || command.starts_with("guest-get-")
        || command.starts_with("get_")
        || command.starts_with("guest-network-get-"))
}

/// `key=value` pairs of the arguments, secrets replaced by their size.
pub fn summarize(args: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (key, value) in args {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{}=", sanitize(key, 32));
        if SECRET_MEMBERS.contains(&key.as_str()) {
            let _ = match value {
                Value::String(s) => write!(out, "<{} bytes>", s.len()),
                Value::Array(a) => write!(out, "<{} items>", a.len()),
                Value::Object(o) => write!(out, "<{} items>", o.len()),
                _ => write!(out, "<set>"),
            };
            continue;
        }
        let _ = match value {
            Value::String(s) => write!(out, "\"{}\"", sanitize(s, VALUE_CHARS)),
            Value::Array(a) => write!(out, "<{} items>", a.len()),
            Value::Object(o) => write!(out, "<{} members>", o.len()),
            other => write!(out, "{other}"),
        };
    }
    out
}

/// At most `limit` characters, control characters, quotes and backslashes escaped so one line
/// stays one line whatever the host sends.
fn sanitize(text: &str, limit: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == limit {
            out.push('…');
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The outcome column: `ok`, or `error:<kind>`.
pub fn outcome(result: &Result<(), &CommandError>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => format!("error:{}", kind_name(e.kind)),
    }
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Parse => "parse",
        ErrorKind::InvalidRequest => "invalid-request",
        ErrorKind::CommandNotFound => "not-found",
        ErrorKind::CommandDisabled => "disabled",
        ErrorKind::InvalidParams => "invalid-params",
        ErrorKind::Failed => "failed",
        ErrorKind::PermissionDenied => "permission-denied",
        ErrorKind::NotFound => "not-found",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Internal => "internal",
    }
}

struct State {
    file: Option<File>,
    pending: VecDeque<String>,
    dropped: u64,
}

pub struct Audit {
    path: Option<PathBuf>,
    statedir: PathBuf,
    state: Mutex<State>,
}

impl Audit {
    /// `path`: the audit file, or `None` for the agent log. `statedir` holds the frozen marker.
    pub fn new(path: Option<PathBuf>, statedir: &Path) -> Self {
        Self {
            path,
            statedir: statedir.to_path_buf(),
            state: Mutex::new(State {
                file: None,
                pending: VecDeque::new(),
                dropped: 0,
            }),
        }
    }

    /// Records one command.
    pub fn record(&self, command: &str, summary: &str, caller: &Caller, outcome: &str) {
        let line = format!(
            "{} command={command} args=\"{}\" caller=\"{}\" result={outcome}",
            timestamp(SystemTime::now()),
            summary.replace('"', "'"),
            sanitize(&caller.to_string(), 256),
        );
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if frozen_marker(&self.statedir).exists() {
            if state.pending.len() < FROZEN_BUFFER {
                state.pending.push_back(line);
            } else {
                state.dropped += 1;
            }
            return;
        }
        let mut lines: Vec<String> = state.pending.drain(..).collect();
        if state.dropped > 0 {
            lines.push(format!(
                "{} audit: {} lines dropped while filesystems were frozen",
                timestamp(SystemTime::now()),
                state.dropped
            ));
            state.dropped = 0;
        }
        lines.push(line);
        for line in lines {
            self.write(&mut state, &line);
        }
    }

    fn write(&self, state: &mut State, line: &str) {
        let Some(path) = &self.path else {
            tracing::info!(target: "audit", "{line}");
            return;
        };
        if state.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(path)
            {
                Ok(file) => state.file = Some(file),
                Err(e) => {
                    tracing::warn!("audit log {}: {e}; line: {line}", path.display());
                    return;
                }
            }
        }
        if let Some(file) = state.file.as_mut() {
            if let Err(e) = writeln!(file, "{line}") {
                tracing::warn!("audit log {}: {e}; line: {line}", path.display());
                state.file = None;
            }
        }
    }
}

/// RFC 3339 UTC with seconds, computed without a calendar crate (Howard Hinnant's civil_from_days).
pub fn timestamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let at = |s| timestamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn summaries_hide_secrets_and_stay_on_one_line() {
        let args =
            json!({"path": "/x\n\"y", "buf-b64": "c2VjcmV0", "arg": ["-p", "pw"], "handle": 7});
        let text = summarize(args.as_object().unwrap());
        assert!(!text.contains("c2VjcmV0") && !text.contains("pw"), "{text}");
        assert!(
            text.contains("buf-b64=<8 bytes>") && text.contains("arg=<2 items>"),
            "{text}"
        );
        assert!(text.contains("handle=7") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn state_changing_commands() {
        let none = Map::new();
        assert!(is_state_changing("guest-exec", &none));
        assert!(is_state_changing("guest-fsfreeze-freeze", &none));
        assert!(!is_state_changing("guest-get-osinfo", &none));
        assert!(!is_state_changing("guest-file-open", &none));
        let w = json!({"mode": "w"});
        assert!(is_state_changing("guest-file-open", w.as_object().unwrap()));
    }

    #[test]
    fn frozen_lines_are_buffered_then_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let audit = Audit::new(Some(log.clone()), dir.path());
        let caller = Caller::internal();
        std::fs::write(frozen_marker(dir.path()), "").unwrap();
        audit.record("guest-fsfreeze-freeze", "", &caller, "ok");
        assert!(!log.exists(), "nothing written while frozen");
        std::fs::remove_file(frozen_marker(dir.path())).unwrap();
        audit.record("guest-fsfreeze-thaw", "", &caller, "ok");
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("command=guest-fsfreeze-freeze"));
        assert!(lines[1].contains("command=guest-fsfreeze-thaw"));
    }
}
