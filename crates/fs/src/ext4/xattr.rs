//! Extended attributes: in the inode's extra space and in one separate block (`i_file_acl`).
//! Inline data's continuation (`system.data`) is also stored here.

use super::raw::{byte, corrupt, le16, le32};
use crate::Result;

const MAGIC: u32 = 0xEA02_0000;
/// Header of an xattr block; entries follow it.
const BLOCK_HEADER: usize = 32;
const ENTRY_HEADER: usize = 16;

/// A name and value, with the name's namespace prefix restored.
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

/// The namespace prefix of a name index (`e_name_index`), as the kernel prints it.
fn prefix(index: u8) -> Option<&'static [u8]> {
    Some(match index {
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        7 => b"system.",
        8 => b"system.richacl",
        _ => return None,
    })
}

/// Attributes in an inode's extra area `area` (at device offset `at`); none without the magic.
pub(crate) fn in_inode(area: &[u8], at: u64) -> Result<Vec<Xattr>> {
    if area.len() < 4 || le32(area, 0) != MAGIC {
        return Ok(Vec::new());
    }
    // Entries start after the magic; value offsets count from the first entry.
    let body = area.get(4..).unwrap_or_default();
    parse(body, 0, at + 4)
}

/// Attributes in an xattr block `block` (at device offset `at`).
pub(crate) fn in_block(block: &[u8], at: u64) -> Result<Vec<Xattr>> {
    if le32(block, 0) != MAGIC || le32(block, 8) != 1 {
        return Err(corrupt(
            at,
            "extended attribute block: bad magic or block count",
        ));
    }
    parse(block, BLOCK_HEADER, at)
}

/// Parses entries from `start` of `region` until the 4-byte zero terminator; values are at
/// offsets from the region's start. Entries whose value lives in another inode (`ea_inode`)
/// and unknown namespaces are skipped.
fn parse(region: &[u8], start: usize, at: u64) -> Result<Vec<Xattr>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos + ENTRY_HEADER <= region.len() && le32(region, pos) != 0 {
        let here = at + pos as u64;
        let name_len = usize::from(byte(region, pos));
        let index = byte(region, pos + 1);
        let value_offs = usize::from(le16(region, pos + 2));
        let value_inum = le32(region, pos + 4);
        let value_size = le32(region, pos + 8) as usize;
        let name = region
            .get(pos + ENTRY_HEADER..pos + ENTRY_HEADER + name_len)
            .ok_or_else(|| corrupt(here, "extended attribute name runs past its area"))?;
        if value_inum == 0 {
            let value = value_offs
                .checked_add(value_size)
                .and_then(|end| region.get(value_offs..end))
                .ok_or_else(|| corrupt(here, "extended attribute value runs past its area"))?;
            if let Some(prefix) = prefix(index) {
                out.push(([prefix, name].concat(), value.to_vec()));
            }
        }
        pos += (ENTRY_HEADER + name_len).next_multiple_of(4);
    }
    Ok(out)
}
