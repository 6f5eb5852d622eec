//! The FAT boot sector: the BIOS parameter block (BPB) and the extended boot record, checked and
//! turned into the volume's geometry (where the FATs, the root directory and the data area are).

use crate::{Error, FsKind, Result};

/// The FAT geometry, every field checked against the others and against overflow.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub kind: FsKind,
    pub cluster_size: u32,
    /// Byte offset and length of the FAT that is read (the active one on FAT32).
    pub fat_offset: u64,
    pub fat_bytes: u64,
    /// FAT12/16: the fixed root directory region (byte offset, length).
    pub root_region: Option<(u64, u64)>,
    /// FAT32: the root directory's first cluster.
    pub root_cluster: u32,
    /// Byte offset of cluster 2.
    pub data_offset: u64,
    /// Number of data clusters; valid cluster numbers are `2..cluster_count + 2`.
    pub cluster_count: u32,
    pub volume_id: Option<u32>,
    /// The label in the extended boot record (raw 11 bytes, space padded).
    pub label: Option<[u8; 11]>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Whether the first sector looks like a FAT boot sector: the 0x55AA signature and a FAT type
/// string (which mkfs.vfat, Windows and mtools all write), or a jump instruction with a
/// plausible sector size. Looser than [`parse`], so a damaged BPB is reported as corrupt rather
/// than as "no filesystem".
pub(crate) fn looks_like_fat(sector: &[u8]) -> bool {
    let signed = sector.get(510..512) == Some(&[0x55, 0xAA][..]);
    let typed = [0x36, 0x52]
        .iter()
        .any(|&at| sector.get(at..at + 3) == Some(&b"FAT"[..]));
    let jump = matches!(sector.first(), Some(0xEB | 0xE9));
    let bps = le16(sector, 11);
    signed && (typed || (jump && bps.is_power_of_two() && (512..=4096).contains(&bps)))
}

fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        fs: "vfat",
        offset,
        what: what.into(),
    }
}

/// Parses and checks the boot sector (the first 512 bytes of the volume).
pub(crate) fn parse(b: &[u8]) -> Result<Geometry> {
    let bps = u32::from(le16(b, 11));
    if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
        return Err(corrupt(11, format!("boot sector: bytes per sector {bps}")));
    }
    let spc = u32::from(b.get(13).copied().unwrap_or(0));
    if !spc.is_power_of_two() {
        return Err(corrupt(
            13,
            format!("boot sector: sectors per cluster {spc}"),
        ));
    }
    let reserved = u64::from(le16(b, 14));
    if reserved == 0 {
        return Err(corrupt(14, "boot sector: no reserved sectors"));
    }
    let fats = u64::from(b.get(16).copied().unwrap_or(0));
    if fats == 0 {
        return Err(corrupt(16, "boot sector: FAT count 0"));
    }
    let root_entries = u64::from(le16(b, 17));
    let total = match le16(b, 19) {
        0 => u64::from(le32(b, 32)),
        n => u64::from(n),
    };
    let fat_sectors = match le16(b, 22) {
        0 => u64::from(le32(b, 36)),
        n => u64::from(n),
    };
    if fat_sectors == 0 {
        return Err(corrupt(22, "boot sector: FAT size 0"));
    }
    let bps64 = u64::from(bps);
    let root_sectors = (root_entries * 32).div_ceil(bps64);
    // All in u64 from u16/u32 fields: cannot overflow.
    let meta = reserved + fats * fat_sectors + root_sectors;
    if total <= meta {
        return Err(corrupt(
            19,
            format!("boot sector: {total} sectors leave no data area after {meta}"),
        ));
    }
    let clusters = (total - meta) / u64::from(spc);
    // The FAT type follows from the cluster count alone (Microsoft's rule, also Linux's).
    let (kind, entry_bits) = match clusters {
        0..4085 => (FsKind::Fat12, 12),
        4085..65525 => (FsKind::Fat16, 16),
        _ => (FsKind::Fat32, 32),
    };
    if kind == FsKind::Fat32 && root_entries != 0 {
        return Err(corrupt(
            17,
            "boot sector: FAT32 with a fixed root directory",
        ));
    }
    if kind != FsKind::Fat32 && root_entries == 0 {
        return Err(corrupt(17, "boot sector: FAT12/16 without root entries"));
    }
    // Clamp to what the FAT can describe, as a short FAT leaves the clusters beyond unusable.
    let fat_bytes = fat_sectors * bps64;
    let describable = (fat_bytes * 8 / entry_bits).saturating_sub(2);
    let cluster_count = u32::try_from(clusters.min(describable).min(0x0FFF_FFF5))
        .map_err(|_| corrupt(13, "boot sector: cluster count"))?;
    let active_fat = if kind == FsKind::Fat32 && le16(b, 40) & 0x80 != 0 {
        // Mirroring disabled: bits 0-3 name the one FAT in use.
        u64::from(le16(b, 40) & 0x0F)
    } else {
        0
    };
    if active_fat >= fats {
        return Err(corrupt(40, format!("boot sector: active FAT {active_fat}")));
    }
    let ebr = if kind == FsKind::Fat32 { 0x40 } else { 0x24 };
    let signed = matches!(b.get(ebr + 2), Some(0x28 | 0x29));
    let label = b
        .get(ebr + 7..ebr + 18)
        .filter(|_| b.get(ebr + 2) == Some(&0x29))
        .and_then(|s| <[u8; 11]>::try_from(s).ok());
    Ok(Geometry {
        kind,
        cluster_size: bps * spc,
        fat_offset: (reserved + active_fat * fat_sectors) * bps64,
        fat_bytes: ((u64::from(cluster_count) + 2) * entry_bits / 8 + 1).min(fat_bytes),
        root_region: (kind != FsKind::Fat32)
            .then(|| ((reserved + fats * fat_sectors) * bps64, root_entries * 32)),
        root_cluster: le32(b, 44),
        data_offset: meta * bps64,
        cluster_count,
        volume_id: signed.then(|| le32(b, ebr + 3)),
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_are_corrupt_not_panics() {
        let mut b = vec![0u8; 512];
        assert!(parse(&b).is_err());
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 0;
        assert!(matches!(parse(&b), Err(Error::Corrupt { offset: 13, .. })));
        b[13] = 3;
        assert!(matches!(parse(&b), Err(Error::Corrupt { offset: 13, .. })));
    }
}
