//! Bounds-checked little-endian field access and small helpers shared by the parsers.
//!
//! Every accessor returns 0 / empty for a field past the end of the buffer instead of panicking;
//! callers size their buffers so that this never happens for valid structures, and the checks
//! on the decoded values reject what a short buffer would produce.

use std::sync::Arc;

use porthole_image::BlockDevice;

use crate::error::{Error, Result};

/// A shareable block device: what partitions and logical volumes are built on.
pub type Dev = Arc<dyn BlockDevice>;

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    field::<4>(b, at).map_or(0, u32::from_le_bytes)
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    field::<8>(b, at).map_or(0, u64::from_le_bytes)
}

pub(crate) fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Reads `len` bytes at `offset`, refusing reads past the end as [`Error::Device`].
pub(crate) fn read_at(dev: &dyn BlockDevice, offset: u64, len: usize) -> Result<Vec<u8>> {
    porthole_image::check_range(offset, len, dev.size())?;
    let mut buf = vec![0u8; len];
    dev.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// `a * b` or a [`Error::Corrupt`] naming the overflowing quantity.
pub(crate) fn mul(layer: &'static str, offset: u64, a: u64, b: u64, what: &str) -> Result<u64> {
    a.checked_mul(b)
        .ok_or_else(|| Error::corrupt(layer, offset, format!("{what} overflows")))
}

/// The reflected CRC-32 (IEEE polynomial) state update with no pre/post inversion, as LVM uses it
/// with its own seed. GPT's CRC is the usual inverted form, `crc32fast::hash`.
pub(crate) fn crc32_raw(seed: u32, data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(!seed);
    hasher.update(data);
    !hasher.finalize()
}
