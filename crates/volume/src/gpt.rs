//! GUID partition tables: the header at LBA 1 (backup at the last LBA), each protected by a
//! CRC32 of the header and a CRC32 of the partition entry array.
//!
//! Written here rather than taken from `gptman`: gptman sizes a `Vec::with_capacity` by the
//! header's entry count (a header claiming 2^32 entries aborts the process), multiplies
//! untrusted LBAs without overflow checks, reads through `Read + Seek`, needs Rust 1.85 (the
//! workspace targets 1.80) and pulls in `nix` and `wincode`.

use std::sync::Arc;

use crate::bytes::{field, le_u32, le_u64, read_at, Dev};
use crate::error::{Error, Result};
use crate::partition::{self, Guid, Partition, PartitionKind, PartitionTable, Scheme, TypeId};

const LAYER: &str = "GPT";
/// Entry arrays larger than this are refused (the usual array is 128 x 128 = 16 KiB).
pub const MAX_ARRAY_BYTES: u64 = 1 << 20;
/// At most this many entries (Linux reads at most 256 partitions; the spec minimum is 128).
pub const MAX_ENTRIES: u32 = 1024;

/// A validated GPT header.
#[derive(Debug, Clone)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Guid,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

/// One used GPT entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub index: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

const KINDS: &[(Guid, PartitionKind)] = &[
    (
        Guid::from_str_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        PartitionKind::LinuxFilesystem,
    ),
    (
        Guid::from_str_const("E6D6D379-F507-44C2-A23C-238F2A3DF928"),
        PartitionKind::LinuxLvm,
    ),
    (
        Guid::from_str_const("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
        PartitionKind::LinuxSwap,
    ),
    (
        Guid::from_str_const("A19D880F-05FC-4D3B-A006-743F0F84911E"),
        PartitionKind::LinuxRaid,
    ),
    (
        Guid::from_str_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        PartitionKind::EfiSystem,
    ),
    (
        Guid::from_str_const("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
        PartitionKind::MicrosoftBasicData,
    ),
    (
        Guid::from_str_const("E3C9E316-0B5C-4DB8-817D-F92DF00215AE"),
        PartitionKind::MicrosoftReserved,
    ),
    (
        Guid::from_str_const("21686148-6449-6E6F-744E-656564454649"),
        PartitionKind::BiosBoot,
    ),
    // Discoverable-partitions root (x86-64) and /home are Linux filesystems too.
    (
        Guid::from_str_const("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
        PartitionKind::LinuxFilesystem,
    ),
    (
        Guid::from_str_const("933AC7E1-2EB4-4F13-B844-0E14E2AEF915"),
        PartitionKind::LinuxFilesystem,
    ),
];

/// Maps a GPT type GUID to a well-known kind.
pub fn kind_of(g: &Guid) -> PartitionKind {
    KINDS
        .iter()
        .find(|(k, _)| k == g)
        .map_or(PartitionKind::Other, |(_, kind)| *kind)
}

impl Header {
    /// Parses and validates one header sector read from `lba` (the slice is one sector).
    pub fn parse(sector: &[u8], lba: u64) -> Result<Header> {
        let offset = lba.saturating_mul(sector.len() as u64);
        let bad = |what: String| Error::corrupt(LAYER, offset, what);
        if sector.get(0..8) != Some(&b"EFI PART"[..]) {
            return Err(bad("no \"EFI PART\" signature".into()));
        }
        let header_size = le_u32(sector, 12) as usize;
        if !(92..=sector.len()).contains(&header_size) {
            return Err(bad(format!(
                "header size {header_size} is not in 92..={}",
                sector.len()
            )));
        }
        let stored = le_u32(sector, 16);
        let mut copy = sector.get(..header_size).unwrap_or_default().to_vec();
        copy.get_mut(16..20)
            .into_iter()
            .flatten()
            .for_each(|b| *b = 0);
        let computed = crc32fast::hash(&copy);
        if stored != computed {
            return Err(bad(format!(
                "header CRC32 {stored:#010x} does not match computed {computed:#010x}"
            )));
        }
        let header = Header {
            my_lba: le_u64(sector, 24),
            alternate_lba: le_u64(sector, 32),
            first_usable_lba: le_u64(sector, 40),
            last_usable_lba: le_u64(sector, 48),
            disk_guid: Guid(field::<16>(sector, 56).unwrap_or_default()),
            entries_lba: le_u64(sector, 72),
            num_entries: le_u32(sector, 80),
            entry_size: le_u32(sector, 84),
            entries_crc: le_u32(sector, 88),
        };
        if header.my_lba != lba {
            return Err(bad(format!(
                "header says it is at LBA {} but was read from LBA {lba}",
                header.my_lba
            )));
        }
        header.check_limits(offset)?;
        Ok(header)
    }

    fn check_limits(&self, offset: u64) -> Result<()> {
        if self.entry_size < 128 || self.entry_size & 7 != 0 || self.entry_size > 4096 {
            return Err(Error::corrupt(
                LAYER,
                offset,
                format!("entry size {} is invalid", self.entry_size),
            ));
        }
        if self.num_entries > MAX_ENTRIES {
            return Err(Error::limit(
                LAYER,
                offset,
                format!("{} partition entries", self.num_entries),
                MAX_ENTRIES.into(),
            ));
        }
        let bytes = u64::from(self.num_entries) * u64::from(self.entry_size);
        if bytes > MAX_ARRAY_BYTES {
            return Err(Error::limit(
                LAYER,
                offset,
                format!("{bytes}-byte entry array"),
                MAX_ARRAY_BYTES,
            ));
        }
        Ok(())
    }

    fn array_bytes(&self) -> usize {
        // Bounded by check_limits to MAX_ARRAY_BYTES.
        self.num_entries as usize * self.entry_size as usize
    }
}

/// Reads header + entry array at `lba`, checking both CRCs.
fn read_copy(disk: &Dev, ss: u64, lba: u64) -> Result<(Header, Vec<Entry>)> {
    let offset = lba
        .checked_mul(ss)
        .ok_or_else(|| Error::corrupt(LAYER, 0, "header LBA overflows"))?;
    let header = Header::parse(&read_at(disk.as_ref(), offset, ss as usize)?, lba)?;
    let array_offset = header
        .entries_lba
        .checked_mul(ss)
        .ok_or_else(|| Error::corrupt(LAYER, offset, "entry array LBA overflows"))?;
    let array = read_at(disk.as_ref(), array_offset, header.array_bytes())?;
    let computed = crc32fast::hash(&array);
    if computed != header.entries_crc {
        return Err(Error::corrupt(
            LAYER,
            array_offset,
            format!(
                "entry array CRC32 {:#010x} does not match computed {computed:#010x}",
                header.entries_crc
            ),
        ));
    }
    let entries = parse_entries(&array, header.entry_size as usize);
    Ok((header, entries))
}

/// Decodes the used entries (non-zero type GUID) of a CRC-checked array.
pub fn parse_entries(array: &[u8], entry_size: usize) -> Vec<Entry> {
    array
        .chunks_exact(entry_size.max(128))
        .zip(0u32..)
        .filter_map(|(e, index)| {
            let type_guid = Guid(field::<16>(e, 0)?);
            if type_guid.is_zero() {
                return None;
            }
            Some(Entry {
                index,
                type_guid,
                unique_guid: Guid(field::<16>(e, 16)?),
                first_lba: le_u64(e, 32),
                last_lba: le_u64(e, 40),
                attributes: le_u64(e, 48),
                name: utf16_name(e.get(56..128)?),
            })
        })
        .collect()
}

fn utf16_name(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Reads a GPT disk: the primary copy, or the backup at the last LBA when the primary is
/// damaged (recorded in `used_backup_gpt` and `warnings`).
pub fn read(disk: &Dev, sector_size: u64) -> Result<PartitionTable> {
    let ss = sector_size;
    let last_lba = (disk.size() / ss).saturating_sub(1);
    let (header, entries, used_backup, mut warnings) = match read_copy(disk, ss, 1) {
        Ok((h, e)) => (h, e, false, Vec::new()),
        Err(primary) => match read_copy(disk, ss, last_lba) {
            Ok((h, e)) => {
                let warning =
                    format!("primary GPT unusable ({primary}); using the backup at LBA {last_lba}");
                (h, e, true, vec![warning])
            }
            Err(backup) => {
                return Err(Error::GptUnreadable {
                    primary: Box::new(primary),
                    backup: Box::new(backup),
                })
            }
        },
    };
    let mut partitions = Vec::new();
    for e in entries {
        match to_partition(disk, ss, &header, &e) {
            Ok(p) => partitions.push(p),
            Err(err) => warnings.push(format!("GPT entry {}: {err}", e.index + 1)),
        }
    }
    Ok(PartitionTable {
        scheme: Scheme::Gpt,
        sector_size: ss,
        disk_id: header.disk_guid.to_string(),
        partitions,
        used_backup_gpt: used_backup,
        warnings,
    })
}

fn to_partition(disk: &Dev, ss: u64, header: &Header, e: &Entry) -> Result<Partition> {
    if e.last_lba < e.first_lba {
        let what = format!(
            "last LBA {} is before first LBA {}",
            e.last_lba, e.first_lba
        );
        return Err(Error::corrupt(
            LAYER,
            header.entries_lba.saturating_mul(ss),
            what,
        ));
    }
    let sectors = e.last_lba - e.first_lba + 1;
    let device = partition::slice(disk, LAYER, ss, e.first_lba, sectors)?;
    Ok(Partition {
        number: e.index + 1,
        start_lba: e.first_lba,
        sectors,
        sector_size: ss,
        type_id: TypeId::Gpt(e.type_guid),
        partuuid: e.unique_guid.to_string(),
        name: Some(e.name.clone()),
        device: Arc::new(device),
    })
}
