//! guest-file-*: open, read, write, seek, flush and close guest files through handles.
//!
//! Handles are global to the agent and outlive the connection that opened them (a host client
//! may reconnect mid-transfer), numbered from 1000 by a counter kept in the state directory.
//! All I/O runs on the blocking pool so one slow file never stalls other sessions.

use super::{blocking, errno_text};
use crate::agent::Agent;
use crate::dispatch::{Payload, Streamed};
use crate::state::StateDir;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use nix::fcntl::OFlag;
use porthole_proto::commands::{
    FileOpenArgs, FileReadArgs, FileSeekArgs, FileWriteArgs, HandleArgs, Whence,
};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// qemu-ga's cap on one guest-file-read.
pub const READ_LIMIT: i64 = 48 << 20;
/// guest-file-read's default count.
pub const DEFAULT_READ_COUNT: i64 = 4096;
/// Open handles at once; bounds what a careless or hostile host can pin in the guest.
pub const MAX_OPEN_HANDLES: usize = 1024;

struct OpenFile {
    file: File,
    /// The last read reached the end of the file (stdio's feof, which qemu-ga reports).
    eof: bool,
}

struct Handles {
    next: i64,
    open: HashMap<i64, Arc<Mutex<OpenFile>>>,
}

pub struct FileTable {
    state: StateDir,
    handles: Mutex<Handles>,
}

