//! `agent exec`: streamed through guest-porthole-exec when the agent has it, else guest-exec
//! (start, then poll guest-exec-status until the program exits).

use super::{print_json, Session};
use crate::cli::ExecArgs;
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use porthole_client::commands::{self as cmd, CaptureOutput};
use porthole_client::ExecOutput;
use serde_json::{json, Value};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// How often `exec` asks for output or whether the program has exited.
const EXEC_POLL: Duration = Duration::from_millis(50);
/// Bytes of standard input per guest-porthole-exec-stdin call.
const STDIN_CHUNK: usize = 64 << 10;
/// Exit status when the program was killed at its `--time-limit` (as timeout(1) does).
const TIMED_OUT_STATUS: u8 = 124;

impl Session {
    pub(super) fn exec(&mut self, exec: ExecArgs) -> Result<ExitCode> {
        if self.supports(cmd::GUEST_PORTHOLE_EXEC.name)? {
            return self.exec_streamed(&exec);
        }
        if let Some(option) = exec.porthole_only() {
            bail!(
                "{option} needs guest-porthole-exec, which this agent lacks (it is qemu-ga or an \
                 older porthole-agent); leave {option} out to use plain guest-exec"
            );
        }
        self.exec_plain(&exec)
    }

    /// guest-exec: the output arrives all at once when the program has exited.
    fn exec_plain(&mut self, exec: &ExecArgs) -> Result<ExitCode> {
        let request = exec_request(exec)?;
        let output = self.client.exec_wait(&request, EXEC_POLL, exec.max_wait)?;
        if self.json {
            print_json(&exec_json(&output, false))?;
        } else {
            write_output(&output)?;
        }
        Ok(exit_code(output.shell_status()))
    }

    /// guest-porthole-exec with `stream`: output is copied to ours as it arrives and our
    /// standard input is passed through.
    fn exec_streamed(&mut self, exec: &ExecArgs) -> Result<ExitCode> {
        let Some((program, args)) = exec.command.split_first() else {
            bail!("no program given");
        };
        let request = cmd::PxExecArgs {
            path: program.clone(),
            arg: (!args.is_empty()).then(|| args.to_vec()),
            env: (!exec.env.is_empty()).then(|| exec.env.clone()),
            cwd: exec.cwd.clone(),
            user: exec.user.clone(),
            group: exec.group.clone(),
            timeout_ms: exec
                .time_limit
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)),
            stream: Some(true),
            ..cmd::PxExecArgs::default()
        };
        let input = stdin_source(exec)?;
        let handle = self.client.px_exec(&request)?;
        let mut run = Streamed {
            handle,
            input,
            stdin_open: true,
            // --json and --no-capture keep the output; otherwise it goes straight to ours.
            keep: self.json || exec.no_capture,
            output: ExecOutput {
                pid: handle,
                ..ExecOutput::default()
            },
            timed_out: false,
        };
        let deadline = exec.max_wait.map(|d| Instant::now() + d);
        if let Err(error) = self.pump(&mut run, deadline) {
            // Our side failed (a closed stdout, a dead connection): do not leave the program
            // running unattended in the guest.
            let _ = self.client.px_exec_kill(handle, Some(9));
            return Err(error);
        }
        self.finish_streamed(exec, run)
    }

    /// Polls for output until the program exits.
    fn pump(&mut self, run: &mut Streamed, deadline: Option<Instant>) -> Result<()> {
        loop {
            run.forward_stdin(self)?;
            let chunk = self.client.px_exec_output(run.handle, None)?;
            let got_data = run.take(&chunk)?;
            if chunk.exited {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                bail!("gave up waiting for the program after --max-wait; it was killed");
            }
            if !got_data {
                std::thread::sleep(EXEC_POLL);
            }
        }
    }

    fn finish_streamed(&mut self, exec: &ExecArgs, run: Streamed) -> Result<ExitCode> {
        let output = run.output;
        if self.json {
            print_json(&exec_json(&output, run.timed_out))?;
        } else {
            warn_truncated(&output);
        }
        if run.timed_out {
            let limit = exec.time_limit.map(|d| d.as_secs_f64()).unwrap_or_default();
            eprintln!("porthole: the program was killed at its time limit ({limit} s)");
            return Ok(ExitCode::from(TIMED_OUT_STATUS));
        }
        Ok(exit_code(output.shell_status()))
    }

    /// Whether the agent lists `command` as enabled (one guest-info call).
    pub(super) fn supports(&mut self, command: &str) -> Result<bool> {
        let info = self.client.info()?;
        Ok(info
            .supported_commands
            .iter()
            .any(|c| c.name == command && c.enabled))
    }
}

/// Where the program's standard input comes from.
enum Input {
    /// Nothing: end-of-file at once.
    None,
    /// A file's bytes, given whole.
    Data(Vec<u8>),
    /// Our standard input, read by a thread; an empty chunk is end-of-file.
    Pipe(Receiver<Vec<u8>>),
}

fn stdin_source(exec: &ExecArgs) -> Result<Input> {
    match &exec.stdin {
        Some(path) if path != Path::new("-") => Ok(Input::Data(read_input(path)?)),
        Some(_) => Ok(Input::Pipe(spawn_stdin_reader())),
        None if std::io::stdin().is_terminal() => Ok(Input::None),
        None => Ok(Input::Pipe(spawn_stdin_reader())),
    }
}

