//! guest-porthole-file-read, -file-sha256, -file-write, -file-partial: file transfer by path
//! with integrity checks and resumable writes.
//!
//! Reads are positional (no handle to leak) and carry the chunk's SHA-256. Writes go to a
//! partial file beside the target, `.<name>.porthole-partial`, at the offset the host names:
//! offset 0 starts afresh, a later offset may not lie past the bytes already received, so a
//! host that lost its connection asks `-file-partial` and resumes there. The `final` chunk
//! hashes the whole partial file; only when it matches is the mode/owner set, the file synced
//! and renamed over the target (by name inside the directory opened beneath the write
//! prefixes). A mismatch removes the partial file and leaves the target untouched.
//!
//! Every path goes through the policy (`open_for_read`, `open`, `open_dir_for_write`).

use super::file::decode_base64;
use super::{blocking, errno_text};
use crate::agent::Agent;
use crate::dispatch::{Payload, Streamed};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, Mode};
use porthole_proto::commands::{
    PxFilePartial, PxFileReadArgs, PxFileSha256, PxFileWriteArgs, PxFileWritten, PxFinal,
    PxPathArgs,
};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

/// `length` when absent.
pub const DEFAULT_LENGTH: i64 = 8 << 20;
/// Bytes hashed per read.
const HASH_BLOCK: usize = 1 << 20;
/// The partial file's suffix.
pub const PARTIAL_SUFFIX: &str = ".porthole-partial";

