//! Linux md RAID1 members with version-1 superblocks: 1.0 (near the end), 1.1 (at 0) and 1.2
//! (at 4 KiB). Each RAID1 member holds a full copy of the array, so a member's data area is
//! presented as the array's device. 0.90 superblocks are not read.

use porthole_image::Slice;
use std::sync::Arc;

use crate::bytes::{field, le_u32, le_u64, read_at, Dev};
use crate::error::{Error, Result};

const LAYER: &str = "md superblock";
pub const MD_MAGIC: u32 = 0xa92b_4efc;
/// The superblock plus its role table is at most 4 KiB; more devices than fit is hostile.
const MAX_DEV: u32 = 1920;
/// Feature bit for an active reshape, which changes the layout mid-array; other feature bits
/// (bitmap, recovery offset, bad-block log) do not change where RAID1 data lives.
const FEATURE_RESHAPE: u32 = 4;

/// Where the superblock was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdVersion {
    V1_0,
    V1_1,
    V1_2,
}

/// A validated member superblock.
#[derive(Debug, Clone)]
pub struct MdMember {
    pub version: MdVersion,
    pub level: i32,
    /// mdadm's form: four groups of 8 hex digits separated by ':'.
    pub array_uuid: String,
    /// The array name, without the `host:` prefix mdadm adds.
    pub name: String,
    pub raid_disks: u32,
    pub dev_number: u32,
    pub events: u64,
    /// Start and length of the array data on this member, in bytes.
    pub data_offset: u64,
    pub data_size: u64,
}

impl MdMember {
    /// `/dev/md/NAME`, as mdadm's udev rules name it.
    pub fn dev_path(&self) -> String {
        format!("/dev/md/{}", self.name)
    }
}

/// Looks for a version-1 superblock (1.2, then 1.1, then 1.0); `Ok(None)` when there is none.
pub fn probe(dev: &Dev) -> Result<Option<MdMember>> {
    let size = dev.size();
    let end_offset = ((size / 512).saturating_sub(16) & !7) * 512;
    for (version, offset) in [
        (MdVersion::V1_2, 4096),
        (MdVersion::V1_1, 0),
        (MdVersion::V1_0, end_offset),
    ] {
        if offset + 4096 > size {
            continue;
        }
        let sb = read_at(dev.as_ref(), offset, 4096)?;
        if le_u32(&sb, 0) == MD_MAGIC {
            return parse(&sb, version, offset, size).map(Some);
        }
    }
    Ok(None)
}

/// Parses a 4 KiB superblock block read at `offset` of a `dev_size`-byte member.
pub fn parse(sb: &[u8], version: MdVersion, offset: u64, dev_size: u64) -> Result<MdMember> {
    let bad = |at: u64, what: String| Error::corrupt(LAYER, offset + at, what);
    if le_u32(sb, 4) != 1 {
        return Err(bad(4, format!("major version {} is not 1", le_u32(sb, 4))));
    }
    let max_dev = le_u32(sb, 220);
    if max_dev > MAX_DEV {
        return Err(Error::limit(
            LAYER,
            offset + 220,
            format!("{max_dev} device roles"),
            MAX_DEV.into(),
        ));
    }
    let stored = le_u32(sb, 216);
    let computed = checksum(sb, max_dev);
    if stored != computed {
        return Err(bad(
            216,
            format!("checksum {stored:#010x} does not match computed {computed:#010x}"),
        ));
    }
    if le_u64(sb, 144) != offset / 512 {
        return Err(bad(
            144,
            format!("superblock says it is at sector {}", le_u64(sb, 144)),
        ));
    }
    let level = le_u32(sb, 72) as i32;
    let features = le_u32(sb, 8);
    if features & FEATURE_RESHAPE != 0 {
        return Err(Error::Unsupported {
            layer: LAYER,
            what: "array is being reshaped".into(),
        });
    }
    let sectors = match le_u64(sb, 80) {
        0 => le_u64(sb, 136),
        s => s,
    };
    let data_offset = le_u64(sb, 128).checked_mul(512);
    let data_size = sectors.checked_mul(512);
    let (Some(data_offset), Some(data_size)) = (data_offset, data_size) else {
        return Err(bad(128, "data area overflows".into()));
    };
    if data_offset
        .checked_add(data_size)
        .is_none_or(|end| end > dev_size)
    {
        return Err(bad(
            128,
            format!(
                "data area {data_offset:#x}+{data_size:#x} is beyond the {dev_size:#x}-byte device"
            ),
        ));
    }
    let uuid = field::<16>(sb, 16).unwrap_or_default();
    let name_bytes = sb.get(32..64).unwrap_or_default();
    let name = String::from_utf8_lossy(name_bytes.split(|&b| b == 0).next().unwrap_or_default())
        .into_owned();
    Ok(MdMember {
        version,
        level,
        array_uuid: uuid
            .chunks(4)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join(":"),
        name: name.rsplit(':').next().unwrap_or_default().to_string(),
        raid_disks: le_u32(sb, 92),
        dev_number: le_u32(sb, 160),
        events: le_u64(sb, 200),
        data_offset,
        data_size,
    })
}

/// md's superblock checksum: the 32-bit little-endian words of the superblock and role
/// table (with the checksum field as zero) summed in 64 bits, folded to 32.
pub fn checksum(sb: &[u8], max_dev: u32) -> u32 {
    let len = (256 + 2 * max_dev as usize).min(sb.len());
    let body = sb.get(..len).unwrap_or_default();
    let mut sum: u64 = 0;
    for (i, w) in body.chunks(4).enumerate() {
        let word = match w {
            _ if i == 216 / 4 => 0,
            [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
            [a, b] => u32::from(u16::from_le_bytes([*a, *b])),
            _ => 0,
        };
        sum += u64::from(word);
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// The array device of a RAID1 member: its data area. Other levels are unsupported (a single
/// member of a striped or parity array is not the array).
pub fn raid1_device(dev: &Dev, member: &MdMember) -> Result<Dev> {
    if member.level != 1 {
        return Err(Error::Unsupported {
            layer: LAYER,
            what: format!("RAID level {} (only RAID1 members are read)", member.level),
        });
    }
    Ok(Arc::new(Slice::new(
        dev.clone(),
        member.data_offset,
        member.data_size,
    )?))
}
