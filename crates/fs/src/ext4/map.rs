//! Logical-to-physical block mapping: ext4 extent trees and ext2/3 indirect block maps.
//!
//! A lookup returns a [`Run`]: how many blocks from the asked one are contiguous on disk, or
//! read as zeros (holes and uninitialized extents). Readers then move a whole run per device
//! read instead of mapping block by block.

use porthole_image::BlockDevice;

use super::inode::Inode;
use super::raw::{corrupt, le16, le32, read};
use super::superblock::Superblock;
use crate::Result;

const EXTENT_MAGIC: u16 = 0xF30A;
/// The kernel never builds extent trees deeper than this.
const MAX_EXTENT_DEPTH: u16 = 5;
/// An `ee_len` above this marks an uninitialized extent (reads as zeros).
const EXT_INIT_MAX_LEN: u16 = 32768;
/// Number of direct block pointers in an indirect block map.
const DIRECT: u64 = 12;

/// A stretch of a file starting at the block asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// `len` blocks stored contiguously from physical block `phys`.
    Mapped { phys: u64, len: u64 },
    /// `len` blocks that read as zeros.
    Zero { len: u64 },
}

/// Maps logical block `lblk` of `inode`.
pub(crate) fn map(dev: &dyn BlockDevice, sb: &Superblock, inode: &Inode, lblk: u64) -> Result<Run> {
    let run = if inode.has_extents() {
        extent_lookup(dev, sb, inode, lblk)?
    } else {
        blockmap_lookup(dev, sb, inode, lblk)?
    };
    if let Run::Mapped { phys, len } = run {
        if !matches!(phys.checked_add(len), Some(end) if end <= sb.blocks_count) {
            return Err(corrupt(
                inode.offset,
                format!(
                    "inode {}: logical block {lblk} maps to blocks {phys}+{len}, beyond the \
                     filesystem's {} blocks",
                    inode.ino, sb.blocks_count
                ),
            ));
        }
    }
    Ok(run)
}

/// One 12-byte extent tree entry: the first logical block it covers and the rest.
fn entry(node: &[u8], i: usize) -> &[u8] {
    let at = 12 + 12 * i;
    node.get(at..at + 12).unwrap_or_default()
}

/// Walks the extent tree from the root in `i_block`. Each child must sit exactly one level
/// below its parent, so the walk ends after at most [`MAX_EXTENT_DEPTH`] reads even when a
/// crafted index points back at itself or an ancestor.
fn extent_lookup(dev: &dyn BlockDevice, sb: &Superblock, inode: &Inode, lblk: u64) -> Result<Run> {
    let Ok(target) = u32::try_from(lblk) else {
        return Ok(Run::Zero { len: u64::MAX });
    };
    let mut node = inode.i_block().to_vec();
    let mut node_at = inode.i_block_offset();
    let mut want_depth = None;
    // Exclusive end of the logical range the current node covers, from its parent's index.
    let mut end = 1u64 << 32;
    loop {
        let (count, depth) = check_node(&node, node_at, want_depth)?;
        let starts = (0..count).map(|i| u64::from(le32(entry(&node, i), 0)));
        let found = starts.clone().rposition(|start| start <= u64::from(target));
        let next_start = |i: Option<usize>| {
            let next = i.map_or(0, |i| i + 1);
            starts.clone().nth(next).unwrap_or(end).min(end)
        };
        if depth == 0 {
            let hole = || Run::Zero {
                len: next_start(found).saturating_sub(lblk).max(1),
            };
            let Some(i) = found else {
                return Ok(hole());
            };
            let e = entry(&node, i);
            let (start, raw_len) = (u64::from(le32(e, 0)), le16(e, 4));
            let (len, uninit) = if raw_len > EXT_INIT_MAX_LEN {
                (raw_len - EXT_INIT_MAX_LEN, true)
            } else {
                (raw_len, false)
            };
            let covered = start + u64::from(len);
            if lblk >= covered {
                return Ok(hole());
            }
            let len = covered - lblk;
            if uninit {
                return Ok(Run::Zero { len });
            }
            let phys = (u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8))) + (lblk - start);
            return Ok(Run::Mapped { phys, len });
        }
        let Some(i) = found else {
            return Ok(Run::Zero {
                len: next_start(None).saturating_sub(lblk).max(1),
            });
        };
        end = next_start(found);
        let e = entry(&node, i);
        let child = u64::from(le16(e, 8)) << 32 | u64::from(le32(e, 4));
        if child >= sb.blocks_count {
            return Err(corrupt(
                node_at,
                format!(
                    "inode {}: extent index points at block {child}, beyond the filesystem",
                    inode.ino
                ),
            ));
        }
        node_at = child * sb.block_size;
        node = read(dev, node_at, block_len(sb), "extent tree node")?;
        want_depth = Some(depth - 1);
    }
}

