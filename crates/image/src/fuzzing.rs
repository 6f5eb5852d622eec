//! Fuzz entry points (called by `crates/image/fuzz` and by a stable-Rust mutation test) and a
//! crafted VHDX builder for seeds and tests. Every entry point opens an image held in memory
//! and reads a few ranges; it must return without panicking, hanging or allocating beyond
//! the fixed bounds on any input.

use std::sync::Arc;

use crate::open::{open_device, Format};
use crate::vhdx::{self, crc32c};
use crate::{BlockDevice, MemDevice};

/// Reads a few ranges of `dev`, ignoring errors: both ends, the middle, and ranges derived
/// from the size that cross cluster boundaries.
fn touch(dev: &dyn BlockDevice) {
    let size = dev.size();
    let mut buf = vec![0u8; 70_000];
    for (at, len) in [
        (0, 4096),
        (size.saturating_sub(512), 512),
        (size / 2, 70_000),
        (size / 3 + 1000, 33_000),
        (65_000, 1000),
    ] {
        let len = len.min(size.saturating_sub(at)) as usize;
        let _ = dev.read_exact_at(&mut buf[..len], at);
    }
}

fn open_and_touch(data: &[u8], format: Option<Format>) {
    let file = Arc::new(MemDevice(data.to_vec()));
    if let Ok(image) = open_device(file, format) {
        touch(image.device.as_ref());
    }
}

/// The qcow2 reader (header, extensions, L1/L2, compressed and subclusters).
pub fn fuzz_qcow2(data: &[u8]) {
    open_and_touch(data, Some(Format::Qcow2));
}

/// The VMDK reader (sparse extents, streamOptimized footers and markers, descriptors).
pub fn fuzz_vmdk(data: &[u8]) {
    open_and_touch(data, Some(Format::Vmdk));
}

/// The VMDK text descriptor parser alone.
pub fn fuzz_vmdk_descriptor(data: &[u8]) {
    let _ = crate::vmdk::parse_descriptor(data, 0);
}

/// The VHDX reader (headers, region table, metadata, parent locator, BAT, sector bitmaps).
pub fn fuzz_vhdx(data: &[u8]) {
    open_and_touch(data, Some(Format::Vhdx));
}

/// Format detection, then whichever reader it picks.
pub fn fuzz_open(data: &[u8]) {
    open_and_touch(data, None);
}

// ---- crafted VHDX ----

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

const MIB: usize = 1 << 20;
const META_AT: usize = 320 << 10;
const BAT_AT: usize = 384 << 10;
/// Virtual size of [`seed_vhdx`] images: four 1 MiB blocks.
pub const SEED_VHDX_SIZE: u64 = 4 << 20;

/// The byte at `i` of block data written by [`seed_vhdx`] with `tag`.
pub fn seed_vhdx_byte(tag: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ (i >> 9) as u8 ^ tag
}

