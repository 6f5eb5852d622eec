//! guest-exec and guest-exec-status.
//!
//! A child runs with its output captured in the background, each stream capped at 16 MiB (the
//! excess is drained and dropped, so a chatty child never blocks on a full pipe) with the
//! `*-truncated` flags telling the host. Its status is kept until one guest-exec-status reports
//! it exited; that call reaps the entry, as in qemu-ga. A child that exits while a grandchild
//! still holds its pipes is reported exited after a short grace period with the output so far.

use super::errno_text;
use super::file::decode_base64;
use crate::agent::Agent;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use porthole_proto::commands::{CaptureMode, ExecArgs, ExecStatus, ExecStatusArgs};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// qemu-ga's cap on each captured stream: the default of the policy's `exec-max-output`.
pub const OUTPUT_LIMIT: usize = crate::policy::exec::DEFAULT_MAX_OUTPUT;
/// Processes whose status has not been collected yet; bounds the table a host can grow.
pub const MAX_UNCOLLECTED: usize = 1024;
/// How long output pipes may stay open after the child exited (held by a grandchild).
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// Output captured from one stream.
#[derive(Debug, Default)]
struct Captured {
    data: Vec<u8>,
    truncated: bool,
}

/// A child and, once it exited, its status.
#[derive(Debug)]
struct Entry {
    mode: CaptureMode,
    /// Bytes kept per stream (the policy's `exec-max-output`).
    limit: usize,
    out: Mutex<Captured>,
    err: Mutex<Captured>,
    exit: Mutex<Option<ExitStatus>>,
}

#[derive(Default)]
pub struct ExecTable {
    entries: Mutex<HashMap<i64, Arc<Entry>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, CommandError> {
    mutex
        .lock()
        .map_err(|_| CommandError::internal("exec table lock poisoned"))
}

impl ExecTable {
    fn insert(&self, pid: i64, entry: Arc<Entry>) -> Result<(), CommandError> {
        lock(&self.entries)?.insert(pid, entry);
        Ok(())
    }

    fn len(&self) -> Result<usize, CommandError> {
        Ok(lock(&self.entries)?.len())
    }

    fn get(&self, pid: i64) -> Result<Arc<Entry>, CommandError> {
        lock(&self.entries)?
            .get(&pid)
            .cloned()
            .ok_or_else(|| CommandError::not_found("Invalid parameter 'pid'"))
    }

    fn remove(&self, pid: i64) -> Result<(), CommandError> {
        lock(&self.entries)?.remove(&pid);
        Ok(())
    }
}

/// The command line as given: PATH lookup uses `env`'s PATH when `env` sets one (glib's
/// G_SPAWN_SEARCH_PATH_FROM_ENVP, which qemu-ga uses), which is what std does too. `via_shell`
/// runs the file with /bin/sh instead, as execvp(3) and glib do for a file that is not in an
/// executable format (a script without `#!`).
///
/// `program` is what to run when the policy resolved `args.path` to a checked file; argv[0]
/// stays `args.path` (multi-call binaries dispatch on it).
fn build_command(args: &ExecArgs, program: Option<&Path>, via_shell: bool) -> Command {
    let target = program.map_or_else(|| std::ffi::OsStr::new(&args.path), |p| p.as_os_str());
    let mut command = if via_shell {
        let mut sh = Command::new("/bin/sh");
        sh.arg(target);
        sh
    } else {
        let mut c = Command::new(target);
        c.arg0(&args.path);
        c
    };
    command.args(args.arg.iter().flatten());
    if let Some(env) = &args.env {
        command.env_clear();
        for entry in env {
            let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            command.env(key, value);
        }
    }
    command
}

/// How to start a child beyond its [`ExecArgs`].
#[derive(Debug, Clone, Copy, Default)]
struct Launch<'a> {
    /// The checked program to run instead of looking `path` up again.
    program: Option<&'a Path>,
    cwd: Option<&'a Path>,
    stdin_piped: bool,
    via_shell: bool,
}

