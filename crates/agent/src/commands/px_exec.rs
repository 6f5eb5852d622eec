//! guest-porthole-exec, -exec-output, -exec-kill, -exec-stdin: programs run as a chosen
//! user and group, with a timeout, output streamed back in chunks and stdin written after start.
//!
//! Names are resolved before the fork; in the child only async-signal-safe calls run:
//! setgroups, then setgid, then setuid (dropping the uid last, or the others would fail), then
//! chdir as the new user (so a directory the user may not enter is refused). Each child leads
//! its own process group, so a timeout or a kill reaches whatever it forked.
//!
//! Output is read in the background into one buffer per stream, each bounded by the policy's
//! `exec-max-output` (the excess is drained and dropped, flagged `*-truncated`), so a chatty or
//! runaway child never blocks the agent. `-exec-output` hands out what arrived since the last
//! call; the chunk with `exited: true` carries the status and removes the entry.

use super::errno_text;
use super::file::decode_base64;
use crate::agent::Agent;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use nix::unistd::{Gid, Group, Uid, User};
use porthole_proto::commands::{
    PxExecArgs, PxExecKillArgs, PxExecOutput, PxExecOutputArgs, PxExecStdinArgs,
};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};

/// Entries (running, or exited with output not yet collected) at once.
pub const MAX_ENTRIES: usize = 256;
/// `max-bytes` when absent.
pub const DEFAULT_CHUNK: usize = 4 << 20;
/// The longest `timeout-ms` accepted (a year): beyond it is surely a mistake.
const MAX_TIMEOUT_MS: i64 = 365 * 24 * 3600 * 1000;
/// How long output pipes may stay open after the child exited (held by a grandchild).
const PIPE_GRACE: Duration = Duration::from_millis(500);
/// How long one stdin write may wait for a child that does not read.
const STDIN_WAIT: Duration = Duration::from_secs(10);
/// Supplementary groups set at most (the kernel's NGROUPS_MAX).
const MAX_GROUPS: usize = 65536;

#[derive(Debug, Default)]
struct Buffer {
    pending: Vec<u8>,
    truncated: bool,
}

#[derive(Debug, Clone, Copy)]
struct Finished {
    status: ExitStatus,
    timed_out: bool,
}

struct Entry {
    /// Output is handed out while the child runs; stdin stays open.
    stream: bool,
    /// Bytes buffered per stream (`exec-max-output`).
    limit: usize,
    /// The child's process group (its pid).
    pgid: i32,
    out: Mutex<Buffer>,
    err: Mutex<Buffer>,
    /// Set once the child exited and its output pipes are drained.
    finished: Mutex<Option<Finished>>,
    stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
}

/// The extension's processes, by handle (not pid: a pid is reused, a handle never).
pub struct PxExecTable {
    next: AtomicI64,
    entries: Mutex<HashMap<i64, Arc<Entry>>>,
}

impl Default for PxExecTable {
    fn default() -> Self {
        Self {
            next: AtomicI64::new(1),
            entries: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, CommandError> {
    mutex
        .lock()
        .map_err(|_| CommandError::internal("porthole exec table lock poisoned"))
}

impl PxExecTable {
    fn insert(&self, entry: Arc<Entry>) -> Result<i64, CommandError> {
        let mut entries = lock(&self.entries)?;
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        entries.insert(handle, entry);
        Ok(handle)
    }

    fn has_room(&self) -> Result<(), CommandError> {
        if lock(&self.entries)?.len() >= MAX_ENTRIES {
            return Err(CommandError::failed(format!(
                "too many processes whose output was not collected (limit {MAX_ENTRIES})"
            )));
        }
        Ok(())
    }

    fn get(&self, handle: i64) -> Result<Arc<Entry>, CommandError> {
        lock(&self.entries)?
            .get(&handle)
            .cloned()
            .ok_or_else(|| CommandError::not_found(format!("exec handle {handle} not found")))
    }

    fn remove(&self, handle: i64) -> Result<(), CommandError> {
        lock(&self.entries)?.remove(&handle);
        Ok(())
    }
}

/// Who the child runs as: resolved before the fork.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

fn lookup_user(name: &str) -> Result<User, CommandError> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    match found {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(CommandError::not_found(format!("unknown user '{name}'"))),
        Err(e) => Err(CommandError::failed(format!(
            "cannot look up user '{name}': {}",
            e.desc()
        ))),
    }
}

pub fn lookup_group(name: &str) -> Result<Gid, CommandError> {
    let found = match name.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)).map(|g| g.map(|g| g.gid)),
        Err(_) => Group::from_name(name).map(|g| g.map(|g| g.gid)),
    };
    match found {
        Ok(Some(gid)) => Ok(gid),
        // A bare number without a group entry is still a valid gid.
        Ok(None) => match name.parse::<u32>() {
            Ok(gid) => Ok(Gid::from_raw(gid)),
            Err(_) => Err(CommandError::not_found(format!("unknown group '{name}'"))),
        },
        Err(e) => Err(CommandError::failed(format!(
            "cannot look up group '{name}': {}",
            e.desc()
        ))),
    }
}

