//! A hosted sparse extent (`KDMV`): a grain directory of grain tables of grain offsets.
//! monolithicSparse, twoGbMaxExtentSparse pieces and streamOptimized (compressed grains behind
//! markers, the real header in a footer when the header's gdOffset is GD_AT_END) share it.

use std::sync::Arc;

use crate::bytes::{corrupt, le16, le32, le64, read_meta, unsupported};
use crate::cache::{Cache, Key};
use crate::compress::{decode, Codec};
use crate::mapped::Piece;
use crate::open::Dev;
use crate::{BlockDevice, Result};

use super::FORMAT;

pub(crate) const MAGIC: &[u8] = b"KDMV";
const GD_AT_END: u64 = u64::MAX;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
/// A grain table entry of 1 marks a zeroed grain.
const GTE_ZERO: u32 = 1;
/// Largest grain accepted (4096 sectors = 2 MiB); it bounds each decoded block.
const MAX_GRAIN_SECTORS: u64 = 4096;
const GD_CHUNK: u64 = 4096;

const KIND_GD: u8 = 10;
const KIND_GT: u8 = 11;
const KIND_GRAIN: u8 = 12;

/// Header fields porthole uses.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub capacity: u64,
    pub grain: u64,
    pub descriptor: (u64, u64),
    gtes_per_gt: u64,
    gd_offset: u64,
    flags: u32,
}

pub(crate) fn parse_header(file: &dyn BlockDevice) -> Result<Header> {
    let h = read_meta(
        file,
        FORMAT,
        0,
        512.min(file.size()),
        "sparse extent header",
    )?;
    let mut hdr = header_fields(&h, 0)?;
    if hdr.gd_offset == GD_AT_END {
        // streamOptimized: footer marker, footer (a header copy), end-of-stream marker.
        let at = file
            .size()
            .checked_sub(1024)
            .ok_or_else(|| corrupt(FORMAT, 56, "GD_AT_END but no footer"))?;
        let f = read_meta(file, FORMAT, at, 512, "footer")?;
        hdr = header_fields(&f, at)?;
        if hdr.gd_offset == GD_AT_END {
            return Err(corrupt(FORMAT, at + 56, "footer has GD_AT_END too"));
        }
    }
    Ok(hdr)
}

fn header_fields(h: &[u8], at: u64) -> Result<Header> {
    if !h.starts_with(MAGIC) || h.len() < 80 {
        return Err(corrupt(FORMAT, at, "no sparse extent header (KDMV)"));
    }
    let version = le32(h, 4);
    if !(1..=3).contains(&version) {
        return Err(unsupported(
            FORMAT,
            format!("sparse extent version {version}"),
        ));
    }
    let flags = le32(h, 8);
    let grain = le64(h, 20);
    if !grain.is_power_of_two() || grain > MAX_GRAIN_SECTORS {
        return Err(corrupt(
            FORMAT,
            at + 20,
            format!("grain size of {grain} sectors"),
        ));
    }
    let gtes = u64::from(le32(h, 44));
    if gtes == 0 || gtes > 512 {
        return Err(corrupt(
            FORMAT,
            at + 44,
            format!("{gtes} entries per grain table"),
        ));
    }
    if flags & FLAG_COMPRESSED != 0 && le16(h, 77) != 1 {
        return Err(unsupported(
            FORMAT,
            format!("compression algorithm {}", le16(h, 77)),
        ));
    }
    let capacity = le64(h, 12)
        .checked_mul(512)
        .ok_or_else(|| corrupt(FORMAT, at + 12, "capacity overflows"))?;
    Ok(Header {
        capacity,
        grain: grain * 512,
        descriptor: (
            le64(h, 28).saturating_mul(512),
            le64(h, 36).saturating_mul(512),
        ),
        gtes_per_gt: gtes,
        gd_offset: le64(h, 56),
        flags,
    })
}

/// One opened sparse extent.
pub(crate) struct Sparse {
    file: Dev,
    cache: Arc<Cache>,
    id: u64,
    h: Header,
    gd_entries: u64,
}

impl std::fmt::Debug for Sparse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sparse").field("header", &self.h).finish()
    }
}