/// Starts the child with its pipes wired for `mode`.
fn spawn(
    args: &ExecArgs,
    mode: CaptureMode,
    launch: Launch<'_>,
) -> std::io::Result<(tokio::process::Child, Pipes)> {
    let mut command = build_command(args, launch.program, launch.via_shell);
    if let Some(cwd) = launch.cwd {
        command.current_dir(cwd);
    }
    let stdin_piped = launch.stdin_piped;
    command.stdin(if stdin_piped {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let pipes = wire_output(&mut command, mode)?;
    let child = command.spawn()?;
    // `command` drops here, closing our copies of the pipes' write ends, or EOF would never come.
    Ok((child, pipes))
}

/// The pipes of the child's standard streams, by capture mode.
struct Pipes {
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
}

fn wire_output(command: &mut Command, mode: CaptureMode) -> std::io::Result<Pipes> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from);
    let mut pipes = Pipes {
        out: None,
        err: None,
    };
    let capture_out = matches!(
        mode,
        CaptureMode::Stdout | CaptureMode::Separated | CaptureMode::Merged
    );
    let capture_err = matches!(mode, CaptureMode::Stderr | CaptureMode::Separated);
    if capture_out {
        let (read, write) = pipe()?;
        if mode == CaptureMode::Merged {
            let dup = write.try_clone()?;
            command.stderr(Stdio::from(dup));
        }
        command.stdout(Stdio::from(write));
        pipes.out = Some(read);
    } else {
        command.stdout(Stdio::null());
    }
    if capture_err {
        let (read, write) = pipe()?;
        command.stderr(Stdio::from(write));
        pipes.err = Some(read);
    } else if mode != CaptureMode::Merged {
        command.stderr(Stdio::null());
    }
    Ok(pipes)
}

/// Spawns, retrying through /bin/sh for a file that is not in an executable format (ENOEXEC),
/// with qemu-ga's error text.
fn spawn_checked(
    args: &ExecArgs,
    mode: CaptureMode,
    launch: Launch<'_>,
) -> Result<(tokio::process::Child, Pipes), CommandError> {
    match spawn(args, mode, launch) {
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => spawn(
            args,
            mode,
            Launch {
                via_shell: true,
                ..launch
            },
        ),
        other => other,
    }
    .map_err(|e| {
        CommandError::failed(format!(
            "Guest agent command failed, error was 'Failed to execute child process \u{201c}{}\u{201d} ({})'",
            args.path,
            errno_text(&e)
        ))
    })
}

pub async fn exec(agent: Arc<Agent>, args: ExecArgs) -> Result<Value, CommandError> {
    let program = agent
        .policy
        .check_program(&args.path, args.env.as_deref())?;
    let input = args.input_data.as_deref().map(decode_base64).transpose()?;
    let mode = args
        .capture_output
        .as_ref()
        .map_or(CaptureMode::None, |c| c.mode());
    if agent.execs.len()? >= MAX_UNCOLLECTED {
        return Err(CommandError::failed(format!(
            "too many processes awaiting guest-exec-status (limit {MAX_UNCOLLECTED})"
        )));
    }
    let launch = Launch {
        program: program.as_deref(),
        stdin_piped: input.is_some(),
        ..Launch::default()
    };
    let (mut child, pipes) = spawn_checked(&args, mode, launch)?;
    let pid = i64::from(child.id().unwrap_or(0));
    let entry = Arc::new(Entry {
        mode,
        limit: agent.policy.exec.max_output,
        out: Mutex::default(),
        err: Mutex::default(),
        exit: Mutex::new(None),
    });
    agent.execs.insert(pid, entry.clone())?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        tokio::spawn(async move {
            // A child that does not read its input gets EPIPE here; that is its business.
            let _ = stdin.write_all(&input).await;
        });
    }
    let deadline = agent.policy.exec.max_timeout;
    tokio::spawn(supervise(child, pipes, entry, deadline));
    Ok(json!({ "pid": pid }))
}

/// Waits for the child; past `deadline` (the policy's `exec-max-timeout`) it is killed.
/// Returns the status and whether the deadline killed it.
async fn wait_with_deadline(
    child: &mut tokio::process::Child,
    deadline: Option<Duration>,
) -> (std::io::Result<ExitStatus>, bool) {
    let Some(deadline) = deadline else {
        return (child.wait().await, false);
    };
    match tokio::time::timeout(deadline, child.wait()).await {
        Ok(status) => (status, false),
        Err(_) => {
            tracing::warn!(
                "killing pid {:?} after {} s (policy: exec-max-timeout)",
                child.id(),
                deadline.as_secs()
            );
            let _ = child.start_kill();
            (child.wait().await, true)
        }
    }
}

