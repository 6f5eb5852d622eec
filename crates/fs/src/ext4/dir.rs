//! Directory entry blocks (`ext4_dir_entry_2`), shared by block directories and inline ones.
//!
//! Hashed (htree) directories are read linearly: their index blocks look like one empty entry
//! spanning the block, and every leaf block is an ordinary entry block. So a corrupt or looping
//! hash index cannot mislead or trap the reader; lookups cost a scan of the directory.

use std::ops::ControlFlow;

use super::raw::{byte, corrupt, le16, le32};
use crate::Result;

/// One live entry (inode number non-zero, not `.` or `..`).
pub(crate) struct RawEntry<'a> {
    pub ino: u32,
    pub name: &'a [u8],
    /// The type byte, 0 when the filesystem lacks the `filetype` feature.
    pub file_type: u8,
}

/// Parses the entries of one directory block (or inline region) `buf`, read from device
/// offset `at`, calling `f` on each live entry until it breaks.
pub(crate) fn parse_block(
    buf: &[u8],
    at: u64,
    filetype: bool,
    f: &mut dyn FnMut(RawEntry) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let mut pos = 0usize;
    while pos + 8 <= buf.len() {
        let here = at + pos as u64;
        let ino = le32(buf, pos);
        let rec_len = decode_rec_len(le16(buf, pos + 4), buf.len());
        let (name_len, file_type) = if filetype {
            (usize::from(byte(buf, pos + 6)), byte(buf, pos + 7))
        } else {
            (usize::from(le16(buf, pos + 6)), 0)
        };
        if rec_len < 8 || rec_len & 3 != 0 || rec_len > buf.len() - pos {
            return Err(corrupt(
                here,
                format!("directory entry: record length {rec_len} is invalid"),
            ));
        }
        if name_len > rec_len - 8 {
            return Err(corrupt(
                here,
                format!("directory entry: name length {name_len} exceeds its record ({rec_len})"),
            ));
        }
        let name = buf.get(pos + 8..pos + 8 + name_len).unwrap_or_default();
        if ino != 0 && name != b"." && name != b".." {
            if let ControlFlow::Break(()) = f(RawEntry {
                ino,
                name,
                file_type,
            }) {
                return Ok(ControlFlow::Break(()));
            }
        }
        pos += rec_len;
    }
    Ok(ControlFlow::Continue(()))
}

/// `rec_len` as stored; 64 KiB blocks encode a full-block record as 0 or 65535.
fn decode_rec_len(raw: u16, block_len: usize) -> usize {
    if block_len >= 65536 && (raw == 0 || raw == 0xFFFF) {
        65536
    } else {
        usize::from(raw)
    }
}