/// Resolves `user`, `group` and `supplementary-groups` and asks the policy (`exec-users`)
/// about the user the child will run as: the requested one, else the agent's own.
fn identity(agent: &Agent, args: &PxExecArgs) -> Result<Option<Identity>, CommandError> {
    let user = args.user.as_deref().map(lookup_user).transpose()?;
    let own = || {
        User::from_uid(Uid::current())
            .ok()
            .flatten()
            .map_or_else(|| Uid::current().to_string(), |u| u.name)
    };
    let name = user.as_ref().map_or_else(own, |u| u.name.clone());
    agent.policy.check_user(&name)?;
    if user.is_none() && args.group.is_none() && args.supplementary_groups.is_none() {
        return Ok(None);
    }
    let gid = match (&args.group, &user) {
        (Some(group), _) => lookup_group(group)?,
        (None, Some(user)) => user.gid,
        (None, None) => Gid::current(),
    };
    let groups = match (&args.supplementary_groups, &user) {
        (Some(list), _) => {
            if list.len() > MAX_GROUPS {
                return Err(CommandError::invalid_value(
                    list.len(),
                    "supplementary-groups",
                ));
            }
            list.iter()
                .map(|g| lookup_group(g))
                .collect::<Result<Vec<_>, _>>()?
        }
        // As login does (initgroups): the user's groups from /etc/group, with its primary one.
        (None, Some(user)) => {
            let cname = CString::new(user.name.clone())
                .map_err(|_| CommandError::invalid_value(&user.name, "user"))?;
            nix::unistd::getgrouplist(&cname, gid).map_err(|e| {
                CommandError::failed(format!(
                    "cannot list the groups of '{}': {}",
                    user.name,
                    e.desc()
                ))
            })?
        }
        (None, None) => vec![gid],
    };
    Ok(Some(Identity {
        uid: user.map_or_else(|| Uid::current().as_raw(), |u| u.uid.as_raw()),
        gid: gid.as_raw(),
        groups: groups.into_iter().map(Gid::as_raw).collect(),
    }))
}

/// The timeout asked for (refused over the policy's `exec-max-timeout`), else the policy's.
fn timeout(agent: &Agent, args: &PxExecArgs) -> Result<Option<Duration>, CommandError> {
    match args.timeout_ms {
        None => Ok(agent.policy.exec.max_timeout),
        Some(ms) if !(1..=MAX_TIMEOUT_MS).contains(&ms) => {
            Err(CommandError::invalid_value(ms, "timeout-ms"))
        }
        Some(ms) => {
            let requested = Duration::from_millis(ms.unsigned_abs());
            agent.policy.check_timeout(requested)?;
            Ok(Some(requested))
        }
    }
}

