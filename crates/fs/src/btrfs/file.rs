//! Reading file data from EXTENT_DATA items: inline, regular, prealloc and holes, each possibly
//! compressed. Gaps between extents (NO_HOLES filesystems) read as zeros.

use std::sync::{Arc, Mutex};

use super::bytes::corrupt;
use super::compress::{self, MAX_COMPRESSED};
use super::items::{self, Extent, COMPRESS_NONE, EXTENT_DATA};
use super::tree::{Cursor, Key, Tree};
use super::volume::Volume;
use crate::Result;

/// Extent items one read may walk past (a file of 128 KiB compressed extents: 128 GiB).
const MAX_EXTENTS_PER_READ: u32 = 1 << 20;

/// The last decompressed extent, so sequential small reads do not decompress it again.
#[derive(Debug, Default)]
pub(super) struct ExtentCache(Mutex<Option<(u64, Arc<Vec<u8>>)>>);

/// Fills `buf` with the file `ino` of `tree` from `offset`; the file is `size` bytes long.
pub(super) fn read(
    vol: &Volume,
    cache: &ExtentCache,
    tree: Tree,
    ino: u64,
    size: u64,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize> {
    if offset >= size {
        return Ok(0);
    }
    let want = (size - offset).min(buf.len() as u64) as usize;
    let buf = &mut buf[..want];
    buf.fill(0);
    let end = offset + want as u64;
    let mut cursor = Cursor::seek(vol, tree, Key::new(ino, EXTENT_DATA, offset))?;
    let mut seen = 0u32;
    while let Some((key, data)) = cursor.current() {
        if key.objectid > ino || (key.objectid == ino && key.kind > EXTENT_DATA) {
            break;
        }
        if key.objectid == ino && key.kind == EXTENT_DATA {
            if key.offset >= end {
                break;
            }
            let at = cursor.node_logical();
            let extent = items::extent(data).map_err(|e| corrupt(at, e))?;
            fill(vol, cache, &extent, key.offset, offset, buf, at)?;
        }
        seen += 1;
        if seen > MAX_EXTENTS_PER_READ {
            return Err(super::bytes::limit(
                "extents in one read",
                MAX_EXTENTS_PER_READ.into(),
            ));
        }
        cursor.next()?;
    }
    Ok(want)
}

/// Copies the part of `extent` (starting at file offset `start`) that overlaps
/// `buf` (starting at file offset `offset`).
fn fill(
    vol: &Volume,
    cache: &ExtentCache,
    extent: &Extent<'_>,
    start: u64,
    offset: u64,
    buf: &mut [u8],
    at: u64,
) -> Result<()> {
    let len = match extent {
        Extent::Inline {
            ram_bytes,
            data,
            compression,
        } => {
            if *compression == COMPRESS_NONE {
                data.len() as u64
            } else {
                *ram_bytes
            }
        }
        Extent::Regular { num_bytes, .. } => *num_bytes,
    };
    let from = start.max(offset);
    let to = start.saturating_add(len).min(offset + buf.len() as u64);
    if from >= to {
        return Ok(());
    }
    let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
    let within = from - start;
    match *extent {
        Extent::Inline {
            compression: COMPRESS_NONE,
            data,
            ..
        } => {
            copy_from(dst, data, within);
        }
        Extent::Inline {
            compression,
            ram_bytes,
            data,
        } => {
            let plain = compress::decompress(compression, data, ram_bytes, vol.sb.sectorsize, at)?;
            copy_from(dst, &plain, within);
        }
        Extent::Regular { prealloc: true, .. } | Extent::Regular { disk_bytenr: 0, .. } => {}
        Extent::Regular {
            compression: COMPRESS_NONE,
            disk_bytenr,
            offset: skip,
            ..
        } => {
            let logical = disk_bytenr
                .checked_add(skip)
                .and_then(|l| l.checked_add(within))
                .ok_or_else(|| corrupt(at, "file extent address overflows"))?;
            vol.read_logical(logical, dst)?;
        }
        Extent::Regular {
            compression,
            ram_bytes,
            disk_bytenr,
            disk_num_bytes,
            offset: skip,
            ..
        } => {
            let plain = decompressed(
                vol,
                cache,
                compression,
                disk_bytenr,
                disk_num_bytes,
                ram_bytes,
                at,
            )?;
            copy_from(dst, &plain, skip.saturating_add(within));
        }
    }
    Ok(())
}

/// Copies `src[from..]` into `dst`; bytes past the end of `src` stay zero.
fn copy_from(dst: &mut [u8], src: &[u8], from: u64) {
    let src = usize::try_from(from)
        .ok()
        .and_then(|f| src.get(f..))
        .unwrap_or(&[]);
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
}

fn decompressed(
    vol: &Volume,
    cache: &ExtentCache,
    kind: u8,
    disk_bytenr: u64,
    disk_num_bytes: u64,
    ram_bytes: u64,
    at: u64,
) -> Result<Arc<Vec<u8>>> {
    let mut slot = cache.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((addr, data)) = slot.as_ref() {
        if *addr == disk_bytenr && data.len() as u64 == ram_bytes {
            return Ok(data.clone());
        }
    }
    if disk_num_bytes > MAX_COMPRESSED || disk_num_bytes == 0 {
        return Err(corrupt(
            at,
            format!("compressed extent of {disk_num_bytes} disk bytes (limit {MAX_COMPRESSED})"),
        ));
    }
    let mut raw = vec![0u8; disk_num_bytes as usize];
    vol.read_logical(disk_bytenr, &mut raw)?;
    let plain = Arc::new(compress::decompress(
        kind,
        &raw,
        ram_bytes,
        vol.sb.sectorsize,
        disk_bytenr,
    )?);
    *slot = Some((disk_bytenr, plain.clone()));
    Ok(plain)
}
