//! Memory hotplug blocks: guest-get-memory-blocks, guest-set-memory-blocks and
//! guest-get-memory-block-info, from /sys/devices/system/memory, as qemu-ga 7.2 does on Linux.
//!
//! guest-set-memory-blocks never fails as a whole: each block gets a response
//! (success / not-found / operation-not-supported / operation-failed) and, on failure, the errno
//! in `error-code`. qemu-ga also reports an errno beside `success` when it re-onlines a block
//! whose `state` file is missing; porthole reproduces that.

use super::sysfs::{errno, os_error};
use super::{blocking, NoArgs};
use crate::agent::Agent;
use porthole_proto::commands::{
    MemoryBlock, MemoryBlockInfo, MemoryBlockResponse, MemoryBlockResponseType, SetMemoryBlocksArgs,
};
use porthole_proto::CommandError;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

pub const MEMORY_DIR: &str = "/sys/devices/system/memory";
/// 2^18 blocks of the smallest size (128 MiB) is 32 TiB: more than any guest has.
pub const MAX_MEMORY_BLOCKS: usize = 1 << 18;

pub async fn get_blocks(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| super::to_value(list_blocks(Path::new(MEMORY_DIR))?)).await
}

pub async fn set_blocks(
    _agent: Arc<Agent>,
    args: SetMemoryBlocksArgs,
) -> Result<Value, CommandError> {
    blocking(move || super::to_value(apply_blocks(Path::new(MEMORY_DIR), &args.mem_blks)?)).await
}

pub async fn block_info(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| super::to_value(read_block_info(Path::new(MEMORY_DIR))?)).await
}

/// Every `memoryN` directory under `dir`, in directory order. A system without the directory
/// has no hotpluggable memory: an empty list, not an error.
pub fn list_blocks(dir: &Path) -> Result<Vec<MemoryBlock>, CommandError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(os_error(
                format!("Can't open directory\"{}/\"", dir.display()),
                &e,
            ))
        }
    };
    let mut blocks = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(index) = name
            .to_string_lossy()
            .strip_prefix("memory")
            .map(leading_u64)
        else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        blocks.push(read_block(dir, index)?);
    }
    if blocks.is_empty() {
        return Err(CommandError::failed("guest reported zero memory blocks!"));
    }
    Ok(blocks)
}

/// strtoul(3) base 10 on the start of `text`.
fn leading_u64(text: &str) -> u64 {
    text.bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
}

/// qemu-ga prints the uint64 index with PRId64, so 2^64-1 is `memory-1`.
fn block_dir(dir: &Path, index: u64) -> String {
    format!("{}/memory{}/", dir.display(), index as i64)
}

fn open_dir(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
}

/// The first bytes of a sysfs attribute, with qemu-ga's texts for a missing or empty file.
fn read_attr(dirpath: &str, name: &str, len: usize) -> Result<Vec<u8>, (i32, CommandError)> {
    let file = File::open(format!("{dirpath}{name}")).map_err(|e| {
        (
            errno(&e),
            os_error(format!("open sysfs file \"{name}\""), &e),
        )
    })?;
    let mut buf = vec![0u8; len];
    let n = file.read_at(&mut buf, 0).map_err(|e| {
        (
            errno(&e),
            os_error(format!("pread sysfs file \"{name}\""), &e),
        )
    })?;
    if n == 0 {
        let text = format!("pread sysfs file \"{name}\": unexpected EOF");
        return Err((libc::EIO, CommandError::failed(text)));
    }
    buf.truncate(n);
    Ok(buf)
}

fn read_block(dir: &Path, index: u64) -> Result<MemoryBlock, CommandError> {
    let dirpath = block_dir(dir, index);
    open_dir(&dirpath).map_err(|e| os_error(format!("open(\"{dirpath}\")"), &e))?;
    let mut block = MemoryBlock {
        phys_index: index,
        online: true,
        can_offline: Some(false),
    };
    let state = match read_attr(&dirpath, "state", 10) {
        Ok(state) => state,
        // Kernels without the file cannot offline memory.
        Err((code, _)) if code == libc::ENOENT => return Ok(block),
        Err((_, e)) => return Err(e),
    };
    block.online = state.starts_with(b"online");
    block.can_offline = match read_attr(&dirpath, "removable", 1) {
        Ok(removable) => Some(removable.first() != Some(&b'0')),
        Err((code, _)) if code == libc::ENOENT => Some(false),
        Err((_, e)) => return Err(e),
    };
    Ok(block)
}

/// Applies each block's `online` and reports per block.
pub fn apply_blocks(
    dir: &Path,
    blocks: &[MemoryBlock],
) -> Result<Vec<MemoryBlockResponse>, CommandError> {
    if blocks.len() > MAX_MEMORY_BLOCKS {
        return Err(CommandError::invalid_params(format!(
            "too many memory blocks: {} (at most {MAX_MEMORY_BLOCKS})",
            blocks.len()
        )));
    }
    Ok(blocks.iter().map(|b| apply_block(dir, b)).collect())
}

