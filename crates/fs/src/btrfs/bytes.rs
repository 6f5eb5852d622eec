//! Bounds-checked little-endian field access and the error constructors every btrfs module uses.

use crate::Error;

pub(super) const FS: &str = "btrfs";

/// A malformed structure at device (or logical) byte `offset`.
pub(super) fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        fs: FS,
        offset,
        what: what.into(),
    }
}

pub(super) fn unsupported(what: impl Into<String>) -> Error {
    Error::Unsupported {
        fs: FS,
        what: what.into(),
    }
}

pub(super) fn limit(what: &'static str, limit: u64) -> Error {
    Error::LimitExceeded {
        fs: FS,
        what,
        limit,
    }
}

/// `len` bytes of `buf` at `at`, or `None` when they are not all there.
pub(super) fn slice(buf: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    buf.get(at..at.checked_add(len)?)
}

pub(super) fn u8_at(buf: &[u8], at: usize) -> Option<u8> {
    buf.get(at).copied()
}

pub(super) fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(slice(buf, at, 2)?.try_into().ok()?))
}

pub(super) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(slice(buf, at, 4)?.try_into().ok()?))
}

pub(super) fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(slice(buf, at, 8)?.try_into().ok()?))
}

/// The standard CRC-32C that btrfs stores in the first 4 bytes of a checksummed block.
pub(super) fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// btrfs's directory name hash: CRC-32C seeded with `~1`, without the final inversion.
pub(super) fn name_hash(name: &[u8]) -> u64 {
    // `crc32c_append(c, ..)` inverts `c` on entry and its result on exit; undo both.
    u64::from(!crc32c::crc32c_append(!0xffff_fffe, name))
}

/// Formats 16 bytes the way blkid prints UUIDs.
pub(super) fn uuid_string(u: &[u8; 16]) -> String {
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn name_hash_matches_btrfs() {
        // DIR_ITEM key offsets shown by `btrfs inspect-internal dump-tree`.
        assert_eq!(name_hash(b"default"), 2_378_154_706);
        assert_eq!(name_hash(b"f"), 411_982_631);
        assert_eq!(name_hash(b"sv"), 3_250_315_169);
    }
}
