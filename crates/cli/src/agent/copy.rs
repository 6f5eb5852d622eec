//! `agent cp`: files between host and guest.
//!
//! With porthole-agent the transfer goes through guest-porthole-file-read/-write in 8 MiB
//! chunks: every downloaded chunk is checked against the agent's `sha256-of-chunk`, and the whole
//! file against guest-porthole-file-sha256 (download) or the write's `final` (upload, where the
//! agent installs the file only when the hash matches). Interrupted transfers resume with
//! `--resume`: a download continues `LOCAL.porthole-partial`, an upload asks
//! guest-porthole-file-partial. With qemu-ga the plain guest-file-* commands move 1 MiB at a
//! time and the hashes are computed here, on both sides' bytes as read through the agent.

use super::{print_json, Session};
use crate::cli::CpArgs;
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use porthole_client::commands::{self as cmd, PxFinal};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bytes per guest-porthole-file-read/-write.
const PORTHOLE_CHUNK: u64 = 8 << 20;
/// Bytes per guest-file-read/-write (qemu-ga caps a read at 48 MiB; 1 MiB keeps replies small).
const QGA_CHUNK: u64 = 1 << 20;

/// One end of a copy.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Guest(String),
    Local(PathBuf),
}

fn parse_end(text: &str) -> End {
    match text
        .strip_prefix("guest:")
        .or_else(|| text.strip_prefix(':'))
    {
        Some(path) => End::Guest(path.to_string()),
        None => End::Local(PathBuf::from(text)),
    }
}

/// What a finished copy reports.
struct Copied {
    bytes: u64,
    sha256: String,
    /// `agent` when porthole-agent checked the hash, `local` when only porthole did.
    verified: &'static str,
    resumed_from: u64,
}

impl Session {
    pub(super) fn cp(&mut self, args: CpArgs) -> Result<()> {
        let porthole = self.supports(cmd::GUEST_PORTHOLE_FILE_WRITE.name)?;
        if args.resume && !porthole {
            bail!("--resume needs porthole-agent's guest-porthole-file-* commands, which this agent (qemu-ga?) lacks");
        }
        let (source, destination) = (parse_end(&args.source), parse_end(&args.destination));
        let destination = into_directory(destination, &source);
        let copied = match (source, destination) {
            (End::Guest(guest), End::Local(local)) if porthole => {
                self.download(&guest, &local, args.resume)?
            }
            (End::Guest(guest), End::Local(local)) => self.download_qga(&guest, &local)?,
            (End::Local(local), End::Guest(guest)) if porthole => {
                self.upload(&local, &guest, args.resume)?
            }
            (End::Local(local), End::Guest(guest)) => self.upload_qga(&local, &guest)?,
            _ => {
                bail!("one of SOURCE and DESTINATION must be guest:PATH and the other a local path")
            }
        };
        self.report_copy(&copied)
    }

    /// `chunk`, or less when a reply cannot carry that much (through libvirt, 4 MiB).
    fn read_chunk(&self, chunk: u64) -> u64 {
        chunk.min(u64::try_from(self.client.reply_data_limit()).unwrap_or(u64::MAX))
    }

    /// `chunk`, or less when a request cannot carry that much beside the guest path (through
    /// libvirt a request is one virsh argument, at most 128 KiB); JSON may escape each path
    /// byte to six.
    fn write_chunk(&self, chunk: u64, guest_path: &str) -> u64 {
        let room = self
            .client
            .request_data_limit(guest_path.len().saturating_mul(6));
        chunk.min(u64::try_from(room).unwrap_or(u64::MAX)).max(1)
    }

    fn report_copy(&self, c: &Copied) -> Result<()> {
        if self.json {
            return print_json(&json!({
                "bytes": c.bytes,
                "sha256": c.sha256,
                "verified": c.verified,
                "resumed-from": c.resumed_from,
            }));
        }
        let how = match c.verified {
            "agent" => "checked by the agent and here",
            _ => "integrity checked only locally: qemu-ga has no checksum command",
        };
        println!("copied {} bytes, sha256 {} ({how})", c.bytes, c.sha256);
        Ok(())
    }