fn apply_block(dir: &Path, block: &MemoryBlock) -> MemoryBlockResponse {
    use MemoryBlockResponseType::*;
    let respond = |response, error_code: Option<i32>| MemoryBlockResponse {
        phys_index: block.phys_index,
        response,
        error_code: error_code.map(i64::from),
    };
    if let Err(e) = std::fs::read_dir(dir) {
        let code = errno(&e);
        let response = if code == libc::ENOENT {
            OperationNotSupported
        } else {
            Success
        };
        return respond(response, Some(code));
    }
    let dirpath = block_dir(dir, block.phys_index);
    if let Err(e) = open_dir(&dirpath) {
        let code = errno(&e);
        let response = if code == libc::ENOENT {
            NotFound
        } else {
            OperationFailed
        };
        return respond(response, Some(code));
    }
    let state = match read_attr(&dirpath, "state", 10) {
        Ok(state) => state,
        Err((code, _)) if code == libc::ENOENT && !block.online => {
            return respond(OperationNotSupported, Some(code))
        }
        // Re-onlining without a state file: qemu-ga answers success, with the errno.
        Err((code, _)) if code == libc::ENOENT => return respond(Success, Some(code)),
        Err((code, _)) => return respond(OperationFailed, Some(code)),
    };
    if block.online == state.starts_with(b"online") {
        return respond(Success, None);
    }
    let new_state: &[u8] = if block.online { b"online" } else { b"offline" };
    let written = OpenOptions::new()
        .write(true)
        .open(format!("{dirpath}state"))
        .and_then(|f| f.write_at(new_state, 0));
    match written {
        Ok(n) if n == new_state.len() => respond(Success, None),
        Ok(_) => respond(OperationFailed, Some(libc::EIO)),
        Err(e) => respond(OperationFailed, Some(errno(&e))),
    }
}

pub fn read_block_info(dir: &Path) -> Result<MemoryBlockInfo, CommandError> {
    let dirpath = format!("{}/", dir.display());
    open_dir(&dirpath).map_err(|e| os_error(format!("open(\"{dirpath}\")"), &e))?;
    let text = read_attr(&dirpath, "block_size_bytes", 20).map_err(|(_, e)| e)?;
    Ok(MemoryBlockInfo {
        size: parse_hex(&String::from_utf8_lossy(&text)),
    })
}

/// strtol(text, NULL, 16): blanks, an optional `0x`, hex digits; saturates at i64::MAX.
fn parse_hex(text: &str) -> u64 {
    let text = text.trim_start();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let value = text
        .chars()
        .map_while(|c| c.to_digit(16))
        .try_fold(0i64, |n, d| n.checked_mul(16)?.checked_add(i64::from(d)));
    value.unwrap_or(i64::MAX) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_sizes() {
        assert_eq!(parse_hex("8000000\n"), 134_217_728);
        assert_eq!(parse_hex("0x10"), 16);
        assert_eq!(parse_hex("ffffffffffffffffffff"), i64::MAX as u64);
        assert_eq!(parse_hex("zz"), 0);
    }

    #[test]
    fn fake_sysfs_blocks() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir(root.join("memory3"))?;
        std::fs::write(root.join("memory3/state"), "online\n")?;
        std::fs::write(root.join("memory3/removable"), "1\n")?;
        std::fs::create_dir(root.join("memory7"))?;
        std::fs::write(root.join("memory7/state"), "offline\n")?;
        std::fs::create_dir(root.join("memory9"))?; // no state: an old kernel
        std::fs::write(root.join("block_size_bytes"), "8000000\n")?;
        std::fs::write(root.join("memoryfile"), "not a dir")?;
        let mut blocks = list_blocks(root)?;
        blocks.sort_by_key(|b| b.phys_index);
        let summary: Vec<_> = blocks
            .iter()
            .map(|b| (b.phys_index, b.online, b.can_offline))
            .collect();
        assert_eq!(
            summary,
            vec![
                (3, true, Some(true)),
                (7, false, Some(false)),
                (9, true, Some(false))
            ]
        );
        assert_eq!(read_block_info(root)?.size, 134_217_728);

        let set = |index, online| MemoryBlock {
            phys_index: index,
            online,
            can_offline: None,
        };
        let r = apply_blocks(
            root,
            &[
                set(7, true),
                set(3, true),
                set(9, false),
                set(9, true),
                set(u64::MAX, true),
            ],
        )?;
        use MemoryBlockResponseType::*;
        let got: Vec<_> = r.iter().map(|r| (r.response, r.error_code)).collect();
        assert_eq!(
            got,
            vec![
                (Success, None),
                (Success, None),
                (OperationNotSupported, Some(2)),
                (Success, Some(2)),
                (NotFound, Some(2)),
            ]
        );
        // A real sysfs attribute is replaced by the write; the temp file is overwritten in place.
        assert!(std::fs::read_to_string(root.join("memory7/state"))?.starts_with("online"));
        Ok(())
    }

    #[test]
    fn missing_directory() -> Result<(), CommandError> {
        let root = Path::new("/nonexistent/memory");
        assert!(list_blocks(root)?.is_empty());
        let r = apply_blocks(
            root,
            &[MemoryBlock {
                phys_index: 1,
                online: false,
                can_offline: None,
            }],
        )?;
        assert_eq!(
            r[0].response,
            MemoryBlockResponseType::OperationNotSupported
        );
        assert!(apply_blocks(root, &[])?.is_empty());
        let huge = vec![
            MemoryBlock {
                phys_index: 0,
                online: true,
                can_offline: None
            };
            MAX_MEMORY_BLOCKS + 1
        ];
        let err = apply_blocks(root, &huge).err();
        assert!(err.is_some_and(|e| e.desc.starts_with("too many memory blocks")));
        Ok(())
    }
}
