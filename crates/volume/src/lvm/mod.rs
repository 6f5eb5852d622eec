//! LVM2: physical volumes are found by their label, grouped into volume groups by the VG UUID
//! in their text metadata, and each logical volume is presented as a [`BlockDevice`] that maps
//! its bytes through linear and striped segments onto the PVs, which may come from several
//! image files.

pub mod config;
pub mod label;
pub mod metadata;

use std::collections::HashMap;
use std::sync::Arc;

use porthole_image::{check_range, BlockDevice, Slice};

use crate::bytes::{mul, Dev};
use crate::error::{Error, Result};
use label::PvLabel;
use metadata::{LvMeta, SegmentKind, VgMeta};

const LAYER: &str = "LVM";

/// A device carrying an LVM2 label, with the newest metadata found in its metadata areas.
#[derive(Debug, Clone)]
pub struct PhysicalVolume {
    pub device: Dev,
    pub label: PvLabel,
    /// `None` for a PV created without metadata copies (`--metadatacopies 0`).
    pub metadata: Option<VgMeta>,
}

/// Reads the label and metadata of a device; `Ok(None)` when it is not an LVM PV.
pub fn probe(device: &Dev) -> Result<Option<PhysicalVolume>> {
    let Some(label) = label::read_label(device.as_ref())? else {
        return Ok(None);
    };
    let mut metadata: Option<VgMeta> = None;
    let mut first_error = None;
    for area in &label.metadata_areas {
        let parsed = label::read_metadata(device.as_ref(), *area).and_then(|text| {
            text.map(|t| config::parse(&t).and_then(|root| metadata::vg_from_config(&root)))
                .transpose()
        });
        match parsed {
            Ok(Some(vg)) if metadata.as_ref().is_none_or(|m| vg.seqno > m.seqno) => {
                metadata = Some(vg)
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // A damaged copy is fine when another one is good; with none good, say why.
    if let (None, Some(e)) = (&metadata, first_error) {
        return Err(e);
    }
    Ok(Some(PhysicalVolume {
        device: device.clone(),
        label,
        metadata,
    }))
}

/// One PV of a volume group: where its extents start and, when it was given, its device.
#[derive(Debug, Clone)]
pub struct VgPv {
    pub name: String,
    pub uuid: String,
    pub device_hint: Option<String>,
    pub pe_start: u64,
    pub pe_count: u64,
    /// `None` when no given device carries this PV's label.
    pub device: Option<Dev>,
}

/// A volume group assembled from the PVs given.
#[derive(Debug, Clone)]
pub struct VolumeGroup {
    pub name: String,
    pub uuid: String,
    pub seqno: u64,
    /// Extent size in bytes.
    pub extent_bytes: u64,
    pub pvs: Vec<VgPv>,
    pub lvs: Vec<LvMeta>,
}

/// Probes every device and assembles the volume groups. A device that is not a PV is an
/// error (use [`probe`] first to filter); PVs that belong to no VG are left out.
pub fn assemble(devices: &[Dev]) -> Result<Vec<VolumeGroup>> {
    let mut pvs = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        match probe(d)? {
            Some(pv) => pvs.push(pv),
            None => {
                return Err(Error::Corrupt {
                    layer: LAYER,
                    offset: 0,
                    what: format!("device {i} has no LVM2 label in sectors 0-3"),
                })
            }
        }
    }
    assemble_pvs(&pvs)
}

/// Groups probed PVs by VG UUID, taking for each VG the metadata copy with the highest seqno.
pub fn assemble_pvs(pvs: &[PhysicalVolume]) -> Result<Vec<VolumeGroup>> {
    let mut newest: HashMap<&str, &VgMeta> = HashMap::new();
    for meta in pvs.iter().filter_map(|p| p.metadata.as_ref()) {
        let slot = newest.entry(meta.uuid.as_str()).or_insert(meta);
        if meta.seqno > slot.seqno {
            *slot = meta;
        }
    }
    let by_uuid: HashMap<&str, &Dev> = pvs
        .iter()
        .map(|p| (p.label.pv_uuid.as_str(), &p.device))
        .collect();
    let mut groups: Vec<VolumeGroup> = newest
        .into_values()
        .map(|meta| VolumeGroup::new(meta, &by_uuid))
        .collect::<Result<_>>()?;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

impl VolumeGroup {
    fn new(meta: &VgMeta, by_uuid: &HashMap<&str, &Dev>) -> Result<Self> {
        let extent_bytes = mul(LAYER, 0, meta.extent_size, 512, "extent size")?;
        let pvs = meta
            .pvs
            .iter()
            .map(|p| VgPv {
                name: p.name.clone(),
                uuid: p.uuid.clone(),
                device_hint: p.device_hint.clone(),
                pe_start: p.pe_start,
                pe_count: p.pe_count,
                device: by_uuid.get(p.uuid.as_str()).map(|d| (*d).clone()),
            })
            .collect();
        Ok(VolumeGroup {
            name: meta.name.clone(),
            uuid: meta.uuid.clone(),
            seqno: meta.seqno,
            extent_bytes,
            pvs,
            lvs: meta.lvs.clone(),
        })
    }

    /// The PVs the metadata lists but no given device carries.
    pub fn missing_pvs(&self) -> Vec<&VgPv> {
        self.pvs.iter().filter(|p| p.device.is_none()).collect()
    }

    /// Opens every LV, each with its own result (a missing PV only fails the LVs on it).
    pub fn logical_volumes(&self) -> Vec<(String, Result<LogicalVolume>)> {
        self.lvs
            .iter()
            .map(|lv| (lv.name.clone(), self.open_lv(lv)))
            .collect()
    }

    /// Opens one LV by name.
    pub fn logical_volume(&self, name: &str) -> Result<LogicalVolume> {
        let lv = self
            .lvs
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::VolumeGroup {
                vg: self.name.clone(),
                what: format!("no logical volume named {name}"),
            })?;
        self.open_lv(lv)
    }

    fn open_lv(&self, lv: &LvMeta) -> Result<LogicalVolume> {
        let mut segments = Vec::with_capacity(lv.segments.len());
        let mut next_extent = 0u64;
        for seg in &lv.segments {
            if seg.start_extent != next_extent {
                return Err(self.err(format!(
                    "LV {}: segments leave a gap or overlap at extent {next_extent}",
                    lv.name
                )));
            }
            segments.push(self.segment(lv, seg)?);
            next_extent = seg
                .start_extent
                .checked_add(seg.extent_count)
                .ok_or_else(|| self.err(format!("LV {}: extent count overflows", lv.name)))?;
        }
        let size = mul(LAYER, 0, next_extent, self.extent_bytes, "LV size")?;
        Ok(LogicalVolume {
            vg: self.name.clone(),
            name: lv.name.clone(),
            uuid: lv.uuid.clone(),
            visible: lv.visible,
            size,
            segments,
        })
    }

    fn err(&self, what: String) -> Error {
        Error::VolumeGroup {
            vg: self.name.clone(),
            what,
        }
    }

    /// Resolves one segment's stripes to slices of PV devices (each slice bounds-checked).
    fn segment(&self, lv: &LvMeta, seg: &metadata::SegmentMeta) -> Result<Segment> {
        let (stripe_size, stripes) = match &seg.kind {
            SegmentKind::Striped {
                stripe_size,
                stripes,
            } => (stripe_size, stripes),
            SegmentKind::Other(ty) => {
                return Err(Error::Unsupported {
                    layer: LAYER,
                    what: format!("LV {}/{} has a \"{ty}\" segment", self.name, lv.name),
                })
            }
        };
        let n = stripes.len() as u64;
        if seg.extent_count == 0 || !seg.extent_count.is_multiple_of(n) {
            return Err(self.err(format!(
                "LV {}: {} extents do not divide into {n} stripes",
                lv.name, seg.extent_count
            )));
        }
        let per_stripe = seg.extent_count / n;
        let area_bytes = mul(LAYER, 0, per_stripe, self.extent_bytes, "stripe length")?;
        let chunk = mul(LAYER, 0, *stripe_size, 512, "stripe size")?;
        if n > 1 && area_bytes % chunk != 0 {
            return Err(self.err(format!(
                "LV {}: stripe length is not a multiple of the stripe size",
                lv.name
            )));
        }
        let areas = stripes
            .iter()
            .map(|(pv_name, first)| self.stripe_area(lv, pv_name, *first, per_stripe, area_bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok(Segment {
            start: mul(
                LAYER,
                0,
                seg.start_extent,
                self.extent_bytes,
                "segment start",
            )?,
            len: mul(
                LAYER,
                0,
                seg.extent_count,
                self.extent_bytes,
                "segment length",
            )?,
            chunk: if n > 1 { chunk } else { area_bytes },
            areas,
        })
    }

    fn stripe_area(
        &self,
        lv: &LvMeta,
        pv_name: &str,
        first: u64,
        extents: u64,
        bytes: u64,
    ) -> Result<Slice<Dev>> {
        let pv =
            self.pvs.iter().find(|p| p.name == pv_name).ok_or_else(|| {
                self.err(format!("LV {} refers to unknown PV {pv_name}", lv.name))
            })?;
        let end = first.checked_add(extents).filter(|&e| e <= pv.pe_count);
        if end.is_none() {
            return Err(self.err(format!(
                "LV {}: extents {first}+{extents} are beyond PV {pv_name}'s {} extents",
                lv.name, pv.pe_count
            )));
        }
        let device = pv.device.clone().ok_or_else(|| Error::MissingPv {
            vg: self.name.clone(),
            lv: lv.name.clone(),
            pv: pv.name.clone(),
            uuid: pv.uuid.clone(),
        })?;
        let start = mul(LAYER, 0, pv.pe_start, 512, "pe_start")?
            .checked_add(mul(LAYER, 0, first, self.extent_bytes, "extent offset")?)
            .ok_or_else(|| self.err("extent offset overflows".into()))?;
        Ok(Slice::new(device, start, bytes)?)
    }
}

/// A contiguous run of the LV mapped onto one or more stripe areas.
#[derive(Debug, Clone)]
struct Segment {
    /// Byte range in the LV.
    start: u64,
    len: u64,
    /// Stripe chunk in bytes (for one stripe: the whole area).
    chunk: u64,
    areas: Vec<Slice<Dev>>,
}

impl Segment {
    /// Maps an offset inside the segment to (area, offset in area, bytes until the chunk ends).
    fn map(&self, rel: u64) -> (usize, u64, u64) {
        let n = self.areas.len() as u64;
        let chunk_no = rel / self.chunk;
        let within = rel % self.chunk;
        let area = (chunk_no % n) as usize;
        let area_off = (chunk_no / n) * self.chunk + within;
        (area, area_off, self.chunk - within)
    }
}

/// A logical volume: a read-only device mapped through its segments.
#[derive(Debug, Clone)]
pub struct LogicalVolume {
    pub vg: String,
    pub name: String,
    pub uuid: String,
    pub visible: bool,
    size: u64,
    segments: Vec<Segment>,
}

impl LogicalVolume {
    /// `/dev/VG/LV`.
    pub fn dev_path(&self) -> String {
        format!("/dev/{}/{}", self.vg, self.name)
    }

    /// `/dev/mapper/VG-LV`, with each `-` inside a name doubled as device-mapper does.
    pub fn mapper_path(&self) -> String {
        format!(
            "/dev/mapper/{}-{}",
            self.vg.replace('-', "--"),
            self.name.replace('-', "--")
        )
    }
}

impl BlockDevice for LogicalVolume {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> porthole_image::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = self.segments.partition_point(|s| s.start + s.len <= pos);
            let Some(seg) = self.segments.get(idx) else {
                return Err(porthole_image::Error::OutOfRange {
                    offset: pos,
                    len: buf.len() - done,
                    size: self.size,
                });
            };
            let (area, area_off, chunk_left) = seg.map(pos - seg.start);
            let seg_left = seg.start + seg.len - pos;
            let n = (buf.len() - done)
                .min(usize::try_from(chunk_left.min(seg_left)).unwrap_or(usize::MAX));
            let Some(dev) = seg.areas.get(area) else {
                return Err(porthole_image::Error::OutOfRange {
                    offset: pos,
                    len: n,
                    size: self.size,
                });
            };
            dev.read_exact_at(&mut buf[done..done + n], area_off)?;
            done += n;
        }
        Ok(())
    }
}

/// Shares an LV as a plain device.
impl From<LogicalVolume> for Dev {
    fn from(lv: LogicalVolume) -> Dev {
        Arc::new(lv)
    }
}