    fn download(&mut self, guest: &str, local: &Path, resume: bool) -> Result<Copied> {
        let partial = partial_path(local);
        let (mut file, start) = open_partial(&partial, resume)?;
        let mut offset = start;
        let mut progress = Progress::new(start);
        loop {
            let chunk =
                self.client
                    .px_file_read(guest, offset, Some(self.read_chunk(PORTHOLE_CHUNK)))?;
            let data = BASE64
                .decode(&chunk.data_b64)
                .context("guest-porthole-file-read: data-b64 is not base64")?;
            check_chunk(&chunk, offset, &data)?;
            file.write_all(&data)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            offset += data.len() as u64;
            progress.show(offset, chunk.size);
            if chunk.eof {
                break;
            }
            if data.is_empty() {
                bail!("guest-porthole-file-read returned no data before the end of {guest}");
            }
        }
        progress.done();
        file.sync_all()
            .with_context(|| format!("cannot sync {}", partial.display()))?;
        drop(file);
        let theirs = self.client.px_file_sha256(guest)?;
        let ours = sha256_file(&partial)?;
        if theirs.sha256 != ours || theirs.size != offset {
            bail!(
                "the copy does not match {guest}: the guest file has sha256 {} ({} bytes), the \
                 copy {ours} ({offset} bytes); the file changed during the copy or the partial \
                 file was not its beginning; {} kept (copy again without --resume)",
                theirs.sha256,
                theirs.size,
                partial.display()
            );
        }
        std::fs::rename(&partial, local).with_context(|| {
            format!("cannot rename {} to {}", partial.display(), local.display())
        })?;
        Ok(Copied {
            bytes: offset,
            sha256: ours,
            verified: "agent",
            resumed_from: start,
        })
    }

    fn upload(&mut self, local: &Path, guest: &str, resume: bool) -> Result<Copied> {
        let mut file =
            File::open(local).with_context(|| format!("cannot open {}", local.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", local.display()))?;
        let size = meta.len();
        let sha256 = sha256_file(local)?;
        let start = if resume {
            self.client.px_file_partial(guest)?
        } else {
            0
        };
        if start > size {
            bail!("the guest holds {start} bytes of {guest}, more than {} has ({size}); copy afresh without --resume", local.display());
        }
        file.seek(SeekFrom::Start(start))
            .with_context(|| format!("cannot seek in {}", local.display()))?;
        let mut offset = start;
        let mut progress = Progress::new(start);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let want = self.write_chunk(PORTHOLE_CHUNK, guest).min(size - offset);
            (&mut file)
                .take(want)
                .read_to_end(&mut buf)
                .with_context(|| format!("cannot read {}", local.display()))?;
            if (buf.len() as u64) < want {
                bail!("{} shrank during the copy", local.display());
            }
            let last = offset + want >= size;
            let finish = last.then(|| PxFinal {
                sha256: sha256.clone(),
                mode: Some(i64::from(meta.permissions().mode() & 0o7777)),
                ..PxFinal::default()
            });
            let written = self.client.px_file_write(guest, offset, &buf, finish)?;
            offset += want;
            progress.show(offset, size);
            if written.received != offset {
                bail!(
                    "the agent holds {} bytes of {guest}, expected {offset}",
                    written.received
                );
            }
            if last {
                if !written.complete {
                    bail!("the agent did not install {guest} after the last chunk");
                }
                break;
            }
        }
        progress.done();
        Ok(Copied {
            bytes: size,
            sha256,
            verified: "agent",
            resumed_from: start,
        })
    }

    fn download_qga(&mut self, guest: &str, local: &Path) -> Result<Copied> {
        let file =
            File::create(local).with_context(|| format!("cannot create {}", local.display()))?;
        let mut out = HashingWriter::new(Some(file));
        let bytes = self.client.read_file_to(guest, QGA_CHUNK, &mut out)?;
        out.progress.done();
        if let Some(file) = &out.file {
            file.sync_all()
                .with_context(|| format!("cannot sync {}", local.display()))?;
        }
        let sha256 = hex(&out.hasher.finalize());
        // Hash the file as written, so a disk error between here and there shows.
        let written = sha256_file(local)?;
        if written != sha256 {
            bail!(
                "{} differs from what the agent sent (sha256 {written}, sent {sha256})",
                local.display()
            );
        }
        Ok(Copied {
            bytes,
            sha256,
            verified: "local",
            resumed_from: 0,
        })
    }

    fn upload_qga(&mut self, local: &Path, guest: &str) -> Result<Copied> {
        let mut file =
            File::open(local).with_context(|| format!("cannot open {}", local.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let handle = self.client.file_open(guest, Some("w"))?;
        let written = self.write_handle(handle, &mut file, size);
        let closed = self.client.file_close(handle);
        let (bytes, sha256) = written?;
        closed?;
        // Read the guest file back through the agent and compare hashes computed here.
        let mut back = HashingWriter::new(None);
        let read = self.client.read_file_to(guest, QGA_CHUNK, &mut back)?;
        let theirs = hex(&back.hasher.finalize());
        if theirs != sha256 || read != bytes {
            bail!("{guest} as read back ({read} bytes, sha256 {theirs}) differs from {} ({bytes} bytes, sha256 {sha256})", local.display());
        }
        Ok(Copied {
            bytes,
            sha256,
            verified: "local",
            resumed_from: 0,
        })
    }

    /// Copies `file` to an open guest handle; returns the byte count and the sha256 sent.
    fn write_handle(&mut self, handle: i64, file: &mut File, size: u64) -> Result<(u64, String)> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0; self.write_chunk(QGA_CHUNK, "") as usize];
        let mut total = 0u64;
        let mut progress = Progress::new(0);
        loop {
            let n = file.read(&mut buf).context("cannot read the local file")?;
            let Some(piece) = buf.get(..n) else { break };
            if piece.is_empty() {
                break;
            }
            let done = self.client.file_write(handle, piece)?;
            if done.count != n as u64 {
                bail!("guest-file-write wrote {} of {n} bytes", done.count);
            }
            hasher.update(piece);
            total += n as u64;
            progress.show(total, size);
        }
        progress.done();
        Ok((total, hex(&hasher.finalize())))
    }
}

/// The download's checks on one chunk: where it starts, its length, its hash.
fn check_chunk(chunk: &cmd::PxFileChunk, offset: u64, data: &[u8]) -> Result<()> {
    if chunk.offset != offset || chunk.length != data.len() as u64 {
        bail!(
            "guest-porthole-file-read answered offset {} length {} for offset {offset} (got {} bytes)",
            chunk.offset,
            chunk.length,
            data.len()
        );
    }
    let ours = hex(&Sha256::digest(data));
    if ours != chunk.sha256_of_chunk {
        bail!(
            "the chunk at offset {offset} has sha256 {ours}, the agent says {}: corrupted in transit",
            chunk.sha256_of_chunk
        );
    }
    Ok(())
}

/// `cp guest:/etc/hosts DIR` and `cp FILE guest:/tmp/` copy to a file of the source's name
/// inside the directory, as cp(1) does.
fn into_directory(destination: End, source: &End) -> End {
    let name = match source {
        End::Guest(path) => path.rsplit('/').next().map(str::to_string),
        End::Local(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
    };
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return destination;
    };
    match destination {
        End::Local(dir) if dir.is_dir() => End::Local(dir.join(name)),
        End::Guest(dir) if dir.ends_with('/') => End::Guest(format!("{dir}{name}")),
        other => other,
    }
}

fn partial_path(local: &Path) -> PathBuf {
    let mut name = local.as_os_str().to_owned();
    name.push(".porthole-partial");
    PathBuf::from(name)
}

/// Opens the download's partial file: afresh, or positioned at its end to resume.
fn open_partial(partial: &Path, resume: bool) -> Result<(File, u64)> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!resume)
        .open(partial)
        .with_context(|| format!("cannot open {}", partial.display()))?;
    let start = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("cannot seek in {}", partial.display()))?;
    Ok((file, start))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes what passes through, writing it on to a file when there is one.
