//! VHDX (fixed, dynamic, differencing), read-only.
//!
//! Two headers (64 KiB, 128 KiB; the valid one with the highest sequence number is current),
//! two region tables (192 KiB, 256 KiB) locating the BAT and the metadata region, metadata
//! items (block size, virtual size, sector size, parent locator), and the BAT: per chunk,
//! `chunk_ratio` payload block entries followed by one sector bitmap entry. A non-empty log
//! (log GUID set) means the image was not closed cleanly and needs replay, which would be a
//! write: such images are refused rather than read inconsistently.

use std::sync::Arc;

use crate::bytes::{corrupt, le16, le32, le64, read_meta, unsupported, utf16le};
use crate::cache::{Cache, Key};
use crate::mapped::{read_mapped, Piece};
use crate::open::{Ctx, Dev};
use crate::{check_range, BlockDevice, Result};

pub(crate) const MAGIC: &[u8] = b"vhdxfile";
const FORMAT: &str = "vhdx";

pub(crate) const HEADER_AT: [u64; 2] = [64 << 10, 128 << 10];
pub(crate) const REGION_AT: [u64; 2] = [192 << 10, 256 << 10];
pub(crate) const REGION_LEN: u64 = 64 << 10;

const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let (a, b, c) = (d1.to_le_bytes(), d2.to_le_bytes(), d3.to_le_bytes());
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

pub(crate) const BAT_GUID: [u8; 16] = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
pub(crate) const METADATA_GUID: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
pub(crate) const FILE_PARAMETERS: [u8; 16] = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
pub(crate) const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
pub(crate) const VIRTUAL_DISK_ID: [u8; 16] = guid(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
pub(crate) const LOGICAL_SECTOR_SIZE: [u8; 16] = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
pub(crate) const PHYSICAL_SECTOR_SIZE: [u8; 16] = guid(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);
pub(crate) const PARENT_LOCATOR: [u8; 16] = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);

/// BAT entry states (payload blocks; a present sector bitmap block is also 6).
const NOT_PRESENT: u64 = 0;
const UNDEFINED: u64 = 1;
const ZERO: u64 = 2;
const UNMAPPED: u64 = 3;
const FULLY_PRESENT: u64 = 6;
const PARTIALLY_PRESENT: u64 = 7;

const BAT_CHUNK: u64 = 4096;
const BITMAP_PAGE: u64 = 4096;
const KIND_BAT: u8 = 20;
const KIND_BITMAP: u8 = 21;

const CRC32C_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = (c >> 1) ^ (0x82F6_3B78 & (c & 1).wrapping_neg());
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32C (Castagnoli), as the VHDX header, region table and log use.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Checks a structure whose CRC-32C sits at byte 4 and is computed with that field zeroed.
fn checksum_ok(block: &[u8]) -> bool {
    let mut copy = block.to_vec();
    if let Some(f) = copy.get_mut(4..8) {
        f.fill(0);
    }
    crc32c(&copy) == le32(block, 4)
}

#[derive(Debug, Clone)]
struct Params {
    size: u64,
    block: u64,
    sector: u64,
    chunk_ratio: u64,
    has_parent: bool,
    bat_at: u64,
    bat_len: u64,
}

/// An opened VHDX image.
pub struct Vhdx {
    file: Dev,
    cache: Arc<Cache>,
    id: u64,
    p: Params,
    parent: Option<Dev>,
}

impl std::fmt::Debug for Vhdx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vhdx")
            .field("params", &self.p)
            .field("parent", &self.parent)
            .finish()
    }
}

pub(crate) fn open(file: Dev, ctx: &Ctx) -> Result<Dev> {
    let f = file.as_ref();
    let id = read_meta(f, FORMAT, 0, 8.min(f.size()), "file identifier")?;
    if id != MAGIC {
        return Err(corrupt(FORMAT, 0, "no vhdxfile signature"));
    }
    current_header(f)?;
    let (bat, meta) = regions(f)?;
    let (p, locator) = metadata(f, bat, meta)?;
    let parent = match (p.has_parent, locator) {
        (false, _) => None,
        (true, None) => {
            return Err(corrupt(
                FORMAT,
                meta.0,
                "differencing image without parent locator",
            ))
        }
        (true, Some(candidates)) => Some(ctx.open_backing(FORMAT, &candidates, None)?),
    };
    Ok(Arc::new(Vhdx {
        file,
        cache: ctx.cache.clone(),
        id: ctx.cache.new_id(),
        p,
        parent,
    }))
}