impl Sparse {
    pub(crate) fn new(file: Dev, h: Header, cache: Arc<Cache>) -> Result<Self> {
        let span = h.grain * h.gtes_per_gt;
        let gd_entries = h.capacity.div_ceil(span);
        let gd_at = h.gd_offset.checked_mul(512);
        let end = gd_at.and_then(|a| a.checked_add(gd_entries * 4));
        if end.is_none_or(|e| e > file.size()) {
            return Err(corrupt(FORMAT, 56, format!("grain directory of {gd_entries} entries at sector {} is past the end of the file", h.gd_offset)));
        }
        Ok(Self {
            id: cache.new_id(),
            file,
            cache,
            h,
            gd_entries,
        })
    }

    pub(crate) fn file(&self) -> &dyn BlockDevice {
        self.file.as_ref()
    }

    fn gd_entry(&self, index: u64) -> Result<u32> {
        let chunk = index * 4 / GD_CHUNK * GD_CHUNK;
        let at = self.h.gd_offset * 512 + chunk;
        let len = (self.gd_entries * 4 - chunk).min(GD_CHUNK);
        let key = Key {
            image: self.id,
            kind: KIND_GD,
            offset: at,
        };
        let gd = self.cache.get_or_load(key, || {
            read_meta(self.file.as_ref(), FORMAT, at, len, "grain directory")
        })?;
        Ok(le32(&gd, (index * 4 - chunk) as usize))
    }

    /// Where the extent's bytes at `off` live, and for how many bytes.
    pub(crate) fn map(&self, off: u64) -> Result<(Piece, u64)> {
        if off >= self.h.capacity {
            return Ok((Piece::Zero, u64::MAX));
        }
        let grain = off / self.h.grain;
        let within = off % self.h.grain;
        let run = self.h.grain - within;
        let gd_index = grain / self.h.gtes_per_gt;
        let gt_sector = self.gd_entry(gd_index)?;
        if gt_sector == 0 {
            return Ok((Piece::Backing, run));
        }
        let gt_at = u64::from(gt_sector) * 512;
        let key = Key {
            image: self.id,
            kind: KIND_GT,
            offset: gt_at,
        };
        let len = self.h.gtes_per_gt * 4;
        let gt = self.cache.get_or_load(key, || {
            read_meta(self.file.as_ref(), FORMAT, gt_at, len, "grain table")
        })?;
        let gte = le32(&gt, ((grain % self.h.gtes_per_gt) * 4) as usize);
        Ok(match gte {
            0 => (Piece::Backing, run),
            GTE_ZERO => (Piece::Zero, run),
            s if self.h.flags & FLAG_COMPRESSED != 0 => (
                Piece::Decoded(self.grain(u64::from(s) * 512, grain)?, within as usize),
                run,
            ),
            s => (Piece::Data(u64::from(s) * 512 + within), run),
        })
    }

    /// Decodes a compressed grain: with markers, `lba u64, size u32` precede the zlib data.
    fn grain(&self, at: u64, index: u64) -> Result<Arc<[u8]>> {
        let key = Key {
            image: self.id,
            kind: KIND_GRAIN,
            offset: at,
        };
        // The last grain of a disk that is not a whole number of grains is stored short.
        let out = (self.h.capacity - index * self.h.grain).min(self.h.grain) as usize;
        let rest = self.file.size().saturating_sub(at);
        self.cache.get_or_load(key, || {
            let (data_at, len) = if self.h.flags & FLAG_MARKERS != 0 {
                let m = read_meta(self.file.as_ref(), FORMAT, at, 12.min(rest), "grain marker")?;
                (at + 12, u64::from(le32(&m, 8)))
            } else {
                (at, rest.min(self.h.grain * 2))
            };
            if len > self.h.grain * 2 + 1024 {
                return Err(corrupt(
                    FORMAT,
                    at,
                    format!("compressed grain of {len} bytes"),
                ));
            }
            let input = read_meta(self.file.as_ref(), FORMAT, data_at, len, "compressed grain")?;
            let mut grain = decode(Codec::Zlib, &input, out, FORMAT, data_at)?;
            grain.resize(self.h.grain as usize, 0);
            Ok(grain)
        })
    }
}
