//! Block maps: a fork's extent list, stored inline (`XFS_DINODE_FMT_EXTENTS`) or in a B+tree
//! (`XFS_DINODE_FMT_BTREE`, the bmbt) rooted in the inode, and reads of a logical byte range
//! through it. Holes and unwritten (preallocated) extents read as zeros.
//!
//! The tree walk cannot loop: a child must carry exactly its parent's level minus one, so the
//! depth is bounded by the root's level, and the number of blocks visited and extents
//! collected is capped, so a tree whose pointers repeat a subtree cannot multiply the work.

use super::bytes::{corrupt, Buf};
use super::inode::{Fork, Format};
use super::Volume;
use crate::{Error, Result};

const BMAP_MAGIC: u32 = 0x424d_4150; // "BMAP", v4
const BMA3_MAGIC: u32 = 0x424d_4133; // "BMA3", v5
const HDR_V4: usize = 24;
const HDR_V5: usize = 72;
/// The bmbt is at most 9 levels deep even for 2^63-byte files of 512-byte blocks.
const MAX_LEVEL: u16 = 9;
/// Extents collected for one fork (32 bytes each: 16 MiB at most).
pub(super) const MAX_EXTENTS: usize = 1 << 19;
/// bmbt blocks visited for one fork.
const MAX_TREE_BLOCKS: usize = 1 << 16;

/// One mapping of `len` filesystem blocks at logical block `file_block` to `fs_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub file_block: u64,
    pub fs_block: u64,
    pub len: u64,
    /// Allocated but never written: reads as zeros.
    pub unwritten: bool,
}

/// Decodes a packed 128-bit `xfs_bmbt_rec`: flag:1 | startoff:54 | startblock:52 | count:21.
fn decode(rec: u128) -> Extent {
    Extent {
        unwritten: rec >> 127 != 0,
        file_block: ((rec >> 73) & ((1 << 54) - 1)) as u64,
        fs_block: ((rec >> 21) & ((1 << 52) - 1)) as u64,
        len: (rec & ((1 << 21) - 1)) as u64,
    }
}

fn limit(what: &'static str, limit: usize) -> Error {
    Error::LimitExceeded {
        fs: super::bytes::FS,
        what,
        limit: limit as u64,
    }
}

/// Every extent of `fork`, sorted by logical block. `owner` is the inode number (checked against
/// v5 bmbt block headers).
pub(super) fn extents(vol: &Volume, fork: &Fork, owner: u64) -> Result<Vec<Extent>> {
    let mut out = Vec::new();
    match fork.format {
        Format::Extents => {
            let n = usize::try_from(fork.nextents).unwrap_or(usize::MAX);
            if n.saturating_mul(16) > fork.data.len() {
                return Err(corrupt(fork.offset, "extent count exceeds the inode fork"));
            }
            push_records(&mut out, fork.buf(), 0, n)?;
        }
        Format::Btree => walk_root(vol, fork, owner, &mut out)?,
        Format::Local | Format::Dev => {}
        Format::Other(n) => return Err(corrupt(fork.offset, format!("fork format {n}"))),
    }
    out.sort_by_key(|e| e.file_block);
    Ok(out)
}

fn push_records(out: &mut Vec<Extent>, b: Buf<'_>, at: usize, n: usize) -> Result<()> {
    for i in 0..n {
        if out.len() >= MAX_EXTENTS {
            return Err(limit("extent count", MAX_EXTENTS));
        }
        let rec = decode(b.u128(at + i * 16, "extent record")?);
        if rec.len > 0 {
            out.push(rec);
        }
    }
    Ok(())
}

/// The root in the inode (`xfs_bmdr_block`): level, numrecs, then keys and pointers, each array
/// sized for as many records as the fork could hold.
fn walk_root(vol: &Volume, fork: &Fork, owner: u64, out: &mut Vec<Extent>) -> Result<()> {
    let b = fork.buf();
    let level = b.u16(0, "bmbt root level")?;
    let numrecs = usize::from(b.u16(2, "bmbt root numrecs")?);
    let maxrecs = fork.data.len().saturating_sub(4) / 16;
    if level == 0 || level > MAX_LEVEL || numrecs > maxrecs {
        return Err(corrupt(fork.offset, "bmbt root level or record count"));
    }
    let mut budget = MAX_TREE_BLOCKS;
    for i in 0..numrecs {
        let ptr = b.u64(4 + maxrecs * 8 + i * 8, "bmbt root pointer")?;
        walk_block(vol, ptr, level - 1, owner, &mut budget, out)?;
    }
    Ok(())
}

