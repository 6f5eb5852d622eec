//! 64 MiB each way through the calls `porthole agent cp` makes with porthole-agent
//! (crates/cli/src/agent/copy.rs): guest-porthole-file-write in 8 MiB chunks with `final`
//! carrying the sha256 (the agent installs the file only when it matches), and
//! guest-porthole-file-read in 8 MiB chunks, each checked against its `sha256-of-chunk`.
//! Both files live on the ext4 data disk (the initramfs is RAM); the hashes are compared on
//! both sides: sha2 on the host, busybox sha256sum in the guest.

use super::{check, err, pattern, sh, Outcome, Suite};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use porthole_client::commands::PxFinal;
use porthole_client::Client;
use porthole_vmtest::disk;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const SIZE: usize = 64 << 20;
/// The CLI's chunk (`PORTHOLE_CHUNK` in copy.rs).
const CHUNK: usize = 8 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn client(suite: &Suite) -> Result<Client, String> {
    let mut client = suite.client()?;
    // One 8 MiB chunk is 11 MiB of base64 through virtio-serial under TCG.
    client.set_call_timeout(Duration::from_secs(120));
    Ok(client)
}

/// busybox sha256sum of a guest file: the hash alone.
fn guest_sha256(client: &mut Client, path: &str) -> Result<String, String> {
    let out = sh(client, &format!("sha256sum {path}"))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| format!("sha256sum printed {out:?}"))
}

fn rate(bytes: usize, start: Instant) -> String {
    let secs = start.elapsed().as_secs_f64();
    format!("{secs:.1}s, {:.1} MB/s", bytes as f64 / secs / 1e6)
}

pub fn host_to_guest(suite: &mut Suite) -> Outcome {
    let path = format!("{}/upload-64m.bin", disk::MOUNTPOINT);
    let data = pattern(SIZE);
    let ours = hex(&Sha256::digest(&data));
    let mut client = client(suite)?;
    let start = Instant::now();
    for (index, piece) in data.chunks(CHUNK).enumerate() {
        let offset = (index * CHUNK) as u64;
        let last = offset as usize + piece.len() == SIZE;
        let finish = last.then(|| PxFinal {
            sha256: ours.clone(),
            mode: Some(0o640),
            ..PxFinal::default()
        });
        let written = client
            .px_file_write(&path, offset, piece, finish)
            .map_err(err)?;
        let expected = offset + piece.len() as u64;
        check(written.received == expected, || {
            format!(
                "after the chunk at {offset} the agent holds {}",
                written.received
            )
        })?;
        check(written.complete == last, || {
            format!("chunk at {offset}: complete={}", written.complete)
        })?;
    }
    let took = rate(SIZE, start);
    let theirs = guest_sha256(&mut client, &path)?;
    check(theirs == ours, || {
        format!("guest sha256sum {theirs}, host {ours}")
    })?;
    let listing = sh(&mut client, &format!("stat -c '%s %a' {path}"))?;
    check(listing == format!("{SIZE} 640\n"), || {
        format!("stat says {listing:?}")
    })?;
    eprintln!("vm-e2e:        host→guest 64 MiB in {took}");
    Ok(())
}

pub fn guest_to_host(suite: &mut Suite) -> Outcome {
    let path = format!("{}/download-64m.bin", disk::MOUNTPOINT);
    let mut client = client(suite)?;
    sh(
        &mut client,
        &format!("dd if=/dev/urandom of={path} bs=1M count=64 2>/dev/null"),
    )?;
    let theirs = guest_sha256(&mut client, &path)?;
    let start = Instant::now();
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    loop {
        let chunk = client
            .px_file_read(&path, offset, Some(CHUNK as u64))
            .map_err(err)?;
        let data = BASE64.decode(&chunk.data_b64).map_err(err)?;
        check(
            chunk.offset == offset && chunk.length == data.len() as u64,
            || {
                format!(
                    "asked offset {offset}, got offset {} length {} ({} bytes)",
                    chunk.offset,
                    chunk.length,
                    data.len()
                )
            },
        )?;
        let got = hex(&Sha256::digest(&data));
        check(got == chunk.sha256_of_chunk, || {
            format!(
                "chunk at {offset}: sha256 {got}, the agent says {}",
                chunk.sha256_of_chunk
            )
        })?;
        hasher.update(&data);
        offset += data.len() as u64;
        if chunk.eof {
            break;
        }
        check(!data.is_empty() && offset <= SIZE as u64, || {
            format!("no end of file after {offset} bytes")
        })?;
    }
    let took = rate(SIZE, start);
    check(offset == SIZE as u64, || format!("read {offset} bytes"))?;
    let ours = hex(&hasher.finalize());
    check(ours == theirs, || {
        format!("host sha256 {ours}, guest sha256sum {theirs}")
    })?;
    let agent = client.px_file_sha256(&path).map_err(err)?;
    check(agent.sha256 == ours && agent.size == offset, || {
        format!("guest-porthole-file-sha256 says {agent:?}")
    })?;
    eprintln!("vm-e2e:        guest→host 64 MiB in {took}");
    Ok(())
}