fn io_failed(what: &str, path: &str, e: &std::io::Error) -> CommandError {
    CommandError::failed(format!("{what} '{path}': {}", errno_text(e)))
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
fn read_at_full(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read_at(rest, offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// SHA-256 (lower-case hex) of the first `size` bytes of `file`; returns the bytes hashed (fewer
/// when the file shrank). Bounded by `size`, so a file growing under us cannot keep us here.
fn hash_file(file: &File, size: u64) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BLOCK];
    let mut at = 0u64;
    while at < size {
        let want = usize::try_from((size - at).min(HASH_BLOCK as u64)).unwrap_or(HASH_BLOCK);
        let n = read_at_full(file, buf.get_mut(..want).unwrap_or_default(), at)?;
        hasher.update(buf.get(..n).unwrap_or_default());
        at += n as u64;
        if n < want {
            break;
        }
    }
    Ok((hex(&hasher.finalize()), at))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn read(agent: Arc<Agent>, args: PxFileReadArgs) -> Result<Payload, CommandError> {
    let offset = args.offset.unwrap_or(0);
    let offset =
        u64::try_from(offset).map_err(|_| CommandError::invalid_value(offset, "offset"))?;
    // The default never exceeds the policy's cap; an explicit length over it is refused.
    let cap = i64::try_from(agent.policy.files.max_read).unwrap_or(i64::MAX);
    let length = args.length.unwrap_or(DEFAULT_LENGTH.min(cap));
    let length =
        u64::try_from(length).map_err(|_| CommandError::invalid_value(length, "length"))?;
    agent.policy.check_read_size(length)?;
    blocking(move || {
        let file = agent.policy.open_for_read(&args.path)?;
        let size = file
            .metadata()
            .map_err(|e| io_failed("cannot stat", &args.path, &e))?
            .len();
        // Bounded by the policy's cap and by what the file holds, whatever `length` says.
        let want = usize::try_from(length.min(size.saturating_sub(offset))).unwrap_or(0);
        let mut bytes = vec![0u8; want];
        let n = read_at_full(&file, &mut bytes, offset)
            .map_err(|e| io_failed("cannot read", &args.path, &e))?;
        bytes.truncate(n);
        let sha = hex(&Sha256::digest(&bytes));
        Ok(Payload::Streamed(Streamed {
            value: json!({
                "offset": offset,
                "length": n,
                "eof": offset.saturating_add(n as u64) >= size,
                "size": size,
                "sha256-of-chunk": sha,
            }),
            field: "data-b64",
            bytes,
        }))
    })
    .await
}

pub async fn sha256(agent: Arc<Agent>, args: PxPathArgs) -> Result<Value, CommandError> {
    blocking(move || {
        let file = agent.policy.open_for_read(&args.path)?;
        let size = file
            .metadata()
            .map_err(|e| io_failed("cannot stat", &args.path, &e))?
            .len();
        let (sha256, size) =
            hash_file(&file, size).map_err(|e| io_failed("cannot read", &args.path, &e))?;
        super::to_value(PxFileSha256 { sha256, size })
    })
    .await
}

/// The target's directory, its name and the partial file's path.
struct Names {
    dir: String,
    name: String,
    partial: String,
}

fn names(path: &str) -> Result<Names, CommandError> {
    let given = Path::new(path);
    let name = given
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !path.ends_with('/') && !n.is_empty())
        .ok_or_else(|| CommandError::invalid_params(format!("'{path}' does not name a file")))?;
    let dir = match given.parent().and_then(|p| p.to_str()) {
        Some("") | None => ".",
        Some(dir) => dir,
    };
    let partial = Path::new(dir).join(format!(".{name}{PARTIAL_SUFFIX}"));
    Ok(Names {
        dir: dir.to_string(),
        name: name.to_string(),
        partial: partial.to_string_lossy().into_owned(),
    })
}

pub async fn partial(agent: Arc<Agent>, args: PxPathArgs) -> Result<Value, CommandError> {
    blocking(move || {
        let names = names(&args.path)?;
        // Opened as a writer would (write prefixes), without creating; O_NONBLOCK so a FIFO
        // planted there fails instead of waiting for a reader.
        let flags = OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        let received = match agent.policy.open(&names.partial, flags, "w") {
            Ok(file) => regular(&file, &names.partial)?.len(),
            Err(e) if e.kind == porthole_proto::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        super::to_value(PxFilePartial { received })
    })
    .await
}

fn regular(file: &File, path: &str) -> Result<std::fs::Metadata, CommandError> {
    let meta = file
        .metadata()
        .map_err(|e| io_failed("cannot stat", path, &e))?;
    if !meta.is_file() {
        return Err(CommandError::failed(format!(
            "'{path}' is not a regular file"
        )));
    }
    Ok(meta)
}

/// `final`'s requests, checked and resolved before anything is written.
struct Finish {
    sha256: String,
    mode: Option<u32>,
    uid: Option<nix::unistd::Uid>,
    gid: Option<nix::unistd::Gid>,
}

fn check_final(finish: &PxFinal) -> Result<Finish, CommandError> {
    let sha = finish.sha256.to_ascii_lowercase();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CommandError::invalid_value(&finish.sha256, "final.sha256"));
    }
    let mode = finish
        .mode
        .map(|m| {
            u32::try_from(m)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| CommandError::invalid_value(m, "final.mode"))
        })
        .transpose()?;
    let uid = finish
        .owner
        .as_deref()
        .map(|name| match name.parse::<u32>() {
            Ok(uid) => Ok(nix::unistd::Uid::from_raw(uid)),
            Err(_) => match nix::unistd::User::from_name(name) {
                Ok(Some(user)) => Ok(user.uid),
                _ => Err(CommandError::not_found(format!("unknown user '{name}'"))),
            },
        })
        .transpose()?;
    let gid = finish
        .group
        .as_deref()
        .map(super::px_exec::lookup_group)
        .transpose()?;
    Ok(Finish {
        sha256: sha,
        mode,
        uid,
        gid,
    })
}

pub async fn write(agent: Arc<Agent>, args: PxFileWriteArgs) -> Result<Value, CommandError> {
    let data = decode_base64(&args.data_b64)?;
    let offset = u64::try_from(args.offset)
        .map_err(|_| CommandError::invalid_value(args.offset, "offset"))?;
    let end = offset
        .checked_add(data.len() as u64)
        .ok_or_else(|| CommandError::invalid_value(args.offset, "offset"))?;
    let finish = args.finish.as_ref().map(check_final).transpose()?;
    agent.policy.check_write_size(data.len() as u64, end)?;
    blocking(move || {
        let names = names(&args.path)?;
        // Read-write: `final` hashes what was written through the same descriptor.
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        let file = agent.policy.open(&names.partial, flags, "w+")?;
        let received = regular(&file, &names.partial)?.len();
        // Only the agent reads a partial file.
        fchmod(&file, Mode::from_bits_truncate(0o600))
            .map_err(|e| io_failed("cannot chmod", &names.partial, &e.into()))?;
        if offset == 0 {
            file.set_len(0)
                .map_err(|e| io_failed("cannot truncate", &names.partial, &e))?;
        } else if offset > received {
            return Err(CommandError::failed(format!(
                "offset {offset} is past the {received} bytes received for '{}' (ask guest-porthole-file-partial)",
                args.path
            )));
        }
        file.write_all_at(&data, offset)
            .map_err(|e| io_failed("cannot write", &names.partial, &e))?;
        let received = regular(&file, &names.partial)?.len();
        let Some(finish) = finish else {
            return super::to_value(PxFileWritten {
                received,
                complete: false,
            });
        };
        complete(&agent, &file, &names, &finish, received)?;
        super::to_value(PxFileWritten {
            received,
            complete: true,
        })
    })
    .await
}

