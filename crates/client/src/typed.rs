//! Typed calls built on [`Client::call`], using the protocol crate's command structures so that
//! client and agent agree on every member name by construction.

use crate::client::Client;
use crate::error::ClientError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use porthole_proto::commands::{
    self as cmd, AgentInfo, ExecArgs, ExecStarted, ExecStatus, ExecStatusArgs, FileOpenArgs,
    FileRead, FileReadArgs, FileSeek, FileSeekArgs, FileWrite, FileWriteArgs, HandleArgs, HostName,
    OsInfo, SetTimeArgs, ShutdownArgs, Timezone, User, Whence,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};

/// Room for a write request's arguments other than its data (the handle, the count).
const WRITE_ARGUMENTS_ROOM: usize = 64;

/// Bytes read by `guest-file-read`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChunk {
    pub data: Vec<u8>,
    pub eof: bool,
}

/// A finished guest process, its captured output decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub pid: i64,
    pub exitcode: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The agent cut the stream at its cap (16 MiB in qemu-ga).
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl ExecOutput {
    /// The status a shell would report: the exit code, or 128 + the signal number.
    pub fn shell_status(&self) -> i32 {
        match (self.exitcode, self.signal) {
            (_, Some(signal)) => 128 + signal,
            (Some(code), None) => code,
            (None, None) => 0,
        }
    }
}

/// Serializes typed arguments, dropping `null` members: the structs use `None` for "absent",
/// and agents reject an explicit `null` for an optional integer or string.
fn arguments<A: Serialize>(command: &str, args: &A) -> Result<Value, ClientError> {
    let mut value = serde_json::to_value(args).map_err(|e| ClientError::InvalidArguments {
        command: command.into(),
        detail: e.to_string(),
    })?;
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    Ok(value)
}

fn decode_base64(command: &str, member: &str, text: &str) -> Result<Vec<u8>, ClientError> {
    BASE64.decode(text).map_err(|e| ClientError::Protocol {
        command: command.into(),
        detail: format!("'{member}' is not valid base64: {e}"),
    })
}

