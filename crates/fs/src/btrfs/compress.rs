//! Decompression of compressed file extents: zlib, LZO (in btrfs's per-sector framing) and zstd.
//!
//! btrfs compresses at most 128 KiB of file data into one extent, so every output is capped at
//! [`MAX_DECOMPRESSED`] whatever the item claims, and compressed inputs at [`MAX_COMPRESSED`].

use std::io::Read;

use super::bytes::{corrupt, u32_at, unsupported};
use super::lzo;
use crate::Result;

/// BTRFS_MAX_UNCOMPRESSED: the most file data one compressed extent holds.
pub(super) const MAX_DECOMPRESSED: u64 = 128 << 10;
/// BTRFS_MAX_COMPRESSED: the most disk bytes one compressed extent occupies.
pub(super) const MAX_COMPRESSED: u64 = 128 << 10;

const ZLIB: u8 = 1;
const LZO: u8 = 2;
const ZSTD: u8 = 3;

/// Decompresses `data` (compression `kind`) into exactly `ram_bytes` bytes (zero-padded when the
/// stream ends early, as the kernel does). `at` locates the extent for errors.
pub(super) fn decompress(
    kind: u8,
    data: &[u8],
    ram_bytes: u64,
    sectorsize: u32,
    at: u64,
) -> Result<Vec<u8>> {
    if ram_bytes > MAX_DECOMPRESSED {
        return Err(corrupt(
            at,
            format!(
                "compressed extent claims {ram_bytes} decoded bytes, more than {MAX_DECOMPRESSED}"
            ),
        ));
    }
    let cap = ram_bytes as usize;
    let mut out = match kind {
        ZLIB => read_capped(flate2::read::ZlibDecoder::new(data), cap)
            .map_err(|e| corrupt(at, format!("zlib extent: {e}")))?,
        ZSTD => zstd(data, cap).map_err(|e| corrupt(at, format!("zstd extent: {e}")))?,
        LZO => lzo_framed(data, cap, sectorsize as usize)
            .map_err(|e| corrupt(at, format!("lzo extent: {e}")))?,
        other => return Err(unsupported(format!("compression type {other}"))),
    };
    out.resize(cap, 0);
    Ok(out)
}

fn read_capped(r: impl Read, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(cap);
    r.take(cap as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// btrfs limits zstd windows to 128 KiB (ZSTD_BTRFS_MAX_WINDOWLOG 17); refusing larger ones
/// before decoding keeps the decoder from reserving a window a hostile header asks for.
const ZSTD_MAX_WINDOW: u64 = 1 << 17;

fn zstd(data: &[u8], cap: usize) -> std::result::Result<Vec<u8>, String> {
    let window = zstd_window(data).ok_or("truncated frame header")?;
    if window > ZSTD_MAX_WINDOW {
        return Err(format!(
            "window of {window} bytes exceeds {ZSTD_MAX_WINDOW}"
        ));
    }
    let mut src = data;
    let decoder = ruzstd::decoding::StreamingDecoder::new(&mut src).map_err(|e| e.to_string())?;
    read_capped(decoder, cap).map_err(|e| e.to_string())
}

/// The window size a zstd frame header asks for (RFC 8878 3.1.1.1).
fn zstd_window(d: &[u8]) -> Option<u64> {
    if d.get(..4)? != [0x28, 0xb5, 0x2f, 0xfd] {
        return Some(0); // not a frame: let the decoder say why
    }
    let fhd = *d.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        let wd = *d.get(5)?;
        let log = 10 + u64::from(wd >> 3);
        let base = 1u64.checked_shl(log as u32)?;
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: the window is the content size.
    let dict_bytes = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let at = 5 + dict_bytes;
    Some(match fhd >> 6 {
        0 => u64::from(*d.get(at)?),
        1 => u64::from(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?)) + 256,
        2 => u64::from(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?)),
        _ => u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?),
    })
}