/// Captures output and waits for the child; records the exit status last.
async fn supervise(
    mut child: tokio::process::Child,
    pipes: Pipes,
    entry: Arc<Entry>,
    deadline: Option<Duration>,
) {
    let out = pipes
        .out
        .map(|fd| tokio::spawn(capture(fd, entry.clone(), Stream::Out)));
    let err = pipes
        .err
        .map(|fd| tokio::spawn(capture(fd, entry.clone(), Stream::Err)));
    let (status, _) = wait_with_deadline(&mut child, deadline).await;
    for task in [out, err].into_iter().flatten() {
        let abort = task.abort_handle();
        if tokio::time::timeout(PIPE_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!("waiting for child: {e}");
            ExitStatus::from_raw(0xff00)
        }
    };
    if let Ok(mut exit) = entry.exit.lock() {
        *exit = Some(status);
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

async fn capture(fd: OwnedFd, entry: Arc<Entry>, stream: Stream) {
    let Ok(reader) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let slot = match stream {
        Stream::Out => &entry.out,
        Stream::Err => &entry.err,
    };
    read_capped(reader, slot, entry.limit).await;
}

async fn read_capped<R: AsyncRead + Unpin>(mut reader: R, slot: &Mutex<Captured>, limit: usize) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(mut captured) = slot.lock() else {
            return;
        };
        let room = limit.saturating_sub(captured.data.len());
        if n > room {
            captured.truncated = true;
        }
        captured.data.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// A command run to completion ([`run`]).
#[derive(Debug)]
pub struct Completed {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr: Vec<u8>,
    pub stderr_truncated: bool,
    pub elapsed: Duration,
}

/// Runs a program without a shell to completion, capturing both streams (each capped at the
/// policy's `exec-max-output`), in `cwd`, for at most `timeout` (refused when over the policy's
/// `exec-max-timeout`). Past the timeout the child is killed and the result is a Timeout error.
/// Used by the JSON-RPC `exec_command`; the program passes the same checks as guest-exec.
pub async fn run(
    agent: &Agent,
    args: &ExecArgs,
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<Completed, CommandError> {
    agent.policy.check_timeout(timeout)?;
    let program = agent
        .policy
        .check_program(&args.path, args.env.as_deref())?;
    let input = args.input_data.as_deref().map(decode_base64).transpose()?;
    let launch = Launch {
        program: program.as_deref(),
        cwd,
        stdin_piped: input.is_some(),
        via_shell: false,
    };
    let started = std::time::Instant::now();
    let (mut child, pipes) = spawn_checked(args, CaptureMode::Separated, launch)?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let limit = agent.policy.exec.max_output;
    let collect = |fd: Option<OwnedFd>| {
        tokio::spawn(async move {
            let slot = Mutex::new(Captured::default());
            if let Some(reader) =
                fd.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
            {
                read_capped(reader, &slot, limit).await;
            }
            slot.into_inner().unwrap_or_default()
        })
    };
    let (out, err) = (collect(pipes.out), collect(pipes.err));
    let (status, killed) = wait_with_deadline(&mut child, Some(timeout)).await;
    let status = status
        .map_err(|e| CommandError::failed(format!("waiting for child: {}", errno_text(&e))))?;
    let mut streams = Vec::new();
    for task in [out, err] {
        let abort = task.abort_handle();
        match tokio::time::timeout(PIPE_GRACE, task).await {
            Ok(Ok(captured)) => streams.push(captured),
            _ => {
                abort.abort();
                streams.push(Captured::default());
            }
        }
    }
    if killed {
        return Err(CommandError::timeout(format!(
            "'{}' did not finish within {} s and was killed",
            args.path,
            timeout.as_secs()
        )));
    }
    let err = streams.pop().unwrap_or_default();
    let out = streams.pop().unwrap_or_default();
    Ok(Completed {
        status,
        stdout: out.data,
        stdout_truncated: out.truncated,
        stderr: err.data,
        stderr_truncated: err.truncated,
        elapsed: started.elapsed(),
    })
}

pub async fn status(agent: Arc<Agent>, args: ExecStatusArgs) -> Result<Value, CommandError> {
    let entry = agent.execs.get(args.pid)?;
    let Some(exit) = *lock(&entry.exit)? else {
        return Ok(json!({ "exited": false }));
    };
    agent.execs.remove(args.pid)?;
    let mut status = ExecStatus {
        exited: true,
        exitcode: exit.code(),
        signal: exit.signal(),
        ..ExecStatus::default()
    };
    let capture_out = matches!(
        entry.mode,
        CaptureMode::Stdout | CaptureMode::Separated | CaptureMode::Merged
    );
    let capture_err = matches!(entry.mode, CaptureMode::Stderr | CaptureMode::Separated);
    if capture_out {
        (status.out_data, status.out_truncated) = encode(&*lock(&entry.out)?);
    }
    if capture_err {
        (status.err_data, status.err_truncated) = encode(&*lock(&entry.err)?);
    }
    serde_json::to_value(status).map_err(|e| CommandError::internal(e.to_string()))
}

/// qemu-ga sends data and its truncation flag only when something was captured.
fn encode(captured: &Captured) -> (Option<String>, Option<bool>) {
    if captured.data.is_empty() {
        (None, None)
    } else {
        (
            Some(BASE64.encode(&captured.data)),
            Some(captured.truncated),
        )
    }
}
