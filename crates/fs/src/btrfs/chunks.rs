//! The chunk map: btrfs addresses everything by *logical* address, and chunk items map ranges of
//! logical addresses to stripes on devices. The superblock's sys_chunk_array bootstraps the
//! SYSTEM chunks (enough to read the chunk tree), and the chunk tree holds the rest.
//!
//! Only one device is read. single, DUP and the mirrored profiles (RAID1, RAID1C3/4) keep a full
//! copy in any stripe, so a stripe on this device serves; striped and parity profiles (RAID0,
//! RAID10, RAID5/6) spread data across devices and are refused.

use std::collections::BTreeMap;

use super::bytes::{corrupt, limit, slice, u16_at, u64_at, unsupported};
use super::Key;
use crate::Result;

/// Item type of a chunk item in the chunk tree and the sys_chunk_array.
pub(super) const CHUNK_ITEM: u8 = 228;
/// Bytes of a disk key (objectid, type, offset).
pub(super) const KEY_SIZE: usize = 17;
const CHUNK_FIXED: usize = 48;
const STRIPE_SIZE: usize = 32;
/// More chunks than this is not a real filesystem (1 GiB data chunks: 64 TiB).
const MAX_CHUNKS: usize = 1 << 16;

const RAID0: u64 = 1 << 3;
const RAID10: u64 = 1 << 6;
const RAID5: u64 = 1 << 7;
const RAID6: u64 = 1 << 8;

#[derive(Debug, Clone)]
struct Chunk {
    length: u64,
    /// Physical offset on this device, or why the chunk cannot be read here.
    physical: std::result::Result<u64, String>,
}

/// Logical → physical mapping for this device.
#[derive(Debug, Default)]
pub(super) struct ChunkMap {
    chunks: BTreeMap<u64, Chunk>,
    dev_size: u64,
}

impl ChunkMap {
    pub fn new(dev_size: u64) -> Self {
        Self {
            chunks: BTreeMap::new(),
            dev_size,
        }
    }

    /// Adds the chunk item `data` (keyed at logical `logical`); `at` locates it for errors.
    pub fn add(&mut self, logical: u64, data: &[u8], devid: u64, at: u64) -> Result<()> {
        if self.chunks.len() >= MAX_CHUNKS {
            return Err(limit("chunk count", MAX_CHUNKS as u64));
        }
        let bad = |what: &str| corrupt(at, format!("chunk item for logical {logical:#x}: {what}"));
        let length = u64_at(data, 0).ok_or_else(|| bad("truncated"))?;
        let kind = u64_at(data, 24).ok_or_else(|| bad("truncated"))?;
        let stripes = u16_at(data, 44).ok_or_else(|| bad("truncated"))? as usize;
        if length == 0 || logical.checked_add(length).is_none() {
            return Err(bad("bad length"));
        }
        if stripes == 0 || CHUNK_FIXED + stripes * STRIPE_SIZE > data.len() {
            return Err(bad("stripe count does not fit the item"));
        }
        let physical = if kind & (RAID0 | RAID10 | RAID5 | RAID6) != 0 {
            Err(format!(
                "chunk at logical {logical:#x} is striped across devices (type {kind:#x}): \
                 RAID0/10/5/6 are not read"
            ))
        } else {
            (0..stripes)
                .filter_map(|i| {
                    let s = slice(data, CHUNK_FIXED + i * STRIPE_SIZE, STRIPE_SIZE)?;
                    Some((u64_at(s, 0)?, u64_at(s, 8)?))
                })
                .find(|&(dev, _)| dev == devid)
                .map(|(_, offset)| offset)
                .ok_or_else(|| {
                    format!(
                        "chunk at logical {logical:#x} has no stripe on this device (devid {devid}): \
                         multi-device filesystems are not read"
                    )
                })
        };
        self.chunks.insert(logical, Chunk { length, physical });
        Ok(())
    }

    /// Loads the chunk items of the superblock's sys_chunk_array.
    pub fn add_sys_array(&mut self, array: &[u8], devid: u64) -> Result<()> {
        let mut at = 0usize;
        // Every entry is at least a key and a fixed chunk part, so this loop ends.
        while at < array.len() {
            let where_ = super::superblock::OFFSET + 0x32b + at as u64;
            let key = slice(array, at, KEY_SIZE)
                .and_then(Key::parse)
                .ok_or_else(|| corrupt(where_, "sys_chunk_array entry truncated"))?;
            if key.kind != CHUNK_ITEM {
                return Err(corrupt(
                    where_,
                    format!("sys_chunk_array entry of type {} is not a chunk", key.kind),
                ));
            }
            let item = array.get(at + KEY_SIZE..).unwrap_or(&[]);
            let stripes = u16_at(item, 44)
                .ok_or_else(|| corrupt(where_, "sys_chunk_array chunk truncated"))?;
            let len = CHUNK_FIXED + usize::from(stripes) * STRIPE_SIZE;
            let data = slice(item, 0, len)
                .ok_or_else(|| corrupt(where_, "sys_chunk_array chunk truncated"))?;
            self.add(key.offset, data, devid, where_)?;
            at += KEY_SIZE + len;
        }
        Ok(())
    }

    /// The physical offset of `len` bytes at `logical`, which must lie in one chunk and on the device.
    pub fn map(&self, logical: u64, len: u64) -> Result<u64> {
        let (start, chunk) = self
            .chunks
            .range(..=logical)
            .next_back()
            .ok_or_else(|| corrupt(logical, "logical address is in no chunk"))?;
        let inside = logical - start;
        if inside.checked_add(len).is_none_or(|end| end > chunk.length) {
            return Err(corrupt(
                logical,
                format!(
                    "{len} bytes at logical address {logical:#x} leave the chunk at {start:#x} (length {:#x})",
                    chunk.length
                ),
            ));
        }
        let base = chunk.physical.clone().map_err(unsupported)?;
        let physical = base
            .checked_add(inside)
            .filter(|p| p.checked_add(len).is_some_and(|end| end <= self.dev_size))
            .ok_or_else(|| {
                corrupt(
                    logical,
                    format!(
                        "chunk at logical {start:#x} maps to physical {base:#x}, beyond the end of the {}-byte device",
                        self.dev_size
                    ),
                )
            })?;
        Ok(physical)
    }
}