/// btrfs's LZO framing: a 4-byte total length, then segments of a 4-byte length and an LZO1X
/// stream decoding to at most one sector. A segment header never straddles a sector boundary:
/// when fewer than 4 bytes remain in a sector, the rest is padding.
fn lzo_framed(d: &[u8], cap: usize, sector: usize) -> std::result::Result<Vec<u8>, String> {
    let total = u32_at(d, 0).ok_or("truncated header")? as usize;
    if total > d.len() || total < 4 {
        return Err(format!(
            "total length {total} does not fit the {} stored bytes",
            d.len()
        ));
    }
    // lzo1x_worst_compress(sector): the largest segment a sector can compress to.
    let max_segment = sector + sector / 16 + 64 + 3;
    let mut out = Vec::with_capacity(cap);
    let mut pos = 4;
    // Each round consumes at least 4 bytes, so this ends.
    while pos < total && out.len() < cap {
        let left_in_sector = sector - pos % sector;
        if left_in_sector < 4 {
            pos += left_in_sector;
            continue;
        }
        let len = u32_at(d, pos).ok_or("segment header truncated")? as usize;
        pos += 4;
        if len > max_segment || pos + len > total {
            return Err(format!("segment of {len} bytes at {} is too long", pos - 4));
        }
        let want = sector.min(cap - out.len());
        let seg = lzo::decompress(&d[pos..pos + len], want)
            .map_err(|e| format!("segment at {}: {e:?}", pos - 4))?;
        out.extend_from_slice(&seg);
        pos += len;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn zlib_round_trip_and_cap() {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&[7u8; 50_000]).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(
            decompress(ZLIB, &z, 50_000, 4096, 0).unwrap(),
            vec![7u8; 50_000]
        );
        // A lying ram_bytes never yields more than it says, nor more than 128 KiB.
        assert_eq!(decompress(ZLIB, &z, 10, 4096, 0).unwrap().len(), 10);
        assert!(decompress(ZLIB, &z, 1 << 30, 4096, 0).is_err());
        assert!(decompress(ZLIB, b"garbage!", 100, 4096, 0).is_err());
    }

    #[test]
    fn lzo_framing_lies_fail_cleanly() {
        assert!(decompress(LZO, &[], 100, 4096, 0).is_err());
        // Total length larger than the data.
        assert!(decompress(LZO, &[0xff, 0xff, 0, 0, 1, 0, 0, 0], 100, 4096, 0).is_err());
        // A segment claiming 1 GiB.
        assert!(decompress(LZO, &[12, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0], 100, 4096, 0).is_err());
        // A valid segment: "hello" + end marker.
        let seg = [22, b'h', b'e', b'l', b'l', b'o', 0x11, 0, 0];
        let mut d = ((4 + 4 + seg.len()) as u32).to_le_bytes().to_vec();
        d.extend_from_slice(&(seg.len() as u32).to_le_bytes());
        d.extend_from_slice(&seg);
        assert_eq!(&decompress(LZO, &d, 8, 4096, 0).unwrap(), b"hello\0\0\0");
    }

    #[test]
    fn zstd_huge_window_refused() {
        // Magic, descriptor without single-segment, window descriptor for 2^41.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0, 0, 0];
        let e = decompress(ZSTD, &frame, 100, 4096, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("window"), "{e}");
    }

    fn text() -> Vec<u8> {
        (0..3000u32)
            .flat_map(|i| format!("row {} ", i % 37).into_bytes())
            .collect()
    }

    /// An LZO stream with literal runs and matches of every kind, in btrfs framing.
    fn lzo_frame() -> Vec<u8> {
        let mut seg = vec![17 + 8];
        seg.extend_from_slice(b"abcdefgh");
        seg.extend_from_slice(&[0b1110_1100, 0]); // M2: 8 bytes at distance 4
        seg.extend_from_slice(&[0x20, 10, 0x1c, 0x00]); // M3: 2 + 31 + 10 bytes at distance 8
        seg.extend_from_slice(&[0x11, 0, 0]);
        let mut d = ((8 + seg.len()) as u32).to_le_bytes().to_vec();
        d.extend_from_slice(&(seg.len() as u32).to_le_bytes());
        d.extend_from_slice(&seg);
        d
    }

    #[test]
    fn seeds_decode() {
        let out = decompress(LZO, &lzo_frame(), 59, 4096, 0).unwrap();
        assert_eq!(&out[..16], b"abcdefghefghefgh");
        let z = ruzstd::encoding::compress_to_vec(
            &text()[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(
            decompress(ZSTD, &z, text().len() as u64, 4096, 0).unwrap(),
            text()
        );
    }

    /// Deterministic mutations of real streams: errors or exactly `ram_bytes` bytes, never a panic.
    #[test]
    fn mutated_streams_never_panic() {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&text()).unwrap();
        let zlib = e.finish().unwrap();
        let zstd = ruzstd::encoding::compress_to_vec(
            &text()[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for (kind, seed) in [(ZLIB, zlib), (ZSTD, zstd), (LZO, lzo_frame())] {
            for _ in 0..2000 {
                let mut d = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let pos = (next() % d.len() as u64) as usize;
                    match next() % 3 {
                        0 => d[pos] ^= 1 << (next() % 8),
                        1 => d[pos] = next() as u8,
                        _ => d.truncate(pos),
                    }
                    if d.is_empty() {
                        break;
                    }
                }
                let ram = next() % (MAX_DECOMPRESSED + 2);
                if let Ok(out) = decompress(kind, &d, ram, 4096, 0) {
                    assert_eq!(out.len() as u64, ram);
                }
            }
        }
    }
}
