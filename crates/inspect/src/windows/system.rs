//! Facts from a SYSTEM hive: the current control set, the hostname, and the drive letters of
//! `MountedDevices` with a helper that maps them onto the guest's partitions.

use super::hive::{Hive, Key};
use super::Read;

/// What the SYSTEM hive says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemFacts {
    /// `ControlSet00N`, from `Select\Current`.
    pub control_set: Option<String>,
    /// `Services\Tcpip\Parameters\Hostname` of the current control set, else
    /// `Control\ComputerName\ComputerName\ComputerName`.
    pub hostname: Option<String>,
    /// `MountedDevices`' `\DosDevices\X:` entries that name a partition, in value order.
    pub drives: Vec<DriveLetter>,
}

/// A drive letter and the partition it was last assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveLetter {
    /// Upper case, `'C'`.
    pub letter: char,
    pub location: PartitionRef,
}

/// How Windows remembers a partition in `MountedDevices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionRef {
    /// 12 bytes: the MBR disk signature (at byte 440 of the disk) and the partition's start in
    /// bytes.
    Mbr { disk_signature: u32, start: u64 },
    /// `DMIO:ID:` and the GPT partition's unique GUID, here as blkid prints a PARTUUID.
    Gpt { partuuid: String },
}

/// One of the guest's partitions, as the caller knows it, for [`map_drive_letters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The caller's name for it (`/dev/sda2`).
    pub device: String,
    /// The MBR disk signature of the disk it is on, for MBR partitions.
    pub mbr_disk_signature: Option<u32>,
    /// Its first byte on that disk.
    pub start: u64,
    /// Its GPT PARTUUID, for GPT partitions (any case).
    pub gpt_partuuid: Option<String>,
}

/// Each drive letter whose partition is among `partitions`, with that partition's device, as
/// virt-inspector's `drive_mappings` (letters without a match are left out, as there).
pub fn map_drive_letters(
    drives: &[DriveLetter],
    partitions: &[PartitionInfo],
) -> Vec<(char, String)> {
    drives
        .iter()
        .filter_map(|drive| {
            let found = partitions.iter().find(|p| match &drive.location {
                PartitionRef::Mbr {
                    disk_signature,
                    start,
                } => p.mbr_disk_signature == Some(*disk_signature) && p.start == *start,
                PartitionRef::Gpt { partuuid } => p
                    .gpt_partuuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(partuuid)),
            })?;
            Some((drive.letter, found.device.clone()))
        })
        .collect()
}

/// The facts of a SYSTEM hive's bytes; damage is a warning.
pub fn read_system(system: &[u8]) -> Read<SystemFacts> {
    let mut read = Read::default();
    let hive = match Hive::new(system) {
        Ok(hive) => hive,
        Err(e) => {
            read.warnings.push(format!("SYSTEM: {e}"));
            return read;
        }
    };
    let warnings = &mut read.warnings;
    warnings.extend(hive.warnings().iter().map(|w| format!("SYSTEM: {w}")));
    read.facts.drives = drives(&hive, warnings);
    read.facts.control_set = control_set(&hive, warnings);
    if let Some(set) = &read.facts.control_set {
        read.facts.hostname = hostname(&hive, set, warnings);
    }
    read
}

/// The key at `path`, `None` (with a warning when it was unreadable) otherwise.
fn open<'h, 'a>(hive: &'h Hive<'a>, path: &str, warnings: &mut Vec<String>) -> Option<Key<'h, 'a>> {
    hive.open(path).unwrap_or_else(|e| {
        warnings.push(format!("SYSTEM: {path}: {e}"));
        None
    })
}

/// The string value `name` of `key`.
fn string(key: &Key<'_, '_>, path: &str, name: &str, warnings: &mut Vec<String>) -> Option<String> {
    match key.value(name) {
        Ok(value) => value?.string().filter(|s| !s.is_empty()),
        Err(e) => {
            warnings.push(format!("SYSTEM: {path}: {e}"));
            None
        }
    }
}

fn control_set(hive: &Hive<'_>, warnings: &mut Vec<String>) -> Option<String> {
    let select = open(hive, "Select", warnings)?;
    let current = match select.value("Current") {
        Ok(value) => value.and_then(|v| v.dword()),
        Err(e) => {
            warnings.push(format!("SYSTEM: Select: {e}"));
            None
        }
    };
    match current {
        Some(n) => Some(format!("ControlSet{n:03}")),
        None => {
            warnings.push("SYSTEM: Select has no Current DWORD".into());
            None
        }
    }
}

fn hostname(hive: &Hive<'_>, set: &str, warnings: &mut Vec<String>) -> Option<String> {
    let tcpip = format!(r"{set}\Services\Tcpip\Parameters");
    if let Some(key) = open(hive, &tcpip, warnings) {
        if let Some(name) = string(&key, &tcpip, "Hostname", warnings) {
            return Some(name);
        }
    }
    let computer = format!(r"{set}\Control\ComputerName\ComputerName");
    let key = open(hive, &computer, warnings)?;
    string(&key, &computer, "ComputerName", warnings)
}

