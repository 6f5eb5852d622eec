//! Bounds-checked little-endian field access and device reads for the ext4 reader.
//!
//! Field accessors return 0 for a field past the end of the buffer instead of panicking; every
//! structure is read into a buffer of its full size first, so that only happens on inputs the
//! callers have already rejected.

use porthole_image::BlockDevice;

use crate::{Error, Result};

pub(crate) const FS: &str = "ext4";

pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    field::<2>(b, at).map_or(0, u16::from_le_bytes)
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    field::<4>(b, at).map_or(0, u32::from_le_bytes)
}

pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// A [`Error::Corrupt`] for the ext4 structure at `offset`.
pub(crate) fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        fs: FS,
        offset,
        what: what.into(),
    }
}

/// Fills `buf` from `offset`; a read past the end of the device is reported as a corrupt
/// `what` (a structure that points outside its own filesystem), not as a bare device error.
pub(crate) fn read_into(
    dev: &dyn BlockDevice,
    offset: u64,
    buf: &mut [u8],
    what: &str,
) -> Result<()> {
    let size = dev.size();
    if porthole_image::check_range(offset, buf.len(), size).is_err() {
        return Err(corrupt(
            offset,
            format!(
                "{what} ({} bytes) lies beyond the end of the {size}-byte device",
                buf.len()
            ),
        ));
    }
    dev.read_exact_at(buf, offset)?;
    Ok(())
}

/// Reads `len` bytes at `offset`; callers bound `len` (at most one block, 64 KiB).
pub(crate) fn read(dev: &dyn BlockDevice, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    read_into(dev, offset, &mut buf, what)?;
    Ok(buf)
}