fn build(
    args: &PxExecArgs,
    program: Option<&std::path::Path>,
    who: Option<Identity>,
    cwd: Option<CString>,
) -> Command {
    let target = program.map_or_else(|| std::ffi::OsStr::new(&args.path), |p| p.as_os_str());
    let mut command = Command::new(target);
    command.arg0(&args.path);
    command.args(args.arg.iter().flatten());
    if let Some(env) = &args.env {
        command.env_clear();
        for entry in env {
            let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            command.env(key, value);
        }
    }
    command.process_group(0);
    // SAFETY: the closure only makes raw system calls (setgroups, setgid, setuid, chdir) on
    // data prepared before the fork and reads errno: all async-signal-safe, no allocation.
    unsafe {
        command.pre_exec(move || {
            if let Some(who) = &who {
                if libc::setgroups(who.groups.len(), who.groups.as_ptr()) != 0
                    || libc::setgid(who.gid) != 0
                    || libc::setuid(who.uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(dir) = &cwd {
                if libc::chdir(dir.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command
}

pub async fn exec(agent: Arc<Agent>, args: PxExecArgs) -> Result<Value, CommandError> {
    let program = agent
        .policy
        .check_program(&args.path, args.env.as_deref())?;
    let who = identity(&agent, &args)?;
    let deadline = timeout(&agent, &args)?;
    let input = args.input_data.as_deref().map(decode_base64).transpose()?;
    let cwd = args
        .cwd
        .as_deref()
        .map(|dir| CString::new(dir).map_err(|_| CommandError::invalid_value(dir, "cwd")))
        .transpose()?;
    agent.px_execs.has_room()?;
    let stream = args.stream.unwrap_or(false);
    let mut command = build(&args, program.as_deref(), who, cwd);
    let stdin_open = stream || input.is_some();
    command
        .stdin(if stdin_open {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| {
        CommandError::failed(format!(
            "failed to start '{}': {}",
            args.path,
            errno_text(&e)
        ))
    })?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .unwrap_or(0);
    let entry = Arc::new(Entry {
        stream,
        limit: agent.policy.exec.max_output,
        pgid,
        out: Mutex::default(),
        err: Mutex::default(),
        finished: Mutex::new(None),
        stdin: Arc::new(tokio::sync::Mutex::new(child.stdin.take())),
    });
    if let Some(input) = input {
        feed_initial(&entry, input, stream);
    }
    let handle = agent.px_execs.insert(entry.clone())?;
    tokio::spawn(supervise(child, entry, deadline));
    Ok(json!({ "handle": handle }))
}

/// Writes `input-data` in the background, holding the stdin lock so later writes queue behind
/// it; without `stream` stdin is closed afterwards.
fn feed_initial(entry: &Entry, input: Vec<u8>, stream: bool) {
    let Ok(mut guard) = entry.stdin.clone().try_lock_owned() else {
        return;
    };
    tokio::spawn(async move {
        if let Some(pipe) = guard.as_mut() {
            // A child that does not read its input gets EPIPE here; that is its business.
            let _ = pipe.write_all(&input).await;
        }
        if !stream {
            *guard = None;
        }
    });
}

/// Captures output, waits for the child (killing its process group past the deadline) and
/// records the status once the pipes are drained.
async fn supervise(
    mut child: tokio::process::Child,
    entry: Arc<Entry>,
    deadline: Option<Duration>,
) {
    let mut pumps = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(pipe, entry.clone(), true)));
    }
    if let Some(pipe) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(pipe, entry.clone(), false)));
    }
    let (status, timed_out) = match deadline {
        None => (child.wait().await, false),
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => (status, false),
            Err(_) => {
                tracing::warn!(
                    "killing process group {} after {limit:?} (timeout)",
                    entry.pgid
                );
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(entry.pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                (child.wait().await, true)
            }
        },
    };
    for task in pumps {
        let abort = task.abort_handle();
        if tokio::time::timeout(PIPE_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    let status = status.unwrap_or_else(|e| {
        tracing::warn!("waiting for child: {e}");
        ExitStatus::from_raw(0xff00)
    });
    if let Ok(mut finished) = entry.finished.lock() {
        *finished = Some(Finished { status, timed_out });
    }
}

async fn pump<R: AsyncRead + Unpin>(mut reader: R, entry: Arc<Entry>, stdout: bool) {
    let slot = if stdout { &entry.out } else { &entry.err };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(mut kept) = slot.lock() else {
            return;
        };
        let room = entry.limit.saturating_sub(kept.pending.len());
        if n > room {
            kept.truncated = true;
        }
        kept.pending
            .extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
    }
}

/// Takes up to `max` bytes from the front of `buffer`.
fn take(buffer: &mut Buffer, max: usize) -> Vec<u8> {
    let n = buffer.pending.len().min(max);
    buffer.pending.drain(..n).collect()
}

pub async fn output(agent: Arc<Agent>, args: PxExecOutputArgs) -> Result<Value, CommandError> {
    let entry = agent.px_execs.get(args.handle)?;
    let max = match args.max_bytes {
        None => DEFAULT_CHUNK.min(entry.limit.max(1)),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=entry.limit.max(1)).contains(n))
            .ok_or_else(|| CommandError::invalid_value(n, "max-bytes"))?,
    };
    // Read before draining: once set, the buffers hold everything the child wrote.
    let finished = *lock(&entry.finished)?;
    let mut reply = PxExecOutput::default();
    if !entry.stream && finished.is_none() {
        return super::to_value(reply);
    }
    let (mut out, mut err) = (lock(&entry.out)?, lock(&entry.err)?);
    let stdout = take(&mut out, max);
    let stderr = take(&mut err, max - stdout.len());
    reply.stdout_b64 = BASE64.encode(&stdout);
    reply.stderr_b64 = BASE64.encode(&stderr);
    let flag = |set: bool, last: bool| (set || last).then_some(set);
    let last = finished.is_some() && out.pending.is_empty() && err.pending.is_empty();
    reply.stdout_truncated = flag(out.truncated, last);
    reply.stderr_truncated = flag(err.truncated, last);
    drop((out, err));
    if let (true, Some(done)) = (last, finished) {
        agent.px_execs.remove(args.handle)?;
        reply.exited = true;
        reply.exitcode = done.status.code();
        reply.signal = done.status.signal();
        reply.timed_out = Some(done.timed_out);
    }
    super::to_value(reply)
}

pub async fn kill(agent: Arc<Agent>, args: PxExecKillArgs) -> Result<Value, CommandError> {
    let entry = agent.px_execs.get(args.handle)?;
    let number = args.signal.unwrap_or(libc::SIGTERM.into());
    let signal = i32::try_from(number)
        .ok()
        .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
        .ok_or_else(|| CommandError::invalid_value(number, "signal"))?;
    if lock(&entry.finished)?.is_some() {
        return Err(CommandError::failed(format!(
            "exec handle {} has already exited",
            args.handle
        )));
    }
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(entry.pgid), signal).map_err(|e| {
        CommandError::failed(format!(
            "cannot signal process group {}: {}",
            entry.pgid,
            e.desc()
        ))
    })?;
    Ok(json!({}))
}