impl Client {
    /// Calls `command` with typed arguments (`None` for none) and decodes the typed return.
    pub fn call_typed<A: Serialize, R: DeserializeOwned>(
        &mut self,
        command: &str,
        args: Option<&A>,
    ) -> Result<R, ClientError> {
        let arguments = match args {
            Some(args) => arguments(command, args)?,
            None => Value::Null,
        };
        let timeout = self.options().call_timeout;
        let value = self.call(command, arguments, timeout)?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol {
            command: command.into(),
            detail: format!("unexpected return value: {e}"),
        })
    }

    fn call_plain<R: DeserializeOwned>(&mut self, command: &str) -> Result<R, ClientError> {
        self.call_typed::<(), R>(command, None)
    }

    /// `guest-ping`.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.call_plain::<Value>(cmd::GUEST_PING.name).map(drop)
    }

    /// `guest-info`: the agent's version and its commands.
    pub fn info(&mut self) -> Result<AgentInfo, ClientError> {
        self.call_plain(cmd::GUEST_INFO.name)
    }

    /// `guest-get-osinfo`.
    pub fn os_info(&mut self) -> Result<OsInfo, ClientError> {
        self.call_plain(cmd::GUEST_GET_OSINFO.name)
    }

    /// `guest-get-host-name`.
    pub fn host_name(&mut self) -> Result<String, ClientError> {
        self.call_plain::<HostName>(cmd::GUEST_GET_HOST_NAME.name)
            .map(|h| h.host_name)
    }

    /// `guest-get-timezone`.
    pub fn timezone(&mut self) -> Result<Timezone, ClientError> {
        self.call_plain(cmd::GUEST_GET_TIMEZONE.name)
    }

    /// `guest-get-time`: nanoseconds since the epoch.
    pub fn time(&mut self) -> Result<i64, ClientError> {
        self.call_plain(cmd::GUEST_GET_TIME.name)
    }

    /// `guest-set-time`: to `time` (ns since the epoch), or from the guest's RTC when `None`.
    pub fn set_time(&mut self, time: Option<i64>) -> Result<(), ClientError> {
        self.call_typed::<_, Value>(cmd::GUEST_SET_TIME.name, Some(&SetTimeArgs { time }))
            .map(drop)
    }

    /// `guest-get-users`.
    pub fn users(&mut self) -> Result<Vec<User>, ClientError> {
        self.call_plain(cmd::GUEST_GET_USERS.name)
    }

    /// `guest-file-open`; `mode` is an fopen mode, `"r"` when `None`. Returns the handle.
    pub fn file_open(&mut self, path: &str, mode: Option<&str>) -> Result<i64, ClientError> {
        let args = FileOpenArgs {
            path: path.into(),
            mode: mode.map(str::to_owned),
        };
        self.call_typed(cmd::GUEST_FILE_OPEN.name, Some(&args))
    }

    /// `guest-file-read` of up to `count` bytes (the agent's default, 4096, when `None`).
    pub fn file_read(&mut self, handle: i64, count: Option<u64>) -> Result<ReadChunk, ClientError> {
        let command = cmd::GUEST_FILE_READ.name;
        let count = count
            .map(|c| {
                i64::try_from(c).map_err(|_| ClientError::InvalidArguments {
                    command: command.into(),
                    detail: format!("count {c} is out of range"),
                })
            })
            .transpose()?;
        let read: FileRead = self.call_typed(command, Some(&FileReadArgs { handle, count }))?;
        let data = decode_base64(command, "buf-b64", &read.buf_b64)?;
        if data.len() as u64 != read.count {
            return Err(ClientError::Protocol {
                command: command.into(),
                detail: format!(
                    "'count' says {} bytes but 'buf-b64' holds {}",
                    read.count,
                    data.len()
                ),
            });
        }
        Ok(ReadChunk {
            data,
            eof: read.eof,
        })
    }

    /// `guest-file-write` of all of `data`.
    pub fn file_write(&mut self, handle: i64, data: &[u8]) -> Result<FileWrite, ClientError> {
        let args = FileWriteArgs {
            handle,
            buf_b64: BASE64.encode(data),
            count: None,
        };
        self.call_typed(cmd::GUEST_FILE_WRITE.name, Some(&args))
    }

    /// `guest-file-seek`.
    pub fn file_seek(
        &mut self,
        handle: i64,
        offset: i64,
        whence: Whence,
    ) -> Result<FileSeek, ClientError> {
        let args = FileSeekArgs {
            handle,
            offset,
            whence,
        };
        self.call_typed(cmd::GUEST_FILE_SEEK.name, Some(&args))
    }

    /// `guest-file-flush`.
    pub fn file_flush(&mut self, handle: i64) -> Result<(), ClientError> {
        self.call_typed::<_, Value>(cmd::GUEST_FILE_FLUSH.name, Some(&HandleArgs { handle }))
            .map(drop)
    }

    /// `guest-file-close`.
    pub fn file_close(&mut self, handle: i64) -> Result<(), ClientError> {
        self.call_typed::<_, Value>(cmd::GUEST_FILE_CLOSE.name, Some(&HandleArgs { handle }))
            .map(drop)
    }

    /// Copies the guest file `path` to `out` in reads of `chunk` bytes; returns the byte count.
    /// The handle is closed whatever happens (agents keep handles until closed).
    pub fn read_file_to(
        &mut self,
        path: &str,
        chunk: u64,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let chunk = chunk.min(u64::try_from(self.reply_data_limit()).unwrap_or(u64::MAX));
        let handle = self.file_open(path, Some("r"))?;
        let copied = self.copy_handle(handle, chunk, out);
        let closed = self.file_close(handle);
        let copied = copied?;
        closed?;
        Ok(copied)
    }

    fn copy_handle(
        &mut self,
        handle: i64,
        chunk: u64,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let mut total = 0u64;
        loop {
            let read = self.file_read(handle, Some(chunk))?;
            out.write_all(&read.data)
                .map_err(|source| ClientError::Output {
                    command: cmd::GUEST_FILE_READ.name.into(),
                    source,
                })?;
            total += read.data.len() as u64;
            if read.eof || read.data.is_empty() {
                return Ok(total);
            }
        }
    }

    /// Writes `data` to the guest file `path` (created or truncated) in writes of `chunk` bytes.
    pub fn write_file(&mut self, path: &str, data: &[u8], chunk: usize) -> Result<(), ClientError> {
        let chunk = chunk.min(self.request_data_limit(WRITE_ARGUMENTS_ROOM));
        let handle = self.file_open(path, Some("w"))?;
        let written = data
            .chunks(chunk.max(1))
            .try_for_each(|piece| self.write_fully(handle, piece));
        let closed = self.file_close(handle);
        written?;
        closed
    }

    fn write_fully(&mut self, handle: i64, piece: &[u8]) -> Result<(), ClientError> {
        let written = self.file_write(handle, piece)?;
        if written.count != piece.len() as u64 {
            return Err(ClientError::Protocol {
                command: cmd::GUEST_FILE_WRITE.name.into(),
                detail: format!("wrote {} of {} bytes", written.count, piece.len()),
            });
        }
        Ok(())
    }

    /// `guest-exec`: starts a process; returns its pid.
    pub fn exec(&mut self, args: &ExecArgs) -> Result<i64, ClientError> {
        self.call_typed::<_, ExecStarted>(cmd::GUEST_EXEC.name, Some(args))
            .map(|started| started.pid)
    }

    /// `guest-exec-status`. The first status with `exited` set is the last: the agent forgets
    /// the process once it has reported its exit.
    pub fn exec_status(&mut self, pid: i64) -> Result<ExecStatus, ClientError> {
        self.call_typed(cmd::GUEST_EXEC_STATUS.name, Some(&ExecStatusArgs { pid }))
    }

    /// Starts a process and polls every `poll` until it exits, for at most `timeout`
    /// (`None`: no limit). The agent sends output only after exit, so this is the only way to
    /// get it.
    pub fn exec_wait(
        &mut self,
        args: &ExecArgs,
        poll: Duration,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ClientError> {
        let started = Instant::now();
        let deadline = timeout.and_then(|t| started.checked_add(t));
        let pid = self.exec(args)?;
        loop {
            let status = self.exec_status(pid)?;
            if status.exited {
                return exec_output(pid, status);
            }
            let mut pause = poll;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ClientError::ExecTimeout {
                        pid,
                        timeout: timeout.unwrap_or_default(),
                    });
                }
                pause = pause.min(left);
            }
            std::thread::sleep(pause);
        }
    }

    /// `guest-shutdown` (`mode`: powerdown, halt or reboot; powerdown when `None`). It has no
    /// success response: an error within `wait` fails, silence is success.
    pub fn shutdown(&mut self, mode: Option<&str>, wait: Duration) -> Result<(), ClientError> {
        let command = cmd::GUEST_SHUTDOWN.name;
        let args = arguments(
            command,
            &ShutdownArgs {
                mode: mode.map(str::to_owned),
            },
        )?;
        self.call_no_reply(command, args, wait)
    }
}

