//! Directory indexes ($I30), read here rather than through the crate's B-tree iterator: that
//! iterator follows subnode pointers without a depth bound, so one INDX record pointing at
//! itself loops forever and grows without limit. Instead every in-use INDX record of
//! $INDEX_ALLOCATION (per the $I30 $BITMAP) is read once, in order, with its fixups applied,
//! and the entries of all nodes are collected: a listing needs no B-tree order.

use crate::{Error, Result};

/// An index entry's key: the $FILE_NAME of one name of a file.
#[derive(Debug, Clone)]
pub(crate) struct Name {
    pub name: String,
    /// The MFT record number (the low 48 bits of the file reference).
    pub record: u64,
    /// $FILE_NAME file attribute flags (as last updated in the index).
    pub flags: u32,
    /// The reparse tag, when `flags` has FILE_ATTRIBUTE_REPARSE_POINT.
    pub reparse_tag: u32,
    pub namespace: u8,
}

pub(crate) const NAMESPACE_DOS: u8 = 2;
pub(crate) const ATTR_SYSTEM: u32 = 0x4;
pub(crate) const ATTR_REPARSE: u32 = 0x400;
pub(crate) const ATTR_DIRECTORY: u32 = 0x1000_0000;

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        fs: "ntfs",
        offset,
        what: what.into(),
    }
}

/// The index record size stated by an $INDEX_ROOT value.
pub(crate) fn root_record_size(root: &[u8]) -> Option<u32> {
    le32(root, 8)
}

/// Entries of the $INDEX_ROOT value (`at` is its device offset, for errors).
pub(crate) fn root_entries(root: &[u8], at: u64, out: &mut Vec<Name>) -> Result<()> {
    node_entries(root, 0x10, at, out)
}

/// Applies the update sequence fixups to a multi-sector record (INDX), in place.
pub(crate) fn fixup(rec: &mut [u8], at: u64) -> Result<()> {
    let bad = || corrupt(at, "INDX record: update sequence array");
    let ofs = usize::from(le16(rec, 4).ok_or_else(bad)?);
    let count = usize::from(le16(rec, 6).ok_or_else(bad)?);
    if count == 0 || (count - 1) * 512 > rec.len() {
        return Err(bad());
    }
    let usn: [u8; 2] = rec
        .get(ofs..ofs + 2)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    for i in 1..count {
        let fix: [u8; 2] = rec
            .get(ofs + 2 * i..ofs + 2 * i + 2)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        let end = i * 512;
        let slot = rec.get_mut(end - 2..end).ok_or_else(bad)?;
        if *slot != usn {
            return Err(corrupt(
                at + end as u64 - 2,
                "INDX record: torn sector (fixup mismatch)",
            ));
        }
        slot.copy_from_slice(&fix);
    }
    Ok(())
}

/// Entries of one INDX record (fixups already applied).
pub(crate) fn record_entries(rec: &[u8], at: u64, out: &mut Vec<Name>) -> Result<()> {
    if rec.get(..4) != Some(&b"INDX"[..]) {
        return Err(corrupt(at, "INDX record: bad signature"));
    }
    node_entries(rec, 0x18, at, out)
}

/// Parses the entries of an index node whose header sits at `node` in `buf`.
fn node_entries(buf: &[u8], node: usize, at: u64, out: &mut Vec<Name>) -> Result<()> {
    let bad = |off: usize, what: &str| corrupt(at + off as u64, format!("index node: {what}"));
    let first = le32(buf, node).ok_or_else(|| bad(node, "truncated header"))? as usize;
    let length = le32(buf, node + 4).ok_or_else(|| bad(node, "truncated header"))? as usize;
    let end = node.saturating_add(length).min(buf.len());
    let mut off = node.saturating_add(first);
    // Each step advances by at least 16 bytes, so the loop ends.
    loop {
        if off.saturating_add(16) > end {
            return Err(bad(off, "entries run past the node"));
        }
        let len = usize::from(le16(buf, off + 8).unwrap_or(0));
        let key_len = usize::from(le16(buf, off + 10).unwrap_or(0));
        let flags = le16(buf, off + 12).unwrap_or(0);
        if flags & 2 != 0 {
            return Ok(());
        }
        if len < 16 || off + len > end || 16 + key_len > len || key_len < 66 {
            return Err(bad(off, "entry length"));
        }
        let key = &buf[off + 16..off + 16 + key_len];
        let name_len = usize::from(key[64]);
        let units = key
            .get(66..66 + 2 * name_len)
            .ok_or_else(|| bad(off, "name runs past the key"))?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        let name: String = char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        out.push(Name {
            name,
            record: le64(buf, off).unwrap_or(0) & 0xFFFF_FFFF_FFFF,
            flags: le32(key, 56).unwrap_or(0),
            reparse_tag: le32(key, 60).unwrap_or(0),
            namespace: key[65],
        });
        off += len;
    }
}
