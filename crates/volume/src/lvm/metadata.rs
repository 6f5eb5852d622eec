//! The volume group model read from the parsed text metadata: PVs (by name and UUID), LVs and
//! their segments. Only what porthole needs to map LV bytes to PV bytes is kept.

use super::config::{Section, Value};
use crate::error::{Error, Result};

/// Caps on counts from the metadata text.
pub const MAX_PVS: usize = 1024;
pub const MAX_LVS: usize = 4096;
pub const MAX_SEGMENTS: usize = 4096;
pub const MAX_STRIPES: usize = 128;

/// One PV as the VG metadata describes it.
#[derive(Debug, Clone)]
pub struct PvMeta {
    /// Name inside the metadata ("pv0").
    pub name: String,
    /// UUID without dashes.
    pub uuid: String,
    /// Device path when the metadata was written: a hint only.
    pub device_hint: Option<String>,
    /// Sectors from the PV start to the first extent.
    pub pe_start: u64,
    pub pe_count: u64,
}

/// How a segment maps to PVs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentKind {
    /// `striped` (linear is striped with one stripe): each stripe is (PV name, first extent).
    Striped {
        stripe_size: u64,
        stripes: Vec<(String, u64)>,
    },
    /// Any other segment type (thin, raid, mirror, cache...), not read by porthole.
    Other(String),
}

#[derive(Debug, Clone)]
pub struct SegmentMeta {
    pub start_extent: u64,
    pub extent_count: u64,
    pub kind: SegmentKind,
}

#[derive(Debug, Clone)]
pub struct LvMeta {
    pub name: String,
    pub uuid: String,
    pub visible: bool,
    pub segments: Vec<SegmentMeta>,
}

/// A volume group's metadata.
#[derive(Debug, Clone)]
pub struct VgMeta {
    pub name: String,
    pub uuid: String,
    pub seqno: u64,
    /// Extent size in sectors.
    pub extent_size: u64,
    pub pvs: Vec<PvMeta>,
    pub lvs: Vec<LvMeta>,
}

/// LVM prints UUIDs with dashes in the text and stores them without in labels.
pub fn strip_dashes(uuid: &str) -> String {
    uuid.chars().filter(|&c| c != '-').collect()
}

/// Builds the VG model from parsed metadata: the one top-level section that has a `seqno`.
pub fn vg_from_config(root: &Section) -> Result<VgMeta> {
    let (name, vg) = root
        .sections()
        .find(|(_, s)| s.get("seqno").is_some())
        .ok_or_else(|| Error::VolumeGroup {
            vg: "?".into(),
            what: "metadata has no volume group section".into(),
        })?;
    let err = |what: String| Error::VolumeGroup {
        vg: name.to_string(),
        what,
    };
    let num = |s: &Section, key: &str, whose: &str| -> Result<u64> {
        s.int(key)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| err(format!("{whose}: missing or negative \"{key}\"")))
    };
    let text = |s: &Section, key: &str, whose: &str| -> Result<String> {
        s.str(key)
            .map(str::to_string)
            .ok_or_else(|| err(format!("{whose}: missing \"{key}\"")))
    };
    let extent_size = num(vg, "extent_size", "VG")?;
    if extent_size == 0 {
        return Err(err("extent_size is 0".into()));
    }
    let mut pvs = Vec::new();
    for (pv_name, pv) in vg
        .section("physical_volumes")
        .map(Section::sections)
        .into_iter()
        .flatten()
    {
        if pvs.len() == MAX_PVS {
            return Err(Error::limit(
                "LVM metadata",
                0,
                "physical volume count",
                MAX_PVS as u64,
            ));
        }
        let whose = format!("PV {pv_name}");
        pvs.push(PvMeta {
            name: pv_name.to_string(),
            uuid: strip_dashes(&text(pv, "id", &whose)?),
            device_hint: pv.str("device").map(str::to_string),
            pe_start: num(pv, "pe_start", &whose)?,
            pe_count: num(pv, "pe_count", &whose)?,
        });
    }
    let mut lvs = Vec::new();
    for (lv_name, lv) in vg
        .section("logical_volumes")
        .map(Section::sections)
        .into_iter()
        .flatten()
    {
        if lvs.len() == MAX_LVS {
            return Err(Error::limit(
                "LVM metadata",
                0,
                "logical volume count",
                MAX_LVS as u64,
            ));
        }
        let whose = format!("LV {lv_name}");
        let visible = lv
            .list("status")
            .is_some_and(|l| l.iter().any(|v| v == &Value::Str("VISIBLE".into())));
        let mut segments = Vec::new();
        for (seg_name, seg) in lv.sections() {
            if segments.len() == MAX_SEGMENTS {
                return Err(Error::limit(
                    "LVM metadata",
                    0,
                    format!("{whose} segment count"),
                    MAX_SEGMENTS as u64,
                ));
            }
            let whose = format!("{whose} {seg_name}");
            segments.push(SegmentMeta {
                start_extent: num(seg, "start_extent", &whose)?,
                extent_count: num(seg, "extent_count", &whose)?,
                kind: segment_kind(seg, &whose).map_err(err)?,
            });
        }
        segments.sort_by_key(|s| s.start_extent);
        lvs.push(LvMeta {
            name: lv_name.to_string(),
            uuid: strip_dashes(&text(lv, "id", &whose)?),
            visible,
            segments,
        });
    }
    Ok(VgMeta {
        name: name.to_string(),
        uuid: strip_dashes(&text(vg, "id", "VG")?),
        seqno: num(vg, "seqno", "VG")?,
        extent_size,
        pvs,
        lvs,
    })
}

fn segment_kind(seg: &Section, whose: &str) -> Result<SegmentKind, String> {
    let ty = seg
        .str("type")
        .ok_or_else(|| format!("{whose}: missing \"type\""))?;
    if ty != "striped" {
        return Ok(SegmentKind::Other(ty.to_string()));
    }
    let list = seg
        .list("stripes")
        .ok_or_else(|| format!("{whose}: missing \"stripes\""))?;
    if list.len() > 2 * MAX_STRIPES {
        return Err(format!("{whose}: more than {MAX_STRIPES} stripes"));
    }
    let stripes = list
        .chunks(2)
        .map(|pair| match pair {
            [Value::Str(pv), Value::Int(ext)] if *ext >= 0 => Ok((pv.clone(), *ext as u64)),
            _ => Err(format!(
                "{whose}: \"stripes\" must be pairs of PV name and extent"
            )),
        })
        .collect::<Result<Vec<_>, String>>()?;
    if stripes.is_empty() {
        return Err(format!("{whose}: no stripes"));
    }
    let stripe_size = match seg.int("stripe_size") {
        Some(s) if s > 0 => s as u64,
        None if stripes.len() == 1 => 0,
        _ => return Err(format!("{whose}: missing or invalid \"stripe_size\"")),
    };
    Ok(SegmentKind::Striped {
        stripe_size,
        stripes,
    })
}
