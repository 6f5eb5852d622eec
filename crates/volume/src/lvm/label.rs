//! LVM2 on-disk structures: the PV label ("LABELONE", in one of sectors 0-3), the PV header
//! that follows it, and the metadata area header whose ring buffer holds the text metadata.

use porthole_image::BlockDevice;

use crate::bytes::{crc32_raw, le_u32, le_u64, read_at};
use crate::error::{Error, Result};

const LAYER: &str = "LVM label";
const MDA_LAYER: &str = "LVM metadata area";
/// LVM's CRC seed for labels and metadata.
pub const INITIAL_CRC: u32 = 0xf597_a6cf;
pub const MDA_MAGIC: &[u8; 16] = b"\x20LVM2\x20x[5A%r0N*>";
const MDA_HEADER_SIZE: u64 = 512;
/// Text metadata larger than this is refused (lvm2's default area is 1 MiB).
pub const MAX_METADATA: u64 = 16 << 20;
/// At most this many data or metadata areas per PV header (lvm2 writes 1 and at most 2).
pub const MAX_AREAS: usize = 8;

/// A region of the PV, in bytes from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub offset: u64,
    pub size: u64,
}

/// The PV label and header.
#[derive(Debug, Clone)]
pub struct PvLabel {
    /// Sector (0-3) the label was found in.
    pub sector: u64,
    /// PV UUID, 32 characters without dashes.
    pub pv_uuid: String,
    pub device_size: u64,
    pub data_areas: Vec<Area>,
    pub metadata_areas: Vec<Area>,
}

/// Reads the first four sectors and parses a label if there is one (`Ok(None)` otherwise).
pub fn read_label(dev: &dyn BlockDevice) -> Result<Option<PvLabel>> {
    let len = dev.size().min(2048) as usize;
    parse_label(&read_at(dev, 0, len)?)
}

/// Parses the label from the first sectors of a device (up to 2048 bytes).
pub fn parse_label(head: &[u8]) -> Result<Option<PvLabel>> {
    for (sector, s) in (0u64..).zip(head.chunks_exact(512).take(4)) {
        if s.get(0..8) == Some(&b"LABELONE"[..]) {
            return parse_sector(s, sector).map(Some);
        }
    }
    Ok(None)
}

fn parse_sector(s: &[u8], sector: u64) -> Result<PvLabel> {
    let at = sector * 512;
    let bad = |off: u64, what: String| Error::corrupt(LAYER, at + off, what);
    if le_u64(s, 8) != sector {
        return Err(bad(
            8,
            format!(
                "label says it is in sector {} but was found in sector {sector}",
                le_u64(s, 8)
            ),
        ));
    }
    let stored = le_u32(s, 16);
    let computed = crc32_raw(INITIAL_CRC, s.get(20..).unwrap_or_default());
    if stored != computed {
        return Err(bad(
            16,
            format!("label CRC {stored:#010x} does not match computed {computed:#010x}"),
        ));
    }
    if s.get(24..32) != Some(&b"LVM2 001"[..]) {
        return Err(bad(24, "label type is not \"LVM2 001\"".into()));
    }
    let hdr = le_u32(s, 20) as usize;
    let pv = s.get(hdr..).filter(|pv| pv.len() >= 40).ok_or_else(|| {
        bad(
            20,
            format!("PV header offset {hdr} is outside the label sector"),
        )
    })?;
    let uuid = pv.get(..32).unwrap_or_default();
    if !uuid.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad(hdr as u64, "PV UUID is not alphanumeric".into()));
    }
    let mut pos = 40;
    let data_areas = areas(pv, &mut pos).map_err(|w| bad(hdr as u64, w))?;
    let metadata_areas = areas(pv, &mut pos).map_err(|w| bad(hdr as u64, w))?;
    Ok(PvLabel {
        sector,
        pv_uuid: String::from_utf8_lossy(uuid).into_owned(),
        device_size: le_u64(pv, 32),
        data_areas,
        metadata_areas,
    })
}