/// Reads our standard input in chunks on a thread, so polling for output never blocks on it.
fn spawn_stdin_reader() -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::sync_channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0; STDIN_CHUNK];
            let n = stdin.read(&mut buf).unwrap_or(0);
            buf.truncate(n);
            if sender.send(buf).is_err() || n == 0 {
                return;
            }
        }
    });
    receiver
}

/// A streamed program's state on our side.
struct Streamed {
    handle: i64,
    input: Input,
    stdin_open: bool,
    keep: bool,
    output: ExecOutput,
    timed_out: bool,
}

impl Streamed {
    /// Sends what standard input has ready. A refused write (the program exited or closed its
    /// input) ends the passing-through; the output still tells what happened.
    fn forward_stdin(&mut self, session: &mut Session) -> Result<()> {
        if !self.stdin_open {
            return Ok(());
        }
        let mut send = |data: &[u8], eof: bool| -> bool {
            session.client.px_exec_stdin(self.handle, data, eof).is_ok() && !eof
        };
        self.stdin_open = match &mut self.input {
            Input::None => send(&[], true),
            Input::Data(data) => {
                let ok = data.chunks(STDIN_CHUNK).all(|chunk| send(chunk, false));
                ok && send(&[], true)
            }
            Input::Pipe(receiver) => loop {
                match receiver.try_recv() {
                    Ok(chunk) => {
                        if !send(&chunk, chunk.is_empty()) {
                            break false;
                        }
                    }
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break send(&[], true),
                }
            },
        };
        Ok(())
    }

    /// Copies one chunk out (or keeps it); says whether it held any bytes.
    fn take(&mut self, chunk: &cmd::PxExecOutput) -> Result<bool> {
        let command = cmd::GUEST_PORTHOLE_EXEC_OUTPUT.name;
        let out = BASE64
            .decode(&chunk.stdout_b64)
            .with_context(|| format!("{command}: stdout-b64 is not base64"))?;
        let err = BASE64
            .decode(&chunk.stderr_b64)
            .with_context(|| format!("{command}: stderr-b64 is not base64"))?;
        if self.keep {
            self.output.stdout.extend_from_slice(&out);
            self.output.stderr.extend_from_slice(&err);
        } else {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&out)
                .and_then(|()| stdout.flush())
                .context("cannot write to standard output")?;
            let _ = std::io::stderr().lock().write_all(&err);
        }
        if chunk.exited {
            self.output.exitcode = chunk.exitcode;
            self.output.signal = chunk.signal;
            self.output.stdout_truncated = chunk.stdout_truncated.unwrap_or(false);
            self.output.stderr_truncated = chunk.stderr_truncated.unwrap_or(false);
            self.timed_out = chunk.timed_out.unwrap_or(false);
        }
        Ok(!out.is_empty() || !err.is_empty())
    }
}

fn exit_code(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(u8::MAX))
}

/// Builds guest-exec's arguments from the command line.
fn exec_request(exec: &ExecArgs) -> Result<cmd::ExecArgs> {
    let Some((program, args)) = exec.command.split_first() else {
        bail!("no program given");
    };
    let input = match &exec.stdin {
        None => None,
        Some(path) => Some(BASE64.encode(read_input(path)?)),
    };
    Ok(cmd::ExecArgs {
        path: program.clone(),
        arg: (!args.is_empty()).then(|| args.to_vec()),
        env: (!exec.env.is_empty()).then(|| exec.env.clone()),
        input_data: input,
        capture_output: (!exec.no_capture).then_some(CaptureOutput::Flag(true)),
    })
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_end(&mut data)
            .context("cannot read standard input")?;
    } else {
        data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(data)
}

/// The finished process in guest-exec-status's own shape, plus its pid.
fn exec_json(output: &ExecOutput, timed_out: bool) -> Value {
    let mut value = json!({"pid": output.pid, "exited": true});
    let mut put = |key: &str, member: Value| {
        if let Value::Object(map) = &mut value {
            map.insert(key.into(), member);
        }
    };
    if let Some(code) = output.exitcode {
        put("exitcode", json!(code));
    }
    if let Some(signal) = output.signal {
        put("signal", json!(signal));
    }
    put("out-data", json!(BASE64.encode(&output.stdout)));
    put("err-data", json!(BASE64.encode(&output.stderr)));
    put("out-truncated", json!(output.stdout_truncated));
    put("err-truncated", json!(output.stderr_truncated));
    if timed_out {
        put("timed-out", json!(true));
    }
    value
}

/// Copies the program's captured streams to ours, and says when the agent cut them.
fn write_output(output: &ExecOutput) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&output.stdout)
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")?;
    let _ = std::io::stderr().lock().write_all(&output.stderr);
    warn_truncated(output);
    Ok(())
}

/// Says when the agent cut the program's streams.
fn warn_truncated(output: &ExecOutput) {
    let mut stderr = std::io::stderr().lock();
    for (truncated, stream) in [
        (output.stdout_truncated, "stdout"),
        (output.stderr_truncated, "stderr"),
    ] {
        if truncated {
            let _ = writeln!(
                stderr,
                "porthole: warning: the agent truncated the program's {stream}"
            );
        }
    }
}