struct HashingWriter {
    file: Option<File>,
    hasher: Sha256,
    total: u64,
    progress: Progress,
}

impl HashingWriter {
    fn new(file: Option<File>) -> Self {
        HashingWriter {
            file,
            hasher: Sha256::new(),
            total: 0,
            progress: Progress::new(0),
        }
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(file) = &mut self.file {
            file.write_all(buf)?;
        }
        self.hasher.update(buf);
        self.total += buf.len() as u64;
        // qemu-ga does not say the size; the line shows bytes and rate only.
        self.progress.show(self.total, 0);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), File::flush)
    }
}

/// A one-line progress report on standard error, only when it is a terminal.
struct Progress {
    enabled: bool,
    started: Instant,
    start_bytes: u64,
    shown: bool,
}

impl Progress {
    fn new(start_bytes: u64) -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            start_bytes,
            shown: false,
        }
    }

    /// `done` of `total` bytes (total 0: unknown).
    fn show(&mut self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done.saturating_sub(self.start_bytes) as f64 / secs / 1e6;
        let percent = done
            .saturating_mul(100)
            .checked_div(total)
            .map(|p| format!(" {p:3}%"))
            .unwrap_or_default();
        eprint!("\r{done} bytes{percent}  {rate:.1} MB/s   ");
        self.shown = true;
    }

    fn done(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends() {
        assert_eq!(parse_end("guest:/etc/x"), End::Guest("/etc/x".into()));
        assert_eq!(parse_end(":/etc/x"), End::Guest("/etc/x".into()));
        assert_eq!(parse_end("./local"), End::Local("./local".into()));
        assert_eq!(
            partial_path(Path::new("/a/b")),
            Path::new("/a/b.porthole-partial")
        );
    }
}
