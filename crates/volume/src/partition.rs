//! The partition model shared by MBR and GPT, and [`read_partition_table`], which picks the
//! scheme: a protective MBR (type 0xEE) means GPT, any other valid MBR is read as MBR.

use std::fmt;

use porthole_image::Slice;

use crate::bytes::{read_at, Dev};
use crate::error::{Error, Result};
use crate::{gpt, mbr};

/// Sector size of MBR disks, and of GPT disks unless the GPT header is found at 4096 instead.
pub const SECTOR: u64 = 512;
/// The other logical sector size a GPT disk (4Kn) may use.
pub const SECTOR_4K: u64 = 4096;

/// Which partitioning scheme a table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Mbr,
    Gpt,
}

/// A partition's raw type: the MBR type byte or the GPT type GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeId {
    Mbr(u8),
    Gpt(Guid),
}

/// The well-known partition types, from either scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    LinuxFilesystem,
    LinuxLvm,
    LinuxSwap,
    LinuxRaid,
    EfiSystem,
    MicrosoftBasicData,
    MicrosoftReserved,
    BiosBoot,
    Fat,
    Ntfs,
    Other,
}

impl PartitionKind {
    /// The name fdisk/sfdisk shows for this type.
    pub fn name(self) -> &'static str {
        match self {
            PartitionKind::LinuxFilesystem => "Linux filesystem",
            PartitionKind::LinuxLvm => "Linux LVM",
            PartitionKind::LinuxSwap => "Linux swap",
            PartitionKind::LinuxRaid => "Linux RAID",
            PartitionKind::EfiSystem => "EFI System",
            PartitionKind::MicrosoftBasicData => "Microsoft basic data",
            PartitionKind::MicrosoftReserved => "Microsoft reserved",
            PartitionKind::BiosBoot => "BIOS boot",
            PartitionKind::Fat => "FAT",
            PartitionKind::Ntfs => "HPFS/NTFS/exFAT",
            PartitionKind::Other => "unknown",
        }
    }
}

impl TypeId {
    /// Maps the raw type to a well-known kind.
    pub fn kind(self) -> PartitionKind {
        match self {
            TypeId::Mbr(t) => mbr::kind_of(t),
            TypeId::Gpt(g) => gpt::kind_of(&g),
        }
    }
}

impl fmt::Display for TypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeId::Mbr(t) => write!(f, "{t:#04x}"),
            TypeId::Gpt(g) => write!(f, "{g}"),
        }
    }
}

/// A GUID as stored on disk (first three fields little-endian, as GPT stores them).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses the textual form `0FC63DAF-8483-4772-8E79-3D69D8477DE4` (any case).
    pub const fn from_str_const(s: &str) -> Guid {
        let s = s.as_bytes();
        let mut hex = [0u8; 16];
        let (mut i, mut n) = (0, 0);
        while i < s.len() && n < 32 {
            let c = s[i];
            i += 1;
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => continue,
            };
            hex[n / 2] |= if n % 2 == 0 { v << 4 } else { v };
            n += 1;
        }
        // Text order -> on-disk order: reverse the first three fields.
        Guid([
            hex[3], hex[2], hex[1], hex[0], hex[5], hex[4], hex[7], hex[6], hex[8], hex[9],
            hex[10], hex[11], hex[12], hex[13], hex[14], hex[15],
        ])
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    /// Lowercase, as blkid prints PARTUUID and PTUUID.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// One partition: where it is, what it is, and the device to read it through.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Linux numbering: MBR primaries 1-4 by slot, logicals from 5; GPT entry index + 1.
    pub number: u32,
    pub start_lba: u64,
    pub sectors: u64,
    /// Logical sector size the LBAs count in (512, or 4096 for a 4Kn GPT disk).
    pub sector_size: u64,
    pub type_id: TypeId,
    /// PARTUUID as blkid prints it.
    pub partuuid: String,
    /// GPT partition name (PARTLABEL); `None` on MBR.
    pub name: Option<String>,
    /// The partition's bytes.
    pub device: Dev,
}