/// A VHDX of four 1 MiB blocks (512-byte sectors).
///
/// Without `parent` (2 MiB file): block 0 fully present (bytes [`seed_vhdx_byte`]`(1, i)`),
/// block 1 zero, block 2 not present, block 3 unmapped.
///
/// With `parent` (differencing; 4 MiB file; a parent locator whose relative path is
/// `parent.0` and absolute path `parent.1`): block 0 partially present (odd sectors from this
/// file, bytes `seed_vhdx_byte(2, i)`, even sectors from the parent), block 1 fully present
/// (`seed_vhdx_byte(3, i)`), block 2 not present (parent), block 3 zero.
pub fn seed_vhdx(parent: Option<(&str, &str)>) -> Vec<u8> {
    let diff = parent.is_some();
    let mut d = vec![0u8; if diff { 4 * MIB } else { 2 * MIB }];
    put(&mut d, 0, vhdx::MAGIC);
    for (i, &at) in vhdx::HEADER_AT.iter().enumerate() {
        let at = at as usize;
        put(&mut d, at, b"head");
        put(&mut d, at + 8, &(i as u64 + 1).to_le_bytes());
        put(&mut d, at + 66, &1u16.to_le_bytes());
        put(&mut d, at + 68, &MIB.to_le_bytes()[..4]);
        put(&mut d, at + 72, &(MIB as u64).to_le_bytes());
    }
    for &at in &vhdx::REGION_AT {
        let at = at as usize;
        put(&mut d, at, b"regi");
        put(&mut d, at + 8, &2u32.to_le_bytes());
        for (i, (guid, off, len)) in [
            (vhdx::BAT_GUID, BAT_AT, 64 << 10),
            (vhdx::METADATA_GUID, META_AT, 64 << 10),
        ]
        .into_iter()
        .enumerate()
        {
            let e = at + 16 + i * 32;
            put(&mut d, e, &guid);
            put(&mut d, e + 16, &(off as u64).to_le_bytes());
            put(&mut d, e + 24, &(len as u32).to_le_bytes());
            put(&mut d, e + 28, &1u32.to_le_bytes());
        }
    }
    metadata(&mut d, parent);
    let bat = |d: &mut Vec<u8>, index: usize, state: u64, mb: u64| {
        put(d, BAT_AT + index * 8, &(state | mb << 20).to_le_bytes())
    };
    if diff {
        bat(&mut d, 0, 7, 1);
        bat(&mut d, 1, 6, 2);
        bat(&mut d, 2, 0, 0);
        bat(&mut d, 3, 2, 0);
        bat(&mut d, 4096, 6, 3); // sector bitmap of chunk 0
        for i in 0..MIB {
            put(&mut d, MIB + i, &[seed_vhdx_byte(2, i)]);
            put(&mut d, 2 * MIB + i, &[seed_vhdx_byte(3, i)]);
        }
        // Block 0's sectors: odd ones present here.
        for byte in 0..MIB / 512 / 8 {
            put(&mut d, 3 * MIB + byte, &[0xaa]);
        }
    } else {
        bat(&mut d, 0, 6, 1);
        bat(&mut d, 1, 2, 0);
        bat(&mut d, 2, 0, 0);
        bat(&mut d, 3, 3, 0);
        for i in 0..MIB {
            put(&mut d, MIB + i, &[seed_vhdx_byte(1, i)]);
        }
    }
    fix_vhdx_checksums(&mut d);
    d
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn metadata(d: &mut [u8], parent: Option<(&str, &str)>) {
    let m = META_AT;
    put(d, m, b"metadata");
    let mut items: Vec<([u8; 16], Vec<u8>, u32)> = vec![
        (
            vhdx::FILE_PARAMETERS,
            [
                (MIB as u32).to_le_bytes(),
                (u32::from(parent.is_some()) << 1).to_le_bytes(),
            ]
            .concat(),
            4,
        ),
        (
            vhdx::VIRTUAL_DISK_SIZE,
            SEED_VHDX_SIZE.to_le_bytes().to_vec(),
            6,
        ),
        (vhdx::LOGICAL_SECTOR_SIZE, 512u32.to_le_bytes().to_vec(), 6),
        (
            vhdx::PHYSICAL_SECTOR_SIZE,
            4096u32.to_le_bytes().to_vec(),
            6,
        ),
        (vhdx::VIRTUAL_DISK_ID, vec![0x11; 16], 6),
    ];
    if let Some((relative, absolute)) = parent {
        items.push((vhdx::PARENT_LOCATOR, locator(relative, absolute), 4));
    }
    put(d, m + 10, &(items.len() as u16).to_le_bytes());
    let mut data_at = 4096usize;
    for (i, (guid, data, flags)) in items.iter().enumerate() {
        let e = m + 32 + i * 32;
        put(d, e, guid);
        put(d, e + 16, &(data_at as u32).to_le_bytes());
        put(d, e + 20, &(data.len() as u32).to_le_bytes());
        put(d, e + 24, &flags.to_le_bytes());
        put(d, m + data_at, data);
        data_at += data.len().div_ceil(8) * 8;
    }
}

fn locator(relative: &str, absolute: &str) -> Vec<u8> {
    let pairs = [
        ("parent_linkage", "{00000000-0000-0000-0000-000000000000}"),
        ("absolute_win32_path", absolute),
        ("relative_path", relative),
    ];
    let mut l = vec![0u8; 20 + pairs.len() * 12];
    put(&mut l, 0, &[0xb7; 16]);
    put(&mut l, 18, &(pairs.len() as u16).to_le_bytes());
    for (i, (k, v)) in pairs.iter().enumerate() {
        let (k, v) = (utf16(k), utf16(v));
        let e = 20 + i * 12;
        let ko = l.len();
        l.extend_from_slice(&k);
        let vo = l.len();
        l.extend_from_slice(&v);
        put(&mut l, e, &(ko as u32).to_le_bytes());
        put(&mut l, e + 4, &(vo as u32).to_le_bytes());
        put(&mut l, e + 8, &(k.len() as u16).to_le_bytes());
        put(&mut l, e + 10, &(v.len() as u16).to_le_bytes());
    }
    l
}

/// Recomputes the CRC-32C of both headers and both region tables, so mutations reach the
/// parsers behind them.
pub fn fix_vhdx_checksums(d: &mut [u8]) {
    let blocks = vhdx::HEADER_AT.iter().map(|&a| (a as usize, 4096)).chain(
        vhdx::REGION_AT
            .iter()
            .map(|&a| (a as usize, vhdx::REGION_LEN as usize)),
    );
    for (at, len) in blocks {
        put(d, at + 4, &[0; 4]);
        if let Some(block) = d.get(at..at + len) {
            let crc = crc32c(block);
            put(d, at + 4, &crc.to_le_bytes());
        }
    }
}
