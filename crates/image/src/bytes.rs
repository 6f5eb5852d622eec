//! Bounds-checked field access and metadata reads shared by the format readers.

use crate::{BlockDevice, Error, Result};

/// Little-endian `u16` at `at`, or 0 when `b` is too short (callers size-check first).
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(arr(b, at))
}
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(arr(b, at))
}
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(b, at))
}
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(arr(b, at))
}
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(arr(b, at))
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b.get(at..at.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

/// Largest metadata structure read in one piece (a qcow2 L2 table of 2 MiB clusters, a VMDK
/// descriptor, a VHDX region); nothing a header claims is read in bigger pieces.
pub(crate) const MAX_META: u64 = 2 << 20;

/// Reads `len` bytes of metadata at `offset` of `file`; a read past the end of the file is
/// reported as corruption of `what` in `format`.
pub(crate) fn read_meta(
    file: &dyn BlockDevice,
    format: &'static str,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>> {
    if len > MAX_META {
        return Err(corrupt(
            format,
            offset,
            format!("{what}: {len} bytes is too large"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    read_file(file, format, &mut buf, offset, what)?;
    Ok(buf)
}

/// Reads from a container file, turning "past the end" into a `Corrupt` error that names
/// the structure.
pub(crate) fn read_file(
    file: &dyn BlockDevice,
    format: &'static str,
    buf: &mut [u8],
    offset: u64,
    what: &str,
) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| match e {
        Error::OutOfRange { size, .. } => corrupt(
            format,
            offset,
            format!(
                "{what} ({} bytes) extends past the end of the {size}-byte file",
                buf.len()
            ),
        ),
        e => e,
    })
}

pub(crate) fn corrupt(format: &'static str, offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        format,
        offset,
        what: what.into(),
    }
}

pub(crate) fn unsupported(format: &'static str, what: impl Into<String>) -> Error {
    Error::Unsupported {
        format,
        what: what.into(),
    }
}

/// Decodes NUL-terminated (or full-length) UTF-16LE.
pub(crate) fn utf16le(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}