/// Picks the valid header with the highest sequence number; refuses a pending log.
fn current_header(f: &dyn BlockDevice) -> Result<Vec<u8>> {
    let mut best: Option<Vec<u8>> = None;
    for at in HEADER_AT {
        let Ok(h) = read_meta(f, FORMAT, at, 4096, "header") else {
            continue;
        };
        if h.starts_with(b"head")
            && checksum_ok(&h)
            && best.as_ref().is_none_or(|b| le64(&h, 8) > le64(b, 8))
        {
            best = Some(h);
        }
    }
    let h = best.ok_or_else(|| {
        corrupt(
            FORMAT,
            HEADER_AT[0],
            "neither header is valid (signature or CRC-32C)",
        )
    })?;
    if le16(&h, 66) != 1 {
        return Err(unsupported(
            FORMAT,
            format!("header version {}", le16(&h, 66)),
        ));
    }
    if h.get(48..64).is_some_and(|g| g.iter().any(|&b| b != 0)) {
        return Err(unsupported(
            FORMAT,
            "the log is not empty (image not closed cleanly); porthole does not replay it",
        ));
    }
    Ok(h)
}

/// Returns (offset, length) of the BAT and metadata regions from the first valid region table.
fn regions(f: &dyn BlockDevice) -> Result<((u64, u64), (u64, u64))> {
    let table = REGION_AT
        .iter()
        .filter_map(|&at| {
            read_meta(f, FORMAT, at, REGION_LEN, "region table")
                .ok()
                .map(|t| (at, t))
        })
        .find(|(_, t)| t.starts_with(b"regi") && checksum_ok(t));
    let (at, t) =
        table.ok_or_else(|| corrupt(FORMAT, REGION_AT[0], "neither region table is valid"))?;
    let count = le32(&t, 8);
    if count > 2047 {
        return Err(corrupt(FORMAT, at + 8, format!("{count} region entries")));
    }
    let (mut bat, mut meta) = (None, None);
    for i in 0..count as usize {
        let e = 16 + i * 32;
        let region = (le64(&t, e + 16), u64::from(le32(&t, e + 24)));
        match t.get(e..e + 16) {
            Some(g) if g == BAT_GUID => bat = Some(region),
            Some(g) if g == METADATA_GUID => meta = Some(region),
            _ if le32(&t, e + 28) & 1 != 0 => {
                return Err(unsupported(
                    FORMAT,
                    format!("unknown required region (entry {i})"),
                ))
            }
            _ => {}
        }
    }
    match (bat, meta) {
        (Some(b), Some(m)) => Ok((b, m)),
        _ => Err(corrupt(
            FORMAT,
            at,
            "region table lacks the BAT or metadata region",
        )),
    }
}