/// porthole's own extensions (`guest-porthole-*`); the agent's docs/agent.md describes them.
impl Client {
    /// `guest-porthole-exec`: starts a program (as a chosen user when `args.user` is set);
    /// returns its handle.
    pub fn px_exec(&mut self, args: &cmd::PxExecArgs) -> Result<i64, ClientError> {
        self.call_typed::<_, cmd::PxExecStarted>(cmd::GUEST_PORTHOLE_EXEC.name, Some(args))
            .map(|started| started.handle)
    }

    /// `guest-porthole-exec-output`: the output since the previous call; the chunk with
    /// `exited` set is the last. Through a transport with small replies (libvirt) `None` asks
    /// for what fits one reply rather than the agent's default.
    pub fn px_exec_output(
        &mut self,
        handle: i64,
        max_bytes: Option<i64>,
    ) -> Result<cmd::PxExecOutput, ClientError> {
        let command = cmd::GUEST_PORTHOLE_EXEC_OUTPUT.name;
        let fits = i64::try_from(self.reply_data_limit()).unwrap_or(i64::MAX);
        if max_bytes.is_none() && self.limits_replies() {
            let args = cmd::PxExecOutputArgs {
                handle,
                max_bytes: Some(fits),
            };
            match self.call_typed(command, Some(&args)) {
                // The run's own output cap is below ours, so the agent's default fits.
                Err(ClientError::Agent { desc, .. }) if desc.contains("max-bytes") => {}
                other => return other,
            }
        }
        let args = cmd::PxExecOutputArgs { handle, max_bytes };
        self.call_typed(command, Some(&args))
    }

    /// `guest-porthole-exec-kill` (SIGTERM when `signal` is `None`), to the process group.
    pub fn px_exec_kill(&mut self, handle: i64, signal: Option<i64>) -> Result<(), ClientError> {
        let args = cmd::PxExecKillArgs { handle, signal };
        self.call_typed::<_, Value>(cmd::GUEST_PORTHOLE_EXEC_KILL.name, Some(&args))
            .map(drop)
    }