/// Checks an extent node's header; returns its entry count and depth.
fn check_node(node: &[u8], at: u64, want_depth: Option<u16>) -> Result<(usize, u16)> {
    if le16(node, 0) != EXTENT_MAGIC {
        return Err(corrupt(at, "extent tree node: bad magic"));
    }
    let (count, max, depth) = (le16(node, 2), le16(node, 4), le16(node, 6));
    let capacity = node.len().saturating_sub(12) / 12;
    if count > max || usize::from(max) > capacity {
        return Err(corrupt(
            at,
            format!("extent tree node: {count} entries of {max}, room for {capacity}"),
        ));
    }
    match want_depth {
        Some(want) if depth != want => Err(corrupt(
            at,
            format!("extent tree node at depth {depth}, its parent expects {want} (a loop?)"),
        )),
        None if depth > MAX_EXTENT_DEPTH => Err(corrupt(
            at,
            format!("extent tree depth {depth} exceeds {MAX_EXTENT_DEPTH}"),
        )),
        _ => Ok((usize::from(count), depth)),
    }
}

fn block_len(sb: &Superblock) -> usize {
    // At most 64 KiB: the superblock refuses larger blocks.
    usize::try_from(sb.block_size).unwrap_or(65536)
}

/// Walks an ext2/3 block map: 12 direct pointers, then single, double and triple indirect
/// blocks. At most three pointer blocks are read per lookup.
fn blockmap_lookup(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    inode: &Inode,
    lblk: u64,
) -> Result<Run> {
    let i_block = inode.i_block();
    if lblk < DIRECT {
        return Ok(run_in(&i_block[..48.min(i_block.len())], lblk as usize));
    }
    let per_block = sb.block_size / 4;
    let mut rel = lblk - DIRECT;
    let mut cover = 1u64;
    for slot in 12..15 {
        cover = cover.saturating_mul(per_block);
        if rel < cover {
            let ptr = le32(i_block, slot * 4);
            return walk_indirect(dev, sb, (ptr, inode.i_block_offset()), rel, cover);
        }
        rel -= cover;
    }
    Ok(Run::Zero { len: u64::MAX })
}

/// Descends from the indirect block `ptr` (found in the block at `from`), which covers
/// `cover` logical blocks, to the pointer for block `rel` of that range.
fn walk_indirect(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    (mut ptr, mut from): (u32, u64),
    mut rel: u64,
    mut cover: u64,
) -> Result<Run> {
    let per_block = sb.block_size / 4;
    loop {
        if ptr == 0 {
            return Ok(Run::Zero { len: cover - rel });
        }
        if u64::from(ptr) >= sb.blocks_count {
            return Err(corrupt(
                from,
                format!("indirect block pointer {ptr} beyond the filesystem"),
            ));
        }
        let at = u64::from(ptr) * sb.block_size;
        let block = read(dev, at, block_len(sb), "indirect block")?;
        let sub = cover / per_block;
        let index = (rel / sub) as usize;
        if sub == 1 {
            return Ok(run_in(&block, index));
        }
        (ptr, from, rel, cover) = (le32(&block, index * 4), at, rel % sub, sub);
    }
}

/// The run starting at pointer `index` of a pointer array: consecutive zero pointers form a
/// hole, consecutive ascending block numbers a mapped run.
fn run_in(pointers: &[u8], index: usize) -> Run {
    let ptr = |i: usize| le32(pointers, i * 4);
    let count = pointers.len() / 4;
    let first = ptr(index);
    let len = (index..count)
        .take_while(|&i| {
            let p = ptr(i);
            if first == 0 {
                p == 0
            } else {
                u64::from(p) == u64::from(first) + (i - index) as u64
            }
        })
        .count()
        .max(1) as u64;
    if first == 0 {
        Run::Zero { len }
    } else {
        Run::Mapped {
            phys: u64::from(first),
            len,
        }
    }
}
