//! The read loop shared by the sparse formats: a format maps a virtual offset to a piece (where
//! its bytes come from, and for how many bytes), and this loop fills the buffer piece by piece.

use std::sync::Arc;

use crate::bytes::{corrupt, read_file};
use crate::open::read_backing;
use crate::{BlockDevice, Result};

/// Where the bytes at a virtual offset come from.
pub(crate) enum Piece {
    /// Stored uncompressed at this offset of the container file.
    Data(u64),
    /// Reads as zeros.
    Zero,
    /// Not allocated here: the backing image's bytes, or zeros without one.
    Backing,
    /// A decoded (decompressed) block from the cache, starting at this index.
    Decoded(Arc<[u8]>, usize),
}

/// Fills `buf` with the bytes at virtual `offset`, asking `map` for each piece. `backing` is
/// the parent device and the virtual offset of this extent within it.
pub(crate) fn read_mapped(
    buf: &mut [u8],
    offset: u64,
    format: &'static str,
    file: &dyn BlockDevice,
    backing: (Option<&dyn BlockDevice>, u64),
    mut map: impl FnMut(u64) -> Result<(Piece, u64)>,
) -> Result<()> {
    let mut pos = 0usize;
    while pos < buf.len() {
        let at = offset + pos as u64;
        let (piece, run) = map(at)?;
        if run == 0 {
            return Err(corrupt(format, at, "mapping yields an empty run"));
        }
        let n = usize::try_from(run)
            .unwrap_or(usize::MAX)
            .min(buf.len() - pos);
        let dst = &mut buf[pos..pos + n];
        match piece {
            Piece::Data(host) => read_file(file, format, dst, host, "data cluster")?,
            Piece::Zero => dst.fill(0),
            Piece::Backing => read_backing(backing.0, dst, backing.1 + at)?,
            Piece::Decoded(block, start) => {
                let src = block
                    .get(start..start.saturating_add(n))
                    .ok_or_else(|| corrupt(format, at, "decoded block shorter than its mapping"))?;
                dst.copy_from_slice(src);
            }
        }
        pos += n;
    }
    Ok(())
}
