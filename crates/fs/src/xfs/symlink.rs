//! Symbolic link targets: inline in the data fork (local format) or in remote blocks mapped by
//! the extent list; on v5 filesystems each remote block starts with an `XSLM` header.

use super::bmap;
use super::bytes::{corrupt, Buf};
use super::inode::{Format, Inode};
use super::Volume;
use crate::Result;

const XSLM: u32 = 0x5853_4c4d;
const HDR_V5: usize = 56;
/// `XFS_SYMLINK_MAXLEN`: Linux's PATH_MAX less the NUL.
const MAX_LEN: u64 = 1024;

pub(super) fn target(vol: &Volume, link: &Inode) -> Result<Vec<u8>> {
    if link.size == 0 || link.size > MAX_LEN {
        return Err(corrupt(link.offset, "symlink length"));
    }
    let len = link.size as usize;
    match link.data.format {
        Format::Local => Ok(link.data.buf().slice(0, len, "inline symlink")?.to_vec()),
        Format::Extents | Format::Btree => remote(vol, link, len),
        _ => Err(corrupt(link.offset, "symlink fork format")),
    }
}

/// Remote target: extent after extent from logical block 0; on v5 each extent (one buffer to the
/// kernel, however many blocks) starts with a header.
fn remote(vol: &Volume, link: &Inode, len: usize) -> Result<Vec<u8>> {
    let map = bmap::extents(vol, &link.data, link.ino)?;
    let bs = u64::from(vol.sb.block_size);
    let hdr = if vol.sb.v5 { HDR_V5 } else { 0 };
    let mut out = Vec::with_capacity(len);
    let mut next_block = 0;
    for e in &map {
        if out.len() >= len {
            break;
        }
        if e.file_block != next_block || e.unwritten {
            return Err(corrupt(
                link.data.offset,
                "remote symlink blocks not contiguous",
            ));
        }
        let offset = vol.fsb_offset(e.fs_block, "symlink block")?;
        let want = (hdr + len - out.len()) as u64;
        let raw = vol.read(offset, e.len.saturating_mul(bs).min(want) as usize)?;
        let b = Buf::new(&raw, offset);
        if vol.sb.v5 && b.u32(0, "symlink block magic")? != XSLM {
            return Err(corrupt(offset, "remote symlink block: bad magic"));
        }
        let take = (len - out.len()).min(raw.len().saturating_sub(hdr));
        out.extend_from_slice(b.slice(hdr, take, "symlink data")?);
        next_block = e.file_block + e.len;
    }
    if out.len() < len {
        return Err(corrupt(link.offset, "symlink target shorter than its size"));
    }
    Ok(out)
}