fn drives(hive: &Hive<'_>, warnings: &mut Vec<String>) -> Vec<DriveLetter> {
    let Some(key) = open(hive, "MountedDevices", warnings) else {
        return Vec::new();
    };
    let values = match key.values() {
        Ok(values) => values,
        Err(e) => {
            warnings.push(format!("SYSTEM: MountedDevices: {e}"));
            return Vec::new();
        }
    };
    values
        .into_iter()
        .filter_map(|value| match value {
            Ok(value) => {
                let letter = drive_letter(&value.name)?;
                let location = partition_ref(value.binary()?)?;
                Some(DriveLetter { letter, location })
            }
            Err(e) => {
                warnings.push(format!("SYSTEM: MountedDevices: {e}"));
                None
            }
        })
        .collect()
}

/// `\DosDevices\C:` → 'C'.
fn drive_letter(name: &str) -> Option<char> {
    let prefix = name.get(..12)?;
    let rest = name.get(12..)?;
    let mut chars = rest.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(letter), Some(':'), None)
            if prefix.eq_ignore_ascii_case(r"\DosDevices\") && letter.is_ascii_alphabetic() =>
        {
            Some(letter.to_ascii_uppercase())
        }
        _ => None,
    }
}

/// The partition a `MountedDevices` blob names; other blobs (CD-ROM device paths, volume
/// GUID links) are not partitions.
fn partition_ref(blob: &[u8]) -> Option<PartitionRef> {
    if blob.len() == 12 {
        let disk_signature = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?);
        let start = u64::from_le_bytes(blob.get(4..12)?.try_into().ok()?);
        return Some(PartitionRef::Mbr {
            disk_signature,
            start,
        });
    }
    let guid = blob.strip_prefix(b"DMIO:ID:")?.get(..16)?;
    Some(PartitionRef::Gpt {
        partuuid: guid_string(guid),
    })
}

/// A GUID's 16 on-disk bytes (three little-endian fields, then eight bytes as they are) as
/// blkid prints it.
fn guid_string(b: &[u8]) -> String {
    let hex = |range: &[usize]| {
        range
            .iter()
            .filter_map(|&i| b.get(i))
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(&[3, 2, 1, 0]),
        hex(&[5, 4]),
        hex(&[7, 6]),
        hex(&[8, 9]),
        hex(&[10, 11, 12, 13, 14, 15])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_letters_and_blobs() {
        assert_eq!(drive_letter(r"\DosDevices\C:"), Some('C'));
        assert_eq!(drive_letter(r"\dosdevices\e:"), Some('E'));
        assert_eq!(drive_letter(r"\DosDevices\CC:"), None);
        assert_eq!(drive_letter(r"\??\Volume{1234}"), None);
        let mut mbr = 0x1234_5678u32.to_le_bytes().to_vec();
        mbr.extend_from_slice(&(1u64 << 20).to_le_bytes());
        assert_eq!(
            partition_ref(&mbr),
            Some(PartitionRef::Mbr {
                disk_signature: 0x1234_5678,
                start: 1 << 20
            })
        );
        let mut gpt = b"DMIO:ID:".to_vec();
        gpt.extend_from_slice(&[
            0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        assert_eq!(
            partition_ref(&gpt),
            Some(PartitionRef::Gpt {
                partuuid: "12345678-9abc-def0-0102-030405060708".into()
            })
        );
        assert_eq!(partition_ref(b"DMIO:ID:short"), None);
        assert_eq!(partition_ref(&[0; 13]), None);
    }

    #[test]
    fn mapping_matches_signature_and_offset_or_partuuid() {
        let drives = [
            DriveLetter {
                letter: 'C',
                location: PartitionRef::Mbr {
                    disk_signature: 7,
                    start: 1 << 20,
                },
            },
            DriveLetter {
                letter: 'D',
                location: PartitionRef::Gpt {
                    partuuid: "12345678-9abc-def0-0102-030405060708".into(),
                },
            },
            DriveLetter {
                letter: 'E',
                location: PartitionRef::Mbr {
                    disk_signature: 8,
                    start: 1 << 20,
                },
            },
        ];
        let partitions = [
            PartitionInfo {
                device: "/dev/sda1".into(),
                mbr_disk_signature: Some(7),
                start: 512,
                gpt_partuuid: None,
            },
            PartitionInfo {
                device: "/dev/sda2".into(),
                mbr_disk_signature: Some(7),
                start: 1 << 20,
                gpt_partuuid: None,
            },
            PartitionInfo {
                device: "/dev/sdb1".into(),
                mbr_disk_signature: None,
                start: 1 << 20,
                gpt_partuuid: Some("12345678-9ABC-DEF0-0102-030405060708".into()),
            },
        ];
        assert_eq!(
            map_drive_letters(&drives, &partitions),
            [
                ('C', "/dev/sda2".to_string()),
                ('D', "/dev/sdb1".to_string())
            ]
        );
    }
}
