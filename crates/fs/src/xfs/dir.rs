//! Directories, in every on-disk form:
//!
//! - short form: entries packed in the inode's data fork (`xfs_dir2_sf_hdr` + entries);
//! - block, leaf, node and B+tree directories: all keep their entries in *data blocks* in the
//!   first 32 GiB of the directory's logical space, found through the block map (extent list
//!   or bmbt). The leaf and node (hash index) and free-space blocks above that offset are only
//!   lookup accelerators, so they are not read: listing walks the data blocks, and lookups
//!   search the listing. This makes a hostile hash tree (say, a node pointing at itself)
//!   irrelevant rather than something to defend against.

use super::bmap::{self, Extent};
use super::bytes::{corrupt, Buf};
use super::inode::{Format, Inode};
use super::Volume;
use crate::{Error, FileType, Result};

const XD2B: u32 = 0x5844_3242; // v4 single-block directory
const XD2D: u32 = 0x5844_3244; // v4 data block of a leaf/node directory
const XDB3: u32 = 0x5844_4233; // v5 single-block directory
const XDD3: u32 = 0x5844_4433; // v5 data block
const HDR_V4: usize = 16;
const HDR_V5: usize = 64;
/// Where the leaf (hash index) blocks start in a directory's logical space.
const LEAF_OFFSET: u64 = 32 << 30;
/// Entries in one directory.
pub(super) const MAX_ENTRIES: usize = 1 << 20;
/// Bytes of directory data blocks read for one listing.
const MAX_DIR_BYTES: u64 = 256 << 20;

/// A directory entry as stored; `file_type` is `Unknown` on filesystems without ftype.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub file_type: FileType,
}

fn too_many() -> Error {
    Error::LimitExceeded {
        fs: super::bytes::FS,
        what: "directory entries",
        limit: MAX_ENTRIES as u64,
    }
}

/// The `XFS_DIR3_FT_*` file type byte.
fn ftype(v: u8) -> FileType {
    match v {
        1 => FileType::Regular,
        2 => FileType::Directory,
        3 => FileType::CharDevice,
        4 => FileType::BlockDevice,
        5 => FileType::Fifo,
        6 => FileType::Socket,
        7 => FileType::Symlink,
        _ => FileType::Unknown,
    }
}

/// Every entry of directory `dir` except `.` and `..`.
pub(super) fn list(vol: &Volume, dir: &Inode) -> Result<Vec<Entry>> {
    match dir.data.format {
        Format::Local => short_form(vol, dir),
        Format::Extents | Format::Btree => {
            let map = bmap::extents(vol, &dir.data, dir.ino)?;
            data_blocks(vol, &map)
        }
        _ => Err(corrupt(
            dir.offset,
            "directory with a device or unknown fork format",
        )),
    }
}

/// Short form: count, i8count, parent (4 or 8 bytes), then per entry namelen, a 2-byte offset
/// tag, the name, the ftype byte (if enabled) and the inode number (4 or 8 bytes).
fn short_form(vol: &Volume, dir: &Inode) -> Result<Vec<Entry>> {
    let size = usize::try_from(dir.size).unwrap_or(usize::MAX);
    if size > dir.data.data.len() {
        return Err(corrupt(
            dir.offset,
            "short-form directory larger than its fork",
        ));
    }
    let b = dir.data.buf().sub(0, size, "short-form directory")?;
    let count = usize::from(b.u8(0, "sf count")?);
    let wide = b.u8(1, "sf i8count")? != 0;
    let ino_len = if wide { 8 } else { 4 };
    let mut at = 2 + ino_len;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let namelen = usize::from(b.u8(at, "sf entry name length")?);
        if namelen == 0 {
            return Err(corrupt(b.at(at), "short-form entry with an empty name"));
        }
        let name = b.slice(at + 3, namelen, "sf entry name")?.to_vec();
        let mut p = at + 3 + namelen;
        let file_type = if vol.sb.ftype {
            p += 1;
            ftype(b.u8(p - 1, "sf entry ftype")?)
        } else {
            FileType::Unknown
        };
        let ino = if wide {
            b.u64(p, "sf entry inode")?
        } else {
            b.u32(p, "sf entry inode")?.into()
        };
        at = p + ino_len;
        out.push(Entry {
            name,
            ino,
            file_type,
        });
    }
    Ok(out)
}