fn metadata(
    f: &dyn BlockDevice,
    bat: (u64, u64),
    meta: (u64, u64),
) -> Result<(Params, Option<Vec<String>>)> {
    let m = read_meta(f, FORMAT, meta.0, meta.1, "metadata region")?;
    if !m.starts_with(b"metadata") {
        return Err(corrupt(FORMAT, meta.0, "metadata table signature"));
    }
    let count = le16(&m, 10);
    if count > 2047 {
        return Err(corrupt(
            FORMAT,
            meta.0 + 10,
            format!("{count} metadata entries"),
        ));
    }
    let (mut block, mut flags, mut size, mut sector, mut locator) = (None, 0, None, None, None);
    for i in 0..usize::from(count) {
        let e = 32 + i * 32;
        let (off, len) = (le32(&m, e + 16) as usize, le32(&m, e + 20) as usize);
        let item = m.get(off..off.saturating_add(len)).ok_or_else(|| {
            corrupt(
                FORMAT,
                meta.0 + e as u64,
                format!("metadata item of {len} bytes at {off:#x} outside the region"),
            )
        })?;
        match m.get(e..e + 16) {
            Some(g) if g == FILE_PARAMETERS => {
                block = Some(u64::from(le32(item, 0)));
                flags = le32(item, 4);
            }
            Some(g) if g == VIRTUAL_DISK_SIZE => size = Some(le64(item, 0)),
            Some(g) if g == LOGICAL_SECTOR_SIZE => sector = Some(u64::from(le32(item, 0))),
            Some(g) if g == PARENT_LOCATOR => {
                locator = Some(parent_locator(item, meta.0 + off as u64)?)
            }
            Some(g) if g == VIRTUAL_DISK_ID || g == PHYSICAL_SECTOR_SIZE => {}
            _ if le32(&m, e + 24) & 4 != 0 => {
                return Err(unsupported(
                    FORMAT,
                    format!("unknown required metadata item (entry {i})"),
                ))
            }
            _ => {}
        }
    }
    let missing = |what| corrupt(FORMAT, meta.0, format!("metadata lacks {what}"));
    let block = block.ok_or_else(|| missing("file parameters"))?;
    let size = size.ok_or_else(|| missing("virtual disk size"))?;
    let sector = sector.ok_or_else(|| missing("logical sector size"))?;
    if !block.is_power_of_two() || !((1 << 20)..=(256 << 20)).contains(&block) {
        return Err(corrupt(FORMAT, meta.0, format!("block size {block}")));
    }
    if sector != 512 && sector != 4096 {
        return Err(corrupt(
            FORMAT,
            meta.0,
            format!("logical sector size {sector}"),
        ));
    }
    let p = Params {
        size,
        block,
        sector,
        chunk_ratio: (sector << 23) / block,
        has_parent: flags & 2 != 0,
        bat_at: bat.0,
        bat_len: bat.1,
    };
    check_bat(&p, f.size())?;
    Ok((p, locator))
}

/// The BAT must cover every block (and, for differencing images, every sector bitmap).
fn check_bat(p: &Params, file_size: u64) -> Result<()> {
    let blocks = p.size.div_ceil(p.block);
    let entries = if p.has_parent {
        blocks.div_ceil(p.chunk_ratio) * (p.chunk_ratio + 1)
    } else {
        blocks + blocks.saturating_sub(1) / p.chunk_ratio
    };
    let end = p.bat_at.checked_add(p.bat_len);
    if entries.saturating_mul(8) > p.bat_len || end.is_none_or(|e| e > file_size) {
        return Err(corrupt(
            FORMAT,
            p.bat_at,
            format!(
                "BAT of {} bytes cannot hold {entries} entries or lies past the end of the file",
                p.bat_len
            ),
        ));
    }
    Ok(())
}

/// Candidate parent paths from a parent locator: the relative path first, then the absolute
/// ones; Windows separators become `/`.
fn parent_locator(item: &[u8], at: u64) -> Result<Vec<String>> {
    let count = usize::from(le16(item, 18));
    let mut found: Vec<(usize, String)> = Vec::new();
    for i in 0..count.min(256) {
        let e = 20 + i * 12;
        let text = |off: usize, len: usize| {
            item.get(off..off.saturating_add(len))
                .map(utf16le)
                .ok_or_else(|| {
                    corrupt(
                        FORMAT,
                        at + e as u64,
                        "parent locator entry outside the item",
                    )
                })
        };
        let key = text(le32(item, e) as usize, usize::from(le16(item, e + 8)))?;
        let value = text(le32(item, e + 4) as usize, usize::from(le16(item, e + 10)))?;
        let rank = match key.as_str() {
            "relative_path" => 0,
            "volume_path" => 1,
            "absolute_win32_path" => 2,
            _ => continue,
        };
        found.push((rank, value.replace('\\', "/")));
    }
    found.sort();
    if found.is_empty() {
        return Err(corrupt(FORMAT, at, "parent locator has no path"));
    }
    Ok(found.into_iter().map(|(_, v)| v).collect())
}

