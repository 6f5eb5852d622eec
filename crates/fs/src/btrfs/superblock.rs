//! The superblock: the primary copy at 64 KiB, its CRC-32C, and the fields the reader needs.
//!
//! Only the primary is used: the mirrors (64 MiB, 256 GiB) may be older, and a reader that
//! silently fell back to them would show a different filesystem than the kernel mounts.

use super::bytes::{corrupt, crc32c, slice, u16_at, u32_at, u64_at, u8_at, unsupported};
use crate::{Dev, Result};

pub(super) const OFFSET: u64 = 0x10000;
pub(super) const SIZE: usize = 4096;
pub(super) const MAGIC: &[u8; 8] = b"_BHRfS_M";
const MAGIC_AT: usize = 0x40;
/// The sys_chunk_array holds at most this many bytes (BTRFS_SYSTEM_CHUNK_ARRAY_SIZE).
const SYS_CHUNK_ARRAY_MAX: usize = 2048;
/// incompat flag: tree blocks carry `metadata_uuid` instead of the fsid.
const INCOMPAT_METADATA_UUID: u64 = 1 << 10;
/// incompat flag: the extent tree v2 layout, which this reader does not know.
const INCOMPAT_EXTENT_TREE_V2: u64 = 1 << 13;

/// The fields of the superblock that reading needs.
#[derive(Debug, Clone)]
pub(super) struct Superblock {
    pub fsid: [u8; 16],
    /// What tree block headers carry in their fsid field.
    pub metadata_uuid: [u8; 16],
    pub root: u64,
    pub root_level: u8,
    pub chunk_root: u64,
    pub chunk_root_level: u8,
    pub sectorsize: u32,
    pub nodesize: u32,
    /// This device's id, to pick the chunk stripes that live on it.
    pub devid: u64,
    pub label: Option<String>,
    pub sys_chunk_array: Vec<u8>,
}

/// Whether the btrfs magic is at its place on `dev`.
pub(super) fn has_magic(dev: &Dev) -> bool {
    let mut magic = [0u8; 8];
    dev.read_exact_at(&mut magic, OFFSET + MAGIC_AT as u64)
        .is_ok()
        && &magic == MAGIC
}

/// Reads and checks the primary superblock; `verify` is off only for fuzzing.
pub(super) fn read(dev: &Dev, verify: bool) -> Result<Superblock> {
    let mut buf = vec![0u8; SIZE];
    dev.read_exact_at(&mut buf, OFFSET)?;
    parse(&buf, verify)
}

fn field<T>(v: Option<T>, at: usize) -> Result<T> {
    v.ok_or_else(|| corrupt(OFFSET + at as u64, "superblock field out of range"))
}

fn check_size(what: &str, v: u32, at: usize) -> Result<u32> {
    if v.is_power_of_two() && (4096..=65536).contains(&v) {
        Ok(v)
    } else {
        Err(corrupt(
            OFFSET + at as u64,
            format!("superblock {what} {v} is not a power of two in 4096..=65536"),
        ))
    }
}

fn uuid_at(buf: &[u8], at: usize) -> Result<[u8; 16]> {
    let s = field(slice(buf, at, 16), at)?;
    let mut u = [0u8; 16];
    u.copy_from_slice(s);
    Ok(u)
}

fn parse(buf: &[u8], verify: bool) -> Result<Superblock> {
    if field(slice(buf, MAGIC_AT, 8), MAGIC_AT)? != MAGIC {
        return Err(corrupt(
            OFFSET + MAGIC_AT as u64,
            "superblock magic missing",
        ));
    }
    let csum_type = field(u16_at(buf, 0xc4), 0xc4)?;
    if csum_type != 0 {
        let name = match csum_type {
            1 => "xxhash64",
            2 => "sha256",
            3 => "blake2b",
            _ => "unknown",
        };
        return Err(unsupported(format!(
            "checksum type {csum_type} ({name}); only crc32c is read"
        )));
    }
    let stored = field(u32_at(buf, 0), 0)?;
    let computed = crc32c(field(buf.get(0x20..SIZE), 0x20)?);
    if verify && stored != computed {
        return Err(corrupt(
            OFFSET,
            format!(
                "superblock checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        ));
    }
    let incompat = field(u64_at(buf, 0xbc), 0xbc)?;
    if incompat & INCOMPAT_EXTENT_TREE_V2 != 0 {
        return Err(unsupported("extent tree v2"));
    }
    let fsid = uuid_at(buf, 0x20)?;
    let metadata_uuid = if incompat & INCOMPAT_METADATA_UUID != 0 {
        uuid_at(buf, 0x23b)?
    } else {
        fsid
    };
    let sectorsize = check_size("sectorsize", field(u32_at(buf, 0x90), 0x90)?, 0x90)?;
    let nodesize = check_size("nodesize", field(u32_at(buf, 0x94), 0x94)?, 0x94)?;
    let array_len = field(u32_at(buf, 0xa0), 0xa0)? as usize;
    if array_len > SYS_CHUNK_ARRAY_MAX {
        return Err(corrupt(
            OFFSET + 0xa0,
            format!("sys_chunk_array_size {array_len} exceeds {SYS_CHUNK_ARRAY_MAX}"),
        ));
    }
    let label_bytes = field(slice(buf, 0x12b, 256), 0x12b)?;
    let label_len = label_bytes.iter().position(|&b| b == 0).unwrap_or(256);
    let label = (label_len > 0)
        .then(|| String::from_utf8_lossy(label_bytes.get(..label_len).unwrap_or(&[])).into_owned());
    Ok(Superblock {
        fsid,
        metadata_uuid,
        root: field(u64_at(buf, 0x50), 0x50)?,
        root_level: field(u8_at(buf, 0xc6), 0xc6)?,
        chunk_root: field(u64_at(buf, 0x58), 0x58)?,
        chunk_root_level: field(u8_at(buf, 0xc7), 0xc7)?,
        sectorsize,
        nodesize,
        devid: field(u64_at(buf, 0xc9), 0xc9)?,
        label,
        sys_chunk_array: field(slice(buf, 0x32b, array_len), 0x32b)?.to_vec(),
    })
}