impl Partition {
    pub fn kind(&self) -> PartitionKind {
        self.type_id.kind()
    }
    pub fn size(&self) -> u64 {
        self.sectors.saturating_mul(self.sector_size)
    }
}

/// A disk's partition table.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    pub scheme: Scheme,
    /// Logical sector size (512, or 4096 for a 4Kn GPT disk).
    pub sector_size: u64,
    /// PTUUID as blkid prints it: the MBR disk signature as 8 hex digits, or the GPT disk GUID.
    pub disk_id: String,
    pub partitions: Vec<Partition>,
    /// GPT only: the primary header or entry array was damaged and the backup was used.
    pub used_backup_gpt: bool,
    /// Problems that did not stop the table from being read (a partition past the end of the
    /// disk, a damaged primary GPT...).
    pub warnings: Vec<String>,
}

/// Reads the partition table of a whole disk. `Ok(None)` when sector 0 has no MBR boot signature
/// (an unpartitioned disk, e.g. a filesystem or an LVM PV on the whole disk).
pub fn read_partition_table(disk: &Dev) -> Result<Option<PartitionTable>> {
    if disk.size() < SECTOR {
        return Ok(None);
    }
    let sector0 = read_at(disk.as_ref(), 0, SECTOR as usize)?;
    if is_filesystem_boot_sector(&sector0) {
        return Ok(None);
    }
    let Some(mbr) = mbr::Mbr::parse(&sector0) else {
        return Ok(None);
    };
    if mbr.is_protective() {
        gpt::read(disk, gpt_sector_size(disk)?).map(Some)
    } else {
        mbr::read(disk, &mbr).map(Some)
    }
}

/// Whether sector 0 is a FAT, exFAT or NTFS boot sector: a filesystem on the whole disk. Their
/// boot sectors end in 0x55AA like an MBR, and their boot code where an MBR's table would be
/// reads as garbage partitions, so they are told apart first, as libblkid does: by NTFS's and
/// exFAT's OEM ids, and by a FAT BIOS parameter block whose fields all hold plausible values.
pub fn is_filesystem_boot_sector(sector: &[u8]) -> bool {
    let oem = sector.get(3..11);
    if oem == Some(b"NTFS    ") || oem == Some(b"EXFAT   ") {
        return true;
    }
    let byte = |at: usize| sector.get(at).copied().unwrap_or(0);
    let word = |at: usize| u16::from_le_bytes([byte(at), byte(at + 1)]);
    let jump = (byte(0) == 0xEB && byte(2) == 0x90) || byte(0) == 0xE9;
    let bytes_per_sector = word(11);
    let sectors_per_cluster = byte(13);
    jump && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && word(14) >= 1 // reserved sectors
        && matches!(byte(16), 1 | 2) // number of FATs
        && (byte(21) == 0xF0 || byte(21) >= 0xF8) // media descriptor
}

/// 4096 when a GPT header ("EFI PART") is at LBA 1 or the last LBA only when counting in
/// 4096-byte sectors; 512 otherwise (including when neither has one: the error then names 512).
fn gpt_sector_size(disk: &Dev) -> Result<u64> {
    let size = disk.size();
    for ss in [SECTOR, SECTOR_4K] {
        for offset in [ss, (size / ss).saturating_sub(1) * ss] {
            if offset >= ss
                && offset + 8 <= size
                && read_at(disk.as_ref(), offset, 8)? == b"EFI PART"
            {
                return Ok(ss);
            }
        }
    }
    Ok(SECTOR)
}

/// Makes the partition device, or explains why the range does not fit the disk.
pub(crate) fn slice(
    disk: &Dev,
    layer: &'static str,
    sector_size: u64,
    start_lba: u64,
    sectors: u64,
) -> Result<Slice<Dev>> {
    let start = start_lba.checked_mul(sector_size);
    let len = sectors.checked_mul(sector_size);
    match (start, len) {
        (Some(start), Some(len)) => Ok(Slice::new(disk.clone(), start, len)?),
        _ => Err(Error::corrupt(
            layer,
            0,
            format!("partition at LBA {start_lba} with {sectors} sectors overflows"),
        )),
    }
}