impl FileTable {
    pub fn new(state: StateDir) -> Self {
        let next = state.load_handle_counter();
        Self {
            state,
            handles: Mutex::new(Handles {
                next,
                open: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Handles>, CommandError> {
        self.handles
            .lock()
            .map_err(|_| CommandError::internal("file table lock poisoned"))
    }

    fn insert(&self, file: File) -> Result<i64, CommandError> {
        let mut handles = self.lock()?;
        if handles.open.len() >= MAX_OPEN_HANDLES {
            return Err(CommandError::failed(format!(
                "too many open file handles (limit {MAX_OPEN_HANDLES})"
            )));
        }
        let handle = handles.next;
        handles.next += 1;
        if let Err(e) = self.state.store_handle_counter(handles.next) {
            tracing::warn!("{e}");
        }
        let entry = Arc::new(Mutex::new(OpenFile { file, eof: false }));
        handles.open.insert(handle, entry);
        Ok(handle)
    }

    fn get(&self, handle: i64) -> Result<Arc<Mutex<OpenFile>>, CommandError> {
        self.lock()?
            .open
            .get(&handle)
            .cloned()
            .ok_or_else(|| handle_not_found(handle))
    }

    fn remove(&self, handle: i64) -> Result<Arc<Mutex<OpenFile>>, CommandError> {
        self.lock()?
            .open
            .remove(&handle)
            .ok_or_else(|| handle_not_found(handle))
    }
}

fn handle_not_found(handle: i64) -> CommandError {
    CommandError::not_found(format!("handle '{handle}' has not been found"))
}

fn lock_file(entry: &Mutex<OpenFile>) -> Result<MutexGuard<'_, OpenFile>, CommandError> {
    entry
        .lock()
        .map_err(|_| CommandError::internal("file handle lock poisoned"))
}

/// fopen(3) modes, as qemu-ga accepts them, mapped to open(2) flags.
pub fn open_flags(mode: &str) -> Option<OFlag> {
    let base: String = mode.chars().filter(|c| *c != 'b').collect();
    // 'b' may appear once, after the letter or after '+'.
    if mode.matches('b').count() > 1 || mode.starts_with('b') {
        return None;
    }
    let (rw, create) = (OFlag::O_RDWR, OFlag::O_CREAT);
    Some(match base.as_str() {
        "r" => OFlag::O_RDONLY,
        "r+" => rw,
        "w" => OFlag::O_WRONLY | create | OFlag::O_TRUNC,
        "w+" => rw | create | OFlag::O_TRUNC,
        "a" => OFlag::O_WRONLY | create | OFlag::O_APPEND,
        "a+" => rw | create | OFlag::O_APPEND,
        _ => return None,
    })
}

/// Opens through the policy: modes that write need a write prefix, reads a read prefix (the
/// default policy allows every path, as qemu-ga does).
pub async fn open(agent: Arc<Agent>, args: FileOpenArgs) -> Result<Value, CommandError> {
    blocking(move || {
        let mode = args.mode.as_deref().unwrap_or("r");
        let flags = open_flags(mode)
            .ok_or_else(|| CommandError::failed(format!("invalid file open mode '{mode}'")))?;
        let file = agent.policy.open(&args.path, flags, mode)?;
        Ok(json!(agent.files.insert(file)?))
    })
    .await
}

/// The data goes out as a streamed member: see [`Streamed`].
pub async fn read(agent: Arc<Agent>, args: FileReadArgs) -> Result<Payload, CommandError> {
    let count = args.count.unwrap_or(DEFAULT_READ_COUNT);
    if !(0..=READ_LIMIT).contains(&count) {
        return Err(CommandError::invalid_value(count, "count"));
    }
    agent.policy.check_read_size(count as u64)?;
    let entry = agent.files.get(args.handle)?;
    blocking(move || {
        let mut open = lock_file(&entry)?;
        let mut buf = vec![0u8; usize::try_from(count).unwrap_or(0)];
        let (filled, eof) = read_full(&mut open.file, &mut buf).map_err(|e| {
            CommandError::failed(format!("failed to read file: {}", errno_text(&e)))
        })?;
        open.eof = eof;
        buf.truncate(filled);
        Ok(Payload::Streamed(Streamed {
            value: json!({"count": filled, "eof": eof}),
            field: "buf-b64",
            bytes: buf,
        }))
    })
    .await
}

/// Reads until `buf` is full or the file ends, like fread(3). Returns (bytes read, hit end).
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

/// qemu's base64 decoder rejects anything outside the alphabet with this text.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, CommandError> {
    BASE64
        .decode(text.trim_end_matches(['\n', '\r']))
        .map_err(|_| CommandError::failed("Base64 data contains invalid characters"))
}

pub async fn write(agent: Arc<Agent>, args: FileWriteArgs) -> Result<Value, CommandError> {
    let entry = agent.files.get(args.handle)?;
    blocking(move || {
        let data = decode_base64(&args.buf_b64)?;
        let count = args.count.unwrap_or(data.len() as i64);
        let len = usize::try_from(count)
            .ok()
            .filter(|n| *n <= data.len())
            .ok_or_else(|| CommandError::invalid_value(count, "count"))?;
        let mut open = lock_file(&entry)?;
        check_write(&agent, &mut open.file, len)?;
        open.file.write_all(&data[..len]).map_err(|e| {
            CommandError::failed(format!("failed to write to file: {}", errno_text(&e)))
        })?;
        open.eof = false;
        Ok(json!({"count": len, "eof": false}))
    })
    .await
}

/// The policy's size caps for a write of `len` bytes at the file's current offset (its end for
/// an append-mode file).
fn check_write(agent: &Agent, file: &mut File, len: usize) -> Result<(), CommandError> {
    let policy = &agent.policy;
    if policy.files.max_write.is_none() && policy.files.max_size.is_none() {
        return Ok(());
    }
    let append = nix::fcntl::fcntl(&*file, nix::fcntl::FcntlArg::F_GETFL)
        .map(|bits| OFlag::from_bits_truncate(bits).contains(OFlag::O_APPEND))
        .unwrap_or(true);
    let at = if append {
        file.metadata().map(|m| m.len())
    } else {
        file.stream_position()
    }
    .map_err(|e| CommandError::failed(format!("failed to write to file: {}", errno_text(&e))))?;
    policy.check_write_size(len as u64, at.saturating_add(len as u64))
}

fn seek_from(whence: &Whence, offset: i64) -> Result<SeekFrom, CommandError> {
    let code = match whence {
        Whence::Code(code) => *code,
        Whence::Name(name) => match name.as_str() {
            "set" => 0,
            "cur" => 1,
            "end" => 2,
            // Schema validation admits only the three names.
            other => {
                return Err(CommandError::invalid_params(format!(
                    "invalid whence '{other}'"
                )))
            }
        },
    };
    match code {
        0 => u64::try_from(offset)
            .map(SeekFrom::Start)
            .map_err(|_| CommandError::failed("failed to seek file: Invalid argument")),
        1 => Ok(SeekFrom::Current(offset)),
        2 => Ok(SeekFrom::End(offset)),
        other => Err(CommandError::failed(format!("invalid whence code {other}"))),
    }
}

pub async fn seek(agent: Arc<Agent>, args: FileSeekArgs) -> Result<Value, CommandError> {
    let entry = agent.files.get(args.handle)?;
    let target = seek_from(&args.whence, args.offset)?;
    blocking(move || {
        let mut open = lock_file(&entry)?;
        let position = open.file.seek(target).map_err(|e| {
            CommandError::failed(format!("failed to seek file: {}", errno_text(&e)))
        })?;
        open.eof = false;
        Ok(json!({"position": position, "eof": false}))
    })
    .await
}

pub async fn flush(agent: Arc<Agent>, args: HandleArgs) -> Result<Value, CommandError> {
    let entry = agent.files.get(args.handle)?;
    blocking(move || {
        // Writes go straight to the kernel (no stdio buffer), so flushing is a no-op beyond
        // checking the handle; fsync is not what qemu-ga's fflush does either.
        lock_file(&entry)?.file.flush().map_err(|e| {
            CommandError::failed(format!("failed to flush file: {}", errno_text(&e)))
        })?;
        Ok(json!({}))
    })
    .await
}

pub async fn close(agent: Arc<Agent>, args: HandleArgs) -> Result<Value, CommandError> {
    // Dropping the last reference closes the file; an in-flight read on another session keeps
    // its reference until it finishes.
    agent.files.remove(args.handle)?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fopen_modes() {
        for ok in [
            "r", "rb", "w", "wb", "a", "ab", "r+", "rb+", "r+b", "w+", "wb+", "w+b", "a+", "ab+",
            "a+b",
        ] {
            assert!(open_flags(ok).is_some(), "{ok}");
        }
        for bad in ["", "zz", "rr", "br", "rbb", "x", "r+x"] {
            assert!(open_flags(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn whence_codes() {
        assert!(matches!(
            seek_from(&Whence::Name("end".into()), -1),
            Ok(SeekFrom::End(-1))
        ));
        assert_eq!(
            seek_from(&Whence::Code(7), 0).err().map(|e| e.desc),
            Some("invalid whence code 7".into())
        );
    }
}