impl Vhdx {
    fn bat(&self, index: u64) -> Result<u64> {
        let chunk = index * 8 / BAT_CHUNK * BAT_CHUNK;
        let at = self.p.bat_at + chunk;
        let len = (self.p.bat_len - chunk).min(BAT_CHUNK);
        let key = Key {
            image: self.id,
            kind: KIND_BAT,
            offset: at,
        };
        let t = self.cache.get_or_load(key, || {
            read_meta(self.file.as_ref(), FORMAT, at, len, "BAT")
        })?;
        Ok(le64(&t, (index * 8 - chunk) as usize))
    }

    fn map(&self, off: u64) -> Result<(Piece, u64)> {
        let (bs, ratio) = (self.p.block, self.p.chunk_ratio);
        let block = off / bs;
        let within = off % bs;
        let index = block + block / ratio;
        let entry = self.bat(index)?;
        let host = entry >> 20 << 20;
        let entry_at = self.p.bat_at + index * 8;
        let run = bs - within;
        match entry & 7 {
            NOT_PRESENT => Ok((Piece::Backing, run)),
            UNDEFINED | ZERO | UNMAPPED => Ok((Piece::Zero, run)),
            FULLY_PRESENT if host != 0 => Ok((Piece::Data(host + within), run)),
            PARTIALLY_PRESENT if host != 0 && self.parent.is_some() => {
                let (present, run) = self.bitmap(block, within)?;
                Ok((
                    if present {
                        Piece::Data(host + within)
                    } else {
                        Piece::Backing
                    },
                    run,
                ))
            }
            state => Err(corrupt(
                FORMAT,
                entry_at,
                format!("payload BAT entry {entry:#x} (state {state}) for block {block}"),
            )),
        }
    }

    /// Whether the sector at `within` of `block` is present in this file (else in the parent),
    /// and for how many bytes that holds (to the end of its bitmap byte run, bounded).
    fn bitmap(&self, block: u64, within: u64) -> Result<(bool, u64)> {
        let ratio = self.p.chunk_ratio;
        let chunk = block / ratio;
        let index = chunk * (ratio + 1) + ratio;
        let entry = self.bat(index)?;
        if entry & 7 != FULLY_PRESENT || entry >> 20 == 0 {
            return Err(corrupt(
                FORMAT,
                self.p.bat_at + index * 8,
                format!("sector bitmap entry {entry:#x} not present"),
            ));
        }
        let sector = ((block % ratio) * self.p.block + within) / self.p.sector;
        let page_at = (entry >> 20 << 20) + sector / 8 / BITMAP_PAGE * BITMAP_PAGE;
        let key = Key {
            image: self.id,
            kind: KIND_BITMAP,
            offset: page_at,
        };
        let page = self.cache.get_or_load(key, || {
            read_meta(
                self.file.as_ref(),
                FORMAT,
                page_at,
                BITMAP_PAGE,
                "sector bitmap",
            )
        })?;
        let bit = |s: u64| {
            page.get((s / 8 % BITMAP_PAGE) as usize)
                .is_some_and(|b| b >> (s % 8) & 1 != 0)
        };
        let present = bit(sector);
        // Extend over following sectors with the same state, within this page and block.
        let page_end = (sector / (8 * BITMAP_PAGE) + 1) * 8 * BITMAP_PAGE;
        let block_end = (block % ratio + 1) * self.p.block / self.p.sector;
        let mut end = sector + 1;
        while end < page_end.min(block_end) && bit(end) == present {
            end += 1;
        }
        let run = end * self.p.sector - ((block % ratio) * self.p.block + within);
        Ok((present, run))
    }
}

impl BlockDevice for Vhdx {
    fn size(&self) -> u64 {
        self.p.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.p.size)?;
        let parent = (self.parent.as_deref(), 0);
        read_mapped(buf, offset, FORMAT, self.file.as_ref(), parent, |at| {
            self.map(at)
        })
    }
}