fn walk_block(
    vol: &Volume,
    fsb: u64,
    level: u16,
    owner: u64,
    budget: &mut usize,
    out: &mut Vec<Extent>,
) -> Result<()> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| limit("bmbt blocks visited", MAX_TREE_BLOCKS))?;
    let offset = vol.fsb_offset(fsb, "bmbt block pointer")?;
    let raw = vol.read(offset, vol.sb.block_size as usize)?;
    let b = Buf::new(&raw, offset);
    let (magic, hdr) = if vol.sb.v5 {
        (BMA3_MAGIC, HDR_V5)
    } else {
        (BMAP_MAGIC, HDR_V4)
    };
    if b.u32(0, "bmbt magic")? != magic {
        return Err(corrupt(offset, "bmbt block: bad magic"));
    }
    if b.u16(4, "bmbt level")? != level {
        return Err(corrupt(
            b.at(4),
            "bmbt block: level is not its parent's minus one",
        ));
    }
    if vol.sb.v5 && b.u64(56, "bmbt owner")? != owner {
        return Err(corrupt(b.at(56), "bmbt block: belongs to another inode"));
    }
    let numrecs = usize::from(b.u16(6, "bmbt numrecs")?);
    let maxrecs = (b.len() - hdr) / 16;
    if numrecs > maxrecs {
        return Err(corrupt(b.at(6), "bmbt block: record count"));
    }
    if level == 0 {
        return push_records(out, b, hdr, numrecs);
    }
    for i in 0..numrecs {
        let ptr = b.u64(hdr + maxrecs * 8 + i * 8, "bmbt pointer")?;
        walk_block(vol, ptr, level - 1, owner, budget, out)?;
    }
    Ok(())
}

/// The extent holding logical block `block`, or the index of the next one (a hole before it).
fn find(extents: &[Extent], block: u64) -> std::result::Result<&Extent, usize> {
    let i = extents.partition_point(|e| e.file_block <= block);
    match i.checked_sub(1).and_then(|j| extents.get(j)) {
        Some(e) if block - e.file_block < e.len => Ok(e),
        _ => Err(i),
    }
}

/// Fills `buf` with the fork's bytes at logical byte `pos`: holes and unwritten extents as zeros.
pub(super) fn read_mapped(
    vol: &Volume,
    extents: &[Extent],
    pos: u64,
    buf: &mut [u8],
) -> Result<()> {
    let bs = u64::from(vol.sb.block_size);
    let mut done = 0usize;
    while done < buf.len() {
        let at = pos.saturating_add(done as u64);
        let block = at / bs;
        let in_block = at % bs;
        let rest = buf.len() - done;
        // How many bytes this step covers, and from where.
        let (len, source) = match find(extents, block) {
            Ok(e) => {
                let avail = (e.file_block + e.len - block).saturating_mul(bs) - in_block;
                let src = (!e.unwritten).then(|| e.fs_block + (block - e.file_block));
                (avail, src)
            }
            Err(next) => {
                let hole_end = extents.get(next).map_or(u64::MAX, |e| e.file_block);
                ((hole_end - block).saturating_mul(bs) - in_block, None)
            }
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(rest);
        let dst = &mut buf[done..done + len];
        match source {
            Some(fsb) => {
                let offset = vol.fsb_offset(fsb, "extent start block")? + in_block;
                vol.read_into(dst, offset)?;
            }
            None => dst.fill(0),
        }
        done += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_records_unpack() {
        let rec: u128 = (1 << 127) | (5u128 << 73) | (0x1234u128 << 21) | 7;
        assert_eq!(
            decode(rec),
            Extent {
                file_block: 5,
                fs_block: 0x1234,
                len: 7,
                unwritten: true
            }
        );
    }

    #[test]
    fn find_reports_holes() {
        let e = |file_block, len| Extent {
            file_block,
            fs_block: 100,
            len,
            unwritten: false,
        };
        let map = [e(2, 2), e(10, 1)];
        assert_eq!(find(&map, 0), Err(0));
        assert_eq!(find(&map, 3).map(|x| x.file_block), Ok(2));
        assert_eq!(find(&map, 4), Err(1));
        assert_eq!(find(&map, 11), Err(2));
    }
}