/// Reads every directory data block below [`LEAF_OFFSET`] that the map covers.
fn data_blocks(vol: &Volume, map: &[Extent]) -> Result<Vec<Entry>> {
    let bs = u64::from(vol.sb.block_size);
    let dbs = u64::from(vol.sb.dir_block_size);
    let per_dir_block = dbs / bs;
    let leaf_block = LEAF_OFFSET / bs;
    let mut out = Vec::new();
    let mut raw = vec![0u8; dbs as usize];
    let mut read = 0u64;
    let mut next = 0u64; // first directory block not yet read
    for e in map {
        if e.file_block >= leaf_block {
            break;
        }
        let last = (e.file_block + e.len).min(leaf_block) - 1;
        let first = (e.file_block / per_dir_block).max(next);
        for db in first..=last / per_dir_block {
            read += dbs;
            if read > MAX_DIR_BYTES {
                return Err(Error::LimitExceeded {
                    fs: super::bytes::FS,
                    what: "directory bytes",
                    limit: MAX_DIR_BYTES,
                });
            }
            let pos = db * dbs;
            bmap::read_mapped(vol, map, pos, &mut raw)?;
            let base = map_offset(vol, map, pos / bs);
            data_block(vol, Buf::new(&raw, base), &mut out)?;
            next = db + 1;
        }
    }
    Ok(out)
}

/// Device offset of logical block `block` (for error messages only; 0 if unmapped).
fn map_offset(vol: &Volume, map: &[Extent], block: u64) -> u64 {
    map.iter()
        .find(|e| block >= e.file_block && block - e.file_block < e.len)
        .and_then(|e| vol.sb.fsb_offset(e.fs_block + (block - e.file_block)))
        .unwrap_or(0)
}

/// One data block: a header, then entries and free regions tiling it up to the end (or, in a
/// single-block directory, up to the leaf array and tail at its end).
fn data_block(vol: &Volume, b: Buf<'_>, out: &mut Vec<Entry>) -> Result<()> {
    let magic = b.u32(0, "directory block magic")?;
    let (hdr, single) = match (vol.sb.v5, magic) {
        (false, XD2B) => (HDR_V4, true),
        (false, XD2D) => (HDR_V4, false),
        (true, XDB3) => (HDR_V5, true),
        (true, XDD3) => (HDR_V5, false),
        _ => return Err(corrupt(b.base, "directory data block: bad magic")),
    };
    let end = if single {
        // Tail: leaf count and stale count; the leaf entries (8 bytes each) precede it.
        let tail = b.len() - 8;
        let count = b.u32(tail, "block tail count")? as usize;
        tail.checked_sub(count.saturating_mul(8))
            .filter(|&e| e >= hdr)
            .ok_or_else(|| corrupt(b.at(tail), "block directory leaf count"))?
    } else {
        b.len()
    };
    let mut at = hdr;
    while at < end {
        at += entry(vol, b, at, end, out)?;
    }
    Ok(())
}

/// Decodes the entry or free region at `at`; returns its length.
fn entry(vol: &Volume, b: Buf<'_>, at: usize, end: usize, out: &mut Vec<Entry>) -> Result<usize> {
    if b.u16(at, "directory entry")? == 0xffff {
        let len = usize::from(b.u16(at + 2, "free region length")?);
        if len < 8 || len % 8 != 0 || at + len > end {
            return Err(corrupt(b.at(at), "directory free region length"));
        }
        return Ok(len);
    }
    let ino = b.u64(at, "entry inode")?;
    let namelen = usize::from(b.u8(at + 8, "entry name length")?);
    let extra = usize::from(vol.sb.ftype);
    // inode, namelen, name, ftype, 2-byte tag, rounded up to 8.
    let len = (8 + 1 + namelen + extra + 2 + 7) & !7;
    if namelen == 0 || at + len > end {
        return Err(corrupt(
            b.at(at + 8),
            "directory entry name length runs past the block",
        ));
    }
    let name = b.slice(at + 9, namelen, "entry name")?;
    if name != b"." && name != b".." {
        if out.len() >= MAX_ENTRIES {
            return Err(too_many());
        }
        let file_type = if vol.sb.ftype {
            ftype(b.u8(at + 9 + namelen, "entry ftype")?)
        } else {
            FileType::Unknown
        };
        out.push(Entry {
            name: name.to_vec(),
            ino,
            file_type,
        });
    }
    Ok(len)
}