pub async fn stdin(agent: Arc<Agent>, args: PxExecStdinArgs) -> Result<Value, CommandError> {
    let entry = agent.px_execs.get(args.handle)?;
    let data = decode_base64(&args.data_b64)?;
    let closed = || {
        CommandError::failed(format!(
            "the standard input of exec handle {} is closed (start with stream: true to write it after start)",
            args.handle
        ))
    };
    let mut guard = tokio::time::timeout(STDIN_WAIT, entry.stdin.lock())
        .await
        .map_err(|_| CommandError::timeout("standard input is busy"))?;
    let pipe = guard.as_mut().ok_or_else(closed)?;
    let mut written = 0;
    while written < data.len() {
        let piece = data.get(written..).unwrap_or_default();
        match tokio::time::timeout(STDIN_WAIT, pipe.write(piece)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => {
                *guard = None;
                return Err(CommandError::failed(format!(
                    "writing standard input after {written} bytes: {}",
                    errno_text(&e)
                )));
            }
            Err(_) => {
                return Err(CommandError::timeout(format!(
                    "the child read only {written} of {} bytes within {} s",
                    data.len(),
                    STDIN_WAIT.as_secs()
                )))
            }
        }
    }
    if args.eof == Some(true) {
        *guard = None;
    }
    Ok(json!({ "written": written }))
}