/// Verifies the whole partial file, sets mode and owner, syncs and renames it over the target.
fn complete(
    agent: &Agent,
    file: &File,
    names: &Names,
    finish: &Finish,
    size: u64,
) -> Result<(), CommandError> {
    let dir = agent.policy.open_dir_for_write(&names.dir)?;
    let (actual, hashed) =
        hash_file(file, size).map_err(|e| io_failed("cannot read", &names.partial, &e))?;
    if actual != finish.sha256 {
        let _ = nix::unistd::unlinkat(
            &dir,
            names.partial_name().as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        return Err(CommandError::failed(format!(
            "sha256 mismatch for '{}/{}': expected {}, the {hashed} bytes received hash to {actual}; the partial file was removed and the target left untouched",
            names.dir, names.name, finish.sha256
        )));
    }
    let target_mode = match fstatat(&dir, names.name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => st.st_mode & 0o7777,
        _ => 0o644,
    };
    // chown first: it clears set-id bits, which the mode may then set.
    if finish.uid.is_some() || finish.gid.is_some() {
        nix::unistd::fchown(file, finish.uid, finish.gid)
            .map_err(|e| io_failed("cannot chown", &names.partial, &e.into()))?;
    }
    let mode = finish.mode.unwrap_or(target_mode);
    fchmod(file, Mode::from_bits_truncate(mode))
        .map_err(|e| io_failed("cannot chmod", &names.partial, &e.into()))?;
    file.sync_all()
        .map_err(|e| io_failed("cannot sync", &names.partial, &e))?;
    // The name must still be the file we verified (not swapped since we opened it).
    let ours = file
        .metadata()
        .map_err(|e| io_failed("cannot stat", &names.partial, &e))?;
    let there = fstatat(
        &dir,
        names.partial_name().as_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_failed("cannot stat", &names.partial, &e.into()))?;
    if there.st_ino != ours.ino() || there.st_dev != ours.dev() {
        return Err(CommandError::failed(format!(
            "'{}' was replaced during the transfer",
            names.partial
        )));
    }
    nix::fcntl::renameat(
        &dir,
        names.partial_name().as_str(),
        &dir,
        names.name.as_str(),
    )
    .map_err(|e| io_failed("cannot rename into place", &names.partial, &e.into()))?;
    // Make the rename itself durable (an O_PATH descriptor cannot be synced).
    if let Ok(fd) = nix::fcntl::openat(
        &dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    ) {
        let _ = nix::unistd::fsync(&fd);
    }
    Ok(())
}

impl Names {
    fn partial_name(&self) -> String {
        format!(".{}{PARTIAL_SUFFIX}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names() {
        let n = names("/srv/data/disk.img").ok();
        assert_eq!(
            n.as_ref().map(|n| n.partial.as_str()),
            Some("/srv/data/.disk.img.porthole-partial")
        );
        assert_eq!(n.map(|n| n.dir), Some("/srv/data".to_string()));
        assert_eq!(
            names("x").ok().map(|n| n.partial),
            Some("./.x.porthole-partial".into())
        );
        for bad in ["/", "/srv/", "/srv/..", ""] {
            assert!(names(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn final_is_checked_before_anything_is_written() {
        let ok = PxFinal {
            sha256: "A".repeat(64),
            mode: Some(0o640),
            ..PxFinal::default()
        };
        assert!(check_final(&ok).is_ok());
        for bad in [
            PxFinal {
                sha256: "abc".into(),
                ..PxFinal::default()
            },
            PxFinal {
                sha256: "g".repeat(64),
                ..PxFinal::default()
            },
            PxFinal {
                sha256: "a".repeat(64),
                mode: Some(-1),
                ..PxFinal::default()
            },
            PxFinal {
                sha256: "a".repeat(64),
                mode: Some(0o10000),
                ..PxFinal::default()
            },
            PxFinal {
                sha256: "a".repeat(64),
                owner: Some("no-such-user-porthole".into()),
                ..PxFinal::default()
            },
        ] {
            assert!(check_final(&bad).is_err(), "{bad:?}");
        }
    }
}
