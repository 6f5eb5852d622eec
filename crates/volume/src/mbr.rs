//! MBR (DOS) partition tables: four primary entries in sector 0, and logical partitions in a
//! chain of extended boot records (EBRs) inside an extended partition.
//!
//! Written here rather than taken from `mbrman`: mbrman reads through `Read + Seek`, adds
//! untrusted 32-bit LBAs without overflow checks, and does not cap the EBR chain length. The
//! format is small enough that a careful parser is shorter than the adapter would be.

use std::collections::HashSet;
use std::sync::Arc;

use crate::bytes::{le_u32, read_at, Dev};
use crate::error::{Error, Result};
use crate::partition::{self, Partition, PartitionKind, PartitionTable, Scheme, TypeId, SECTOR};

const LAYER: &str = "MBR";
/// Linux accepts at most 256 partitions per disk; more EBRs than that is hostile.
pub const MAX_LOGICAL: usize = 256;

/// One 16-byte partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub bootable: bool,
    pub type_byte: u8,
    pub start_lba: u32,
    pub sectors: u32,
}

impl Entry {
    fn parse(b: &[u8]) -> Entry {
        Entry {
            bootable: b.first() == Some(&0x80),
            type_byte: b.get(4).copied().unwrap_or(0),
            start_lba: le_u32(b, 8),
            sectors: le_u32(b, 12),
        }
    }
    fn is_empty(&self) -> bool {
        self.type_byte == 0 || self.sectors == 0
    }
    fn is_extended(&self) -> bool {
        matches!(self.type_byte, 0x05 | 0x0f | 0x85)
    }
}

/// A parsed boot sector (MBR or EBR).
#[derive(Debug, Clone)]
pub struct Mbr {
    pub disk_signature: u32,
    pub entries: [Entry; 4],
}

impl Mbr {
    /// Parses a 512-byte boot sector; `None` without the 0x55AA signature.
    pub fn parse(sector: &[u8]) -> Option<Mbr> {
        if sector.get(510..512) != Some(&[0x55, 0xaa][..]) {
            return None;
        }
        let entry = |i: usize| Entry::parse(sector.get(446 + 16 * i..462 + 16 * i).unwrap_or(&[]));
        Some(Mbr {
            disk_signature: le_u32(sector, 440),
            entries: [entry(0), entry(1), entry(2), entry(3)],
        })
    }

    /// A protective MBR (UEFI spec): an entry of type 0xEE announces a GPT disk.
    pub fn is_protective(&self) -> bool {
        self.entries.iter().any(|e| e.type_byte == 0xee)
    }
}

/// Maps an MBR type byte to a well-known kind.
pub fn kind_of(t: u8) -> PartitionKind {
    match t {
        0x83 => PartitionKind::LinuxFilesystem,
        0x8e => PartitionKind::LinuxLvm,
        0x82 => PartitionKind::LinuxSwap,
        0xfd => PartitionKind::LinuxRaid,
        0xef => PartitionKind::EfiSystem,
        0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e => PartitionKind::Fat,
        0x07 => PartitionKind::Ntfs,
        _ => PartitionKind::Other,
    }
}

/// Reads the primary and logical partitions of an MBR disk.
pub fn read(disk: &Dev, mbr: &Mbr) -> Result<PartitionTable> {
    let mut table = PartitionTable {
        scheme: Scheme::Mbr,
        sector_size: SECTOR,
        disk_id: format!("{:08x}", mbr.disk_signature),
        partitions: Vec::new(),
        used_backup_gpt: false,
        warnings: Vec::new(),
    };
    let mut extended = None;
    for (slot, e) in (1u32..).zip(mbr.entries.iter()) {
        if e.is_empty() {
            continue;
        }
        if e.is_extended() {
            // Linux shows the extended partition itself as a 1 KiB device; porthole lists only
            // the partitions that hold data.
            extended.get_or_insert(*e);
            continue;
        }
        push(
            disk,
            &mut table,
            mbr.disk_signature,
            slot,
            u64::from(e.start_lba),
            e,
        );
    }
    if let Some(ext) = extended {
        read_logical(disk, &mut table, mbr.disk_signature, &ext)?;
    }
    Ok(table)
}

/// Walks the EBR chain. Each EBR holds the logical partition (relative to the EBR) and a link
/// to the next EBR (relative to the extended partition's start). The walk is bounded by
/// [`MAX_LOGICAL`] and refuses to visit an EBR twice.
fn read_logical(disk: &Dev, table: &mut PartitionTable, sig: u32, ext: &Entry) -> Result<()> {
    let ext_start = u64::from(ext.start_lba);
    let ext_end = ext_start + u64::from(ext.sectors);
    let mut ebr_lba = ext_start;
    let mut seen = HashSet::new();
    let mut number = 5u32;
    loop {
        let offset = ebr_lba * SECTOR;
        if !seen.insert(ebr_lba) {
            return Err(Error::corrupt(
                LAYER,
                offset,
                "EBR chain loops back to an EBR already read",
            ));
        }
        if seen.len() > MAX_LOGICAL {
            return Err(Error::limit(
                LAYER,
                offset,
                "EBR chain length",
                MAX_LOGICAL as u64,
            ));
        }
        if ebr_lba >= ext_end {
            return Err(Error::corrupt(
                LAYER,
                offset,
                "EBR lies outside the extended partition",
            ));
        }
        let sector = read_at(disk.as_ref(), offset, SECTOR as usize)?;
        let Some(ebr) = Mbr::parse(&sector) else {
            // The first EBR of an empty extended partition may be blank; a later one may not.
            if ebr_lba == ext_start {
                return Ok(());
            }
            return Err(Error::corrupt(
                LAYER,
                offset,
                "EBR lacks the 0x55AA signature",
            ));
        };
        let [data, link, ..] = ebr.entries;
        if !data.is_empty() && !data.is_extended() {
            push(
                disk,
                table,
                sig,
                number,
                ebr_lba + u64::from(data.start_lba),
                &data,
            );
            number += 1;
        }
        if link.is_empty() || !link.is_extended() {
            return Ok(());
        }
        ebr_lba = ext_start + u64::from(link.start_lba);
    }
}

/// Adds a partition; one that does not fit the disk becomes a warning, not a failure, so the
/// rest of the table stays readable.
fn push(disk: &Dev, table: &mut PartitionTable, sig: u32, number: u32, start: u64, e: &Entry) {
    let sectors = u64::from(e.sectors);
    match partition::slice(disk, LAYER, SECTOR, start, sectors) {
        Ok(dev) => table.partitions.push(Partition {
            number,
            start_lba: start,
            sectors,
            sector_size: SECTOR,
            type_id: TypeId::Mbr(e.type_byte),
            partuuid: format!("{sig:08x}-{number:02x}"),
            name: None,
            device: Arc::new(dev),
        }),
        Err(err) => table
            .warnings
            .push(format!("MBR partition {number}: {err}")),
    }
}