/// A zero-terminated list of (offset, size) pairs.
fn areas(pv: &[u8], pos: &mut usize) -> Result<Vec<Area>, String> {
    let mut out = Vec::new();
    loop {
        if *pos + 16 > pv.len() {
            return Err("area list runs past the label sector".into());
        }
        let area = Area {
            offset: le_u64(pv, *pos),
            size: le_u64(pv, *pos + 8),
        };
        *pos += 16;
        if area.offset == 0 {
            return Ok(out);
        }
        if out.len() == MAX_AREAS {
            return Err(format!("more than {MAX_AREAS} areas"));
        }
        out.push(area);
    }
}

/// Where the current metadata text is inside a metadata area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLocation {
    /// From the start of the metadata area.
    pub offset: u64,
    pub size: u64,
    pub checksum: u32,
}

/// Parses a 512-byte metadata area header read from `area`; `Ok(None)` when the area holds no
/// metadata (a fresh or ignored area).
pub fn parse_mda_header(h: &[u8], area: Area) -> Result<Option<RawLocation>> {
    let bad =
        |off: u64, what: String| Error::corrupt(MDA_LAYER, area.offset.saturating_add(off), what);
    if h.get(4..20) != Some(&MDA_MAGIC[..]) {
        return Err(bad(4, "bad metadata area magic".into()));
    }
    let stored = le_u32(h, 0);
    let computed = crc32_raw(
        INITIAL_CRC,
        h.get(4..MDA_HEADER_SIZE as usize).unwrap_or_default(),
    );
    if stored != computed {
        return Err(bad(
            0,
            format!("header CRC {stored:#010x} does not match computed {computed:#010x}"),
        ));
    }
    if le_u32(h, 20) != 1 {
        return Err(bad(
            20,
            format!("unknown metadata area version {}", le_u32(h, 20)),
        ));
    }
    if le_u64(h, 24) != area.offset {
        return Err(bad(
            24,
            format!("header says the area starts at {:#x}", le_u64(h, 24)),
        ));
    }
    let loc = RawLocation {
        offset: le_u64(h, 40),
        size: le_u64(h, 48),
        checksum: le_u32(h, 56),
    };
    let ignored = le_u32(h, 60) & 1 != 0;
    if loc.offset == 0 || loc.size == 0 || ignored {
        return Ok(None);
    }
    if loc.size > MAX_METADATA {
        return Err(Error::limit(
            MDA_LAYER,
            area.offset + 48,
            format!("{}-byte metadata", loc.size),
            MAX_METADATA,
        ));
    }
    if loc.offset < MDA_HEADER_SIZE
        || loc.offset >= area.size
        || loc.size > area.size - MDA_HEADER_SIZE
    {
        return Err(bad(
            40,
            format!(
                "metadata at {:#x}+{:#x} does not fit the {:#x}-byte area",
                loc.offset, loc.size, area.size
            ),
        ));
    }
    Ok(Some(loc))
}

/// Reads the current metadata text of one metadata area (following the ring buffer's wrap)
/// and checks its CRC. `Ok(None)` when the area holds none.
pub fn read_metadata(dev: &dyn BlockDevice, area: Area) -> Result<Option<Vec<u8>>> {
    let header = read_at(dev, area.offset, MDA_HEADER_SIZE as usize)?;
    let Some(loc) = parse_mda_header(&header, area)? else {
        return Ok(None);
    };
    // Both bounded by MAX_METADATA through parse_mda_header.
    let first = loc.size.min(area.size - loc.offset);
    let mut text = read_at(dev, area.offset + loc.offset, first as usize)?;
    if first < loc.size {
        let rest = read_at(
            dev,
            area.offset + MDA_HEADER_SIZE,
            (loc.size - first) as usize,
        )?;
        text.extend_from_slice(&rest);
    }
    let computed = crc32_raw(INITIAL_CRC, &text);
    if computed != loc.checksum {
        return Err(Error::corrupt(
            MDA_LAYER,
            area.offset + loc.offset,
            format!(
                "metadata CRC {:#010x} does not match computed {computed:#010x}",
                loc.checksum
            ),
        ));
    }
    Ok(Some(text))
}