    /// `guest-porthole-exec-stdin`: writes `data` to a streamed process's stdin, closing it
    /// after when `eof`.
    pub fn px_exec_stdin(
        &mut self,
        handle: i64,
        data: &[u8],
        eof: bool,
    ) -> Result<(), ClientError> {
        let args = cmd::PxExecStdinArgs {
            handle,
            data_b64: BASE64.encode(data),
            eof: Some(eof),
        };
        self.call_typed::<_, Value>(cmd::GUEST_PORTHOLE_EXEC_STDIN.name, Some(&args))
            .map(drop)
    }

    /// `guest-porthole-file-read`: one chunk and its checksum (the data stays base64 in
    /// `data_b64`).
    pub fn px_file_read(
        &mut self,
        path: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<cmd::PxFileChunk, ClientError> {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let args = cmd::PxFileReadArgs {
            path: path.into(),
            offset: Some(to_i64(offset)),
            length: length.map(to_i64),
        };
        self.call_typed(cmd::GUEST_PORTHOLE_FILE_READ.name, Some(&args))
    }

    /// `guest-porthole-file-sha256`.
    pub fn px_file_sha256(&mut self, path: &str) -> Result<cmd::PxFileSha256, ClientError> {
        let args = cmd::PxPathArgs { path: path.into() };
        self.call_typed(cmd::GUEST_PORTHOLE_FILE_SHA256.name, Some(&args))
    }

    /// `guest-porthole-file-write`: one chunk at `offset`; `finish` verifies and installs.
    pub fn px_file_write(
        &mut self,
        path: &str,
        offset: u64,
        data: &[u8],
        finish: Option<cmd::PxFinal>,
    ) -> Result<cmd::PxFileWritten, ClientError> {
        let args = cmd::PxFileWriteArgs {
            path: path.into(),
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
            data_b64: BASE64.encode(data),
            finish,
        };
        self.call_typed(cmd::GUEST_PORTHOLE_FILE_WRITE.name, Some(&args))
    }

    /// `guest-porthole-file-partial`: bytes of an interrupted transfer already in the guest.
    pub fn px_file_partial(&mut self, path: &str) -> Result<u64, ClientError> {
        let args = cmd::PxPathArgs { path: path.into() };
        self.call_typed::<_, cmd::PxFilePartial>(cmd::GUEST_PORTHOLE_FILE_PARTIAL.name, Some(&args))
            .map(|p| p.received)
    }

    /// `guest-porthole-telemetry`, as the agent sends it.
    pub fn px_telemetry(&mut self) -> Result<Value, ClientError> {
        self.call_plain(cmd::GUEST_PORTHOLE_TELEMETRY.name)
    }

    /// `guest-porthole-time-sync`; returns the method that ran.
    pub fn px_time_sync(&mut self, time_ns: Option<i64>) -> Result<String, ClientError> {
        let args = cmd::PxTimeSyncArgs { time_ns };
        let reply: Value = self.call_typed(cmd::GUEST_PORTHOLE_TIME_SYNC.name, Some(&args))?;
        Ok(reply["method"].as_str().unwrap_or_default().to_string())
    }
}

fn exec_output(pid: i64, status: ExecStatus) -> Result<ExecOutput, ClientError> {
    let command = cmd::GUEST_EXEC_STATUS.name;
    let decode = |member: &str, data: &Option<String>| match data {
        Some(text) => decode_base64(command, member, text),
        None => Ok(Vec::new()),
    };
    Ok(ExecOutput {
        pid,
        exitcode: status.exitcode,
        signal: status.signal,
        stdout: decode("out-data", &status.out_data)?,
        stderr: decode("err-data", &status.err_data)?,
        stdout_truncated: status.out_truncated.unwrap_or(false),
        stderr_truncated: status.err_truncated.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_optionals_are_not_sent_as_null() -> Result<(), ClientError> {
        let args = arguments(
            "guest-file-open",
            &FileOpenArgs {
                path: "/x".into(),
                mode: None,
            },
        )?;
        assert_eq!(args, json!({"path": "/x"}));
        Ok(())
    }

    #[test]
    fn shell_status_follows_signal_then_code() {
        let mut out = ExecOutput {
            exitcode: Some(3),
            ..ExecOutput::default()
        };
        assert_eq!(out.shell_status(), 3);
        out.signal = Some(9);
        assert_eq!(out.shell_status(), 137);
    }
}
