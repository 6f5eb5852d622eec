//! qcow2 versions 2 and 3, read-only.
//!
//! Guest offsets map through a two-level table: an L1 entry points at an L2 table (one
//! cluster), whose entries point at data clusters, mark them zero or compressed, or leave them
//! unallocated (the backing file's bytes, or zeros). Extended L2 entries (subclusters) add a
//! 64-bit bitmap per entry: 32 "allocated" bits and 32 "reads as zero" bits. Refcounts are a
//! writer's concern and are not read. Tables are loaded lazily through the chain's bounded
//! cache, so opening costs a header read whatever the virtual size.

use std::sync::Arc;

use crate::bytes::{be32, be64, corrupt, read_meta, unsupported};
use crate::cache::{Cache, Key};
use crate::compress::{decode, Codec};
use crate::mapped::{read_mapped, Piece};
use crate::open::{Ctx, Dev, Format};
use crate::{check_range, BlockDevice, Result};

pub(crate) const MAGIC: &[u8] = b"QFI\xfb";
const FORMAT: &str = "qcow2";

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Bits 9-55 of L1 and standard L2 entries.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;

/// qemu's cap on the L1 table (32 MiB).
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
/// qemu's cap on the backing file name.
const MAX_BACKING_NAME: u32 = 1023;
/// L1 entries are loaded in pieces of this many bytes.
const L1_CHUNK: u64 = 4096;

const KIND_L1: u8 = 1;
const KIND_L2: u8 = 2;
const KIND_COMPRESSED: u8 = 3;

#[derive(Debug)]
struct Header {
    cluster_bits: u32,
    size: u64,
    l1_offset: u64,
    l1_size: u64,
    backing_name: Option<String>,
    backing_format: Option<String>,
    codec: Codec,
    extended_l2: bool,
}

/// An opened qcow2 image (with its backing chain).
pub struct Qcow2 {
    file: Dev,
    cache: Arc<Cache>,
    id: u64,
    h: Header,
    backing: Option<Dev>,
}

impl std::fmt::Debug for Qcow2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2")
            .field("header", &self.h)
            .field("backing", &self.backing)
            .finish()
    }
}

pub(crate) fn open(file: Dev, ctx: &Ctx) -> Result<Dev> {
    let h = parse_header(file.as_ref())?;
    let backing = match &h.backing_name {
        Some(name) => {
            let format = match h.backing_format.as_deref() {
                None => None,
                Some(f) => Some(
                    Format::from_name(f)
                        .ok_or_else(|| unsupported(FORMAT, format!("backing file format {f:?}")))?,
                ),
            };
            Some(ctx.open_backing(FORMAT, std::slice::from_ref(name), format)?)
        }
        None => None,
    };
    Ok(Arc::new(Qcow2 {
        file,
        cache: ctx.cache.clone(),
        id: ctx.cache.new_id(),
        h,
        backing,
    }))
}

fn parse_header(file: &dyn BlockDevice) -> Result<Header> {
    let size = file.size();
    if size < 72 {
        return Err(corrupt(
            FORMAT,
            0,
            format!("file of {size} bytes is too short for a header"),
        ));
    }
    let first = read_meta(file, FORMAT, 0, size.min(112), "header")?;
    let version = be32(&first, 4);
    if version != 2 && version != 3 {
        return Err(unsupported(FORMAT, format!("version {version}")));
    }
    let cluster_bits = be32(&first, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(corrupt(
            FORMAT,
            20,
            format!("cluster_bits {cluster_bits} not in 9..=21"),
        ));
    }
    let cluster = 1u64 << cluster_bits;
    let h = read_meta(file, FORMAT, 0, size.min(cluster), "header cluster")?;
    let crypt = be32(&h, 32);
    if crypt != 0 {
        return Err(unsupported(
            FORMAT,
            format!("encrypted image (crypt_method {crypt})"),
        ));
    }
    let (incompat, header_len, compression) = if version == 3 {
        let len = be32(&h, 100);
        if len < 104 || u64::from(len) > cluster || !len.is_multiple_of(8) || h.len() < 104 {
            return Err(corrupt(FORMAT, 100, format!("header_length {len}")));
        }
        let ct = if len > 104 {
            h.get(104).copied().unwrap_or(0)
        } else {
            0
        };
        (be64(&h, 72), len as usize, ct)
    } else {
        (0, 72, 0)
    };
    check_features(incompat)?;
    let codec = match compression {
        0 => Codec::Deflate,
        1 => Codec::Zstd,
        c => return Err(unsupported(FORMAT, format!("compression_type {c}"))),
    };
    let exts = parse_extensions(&h, header_len)?;
    let extended_l2 = incompat & INCOMPAT_EXTL2 != 0;
    let hdr = Header {
        cluster_bits,
        size: be64(&h, 24),
        l1_offset: be64(&h, 40),
        l1_size: u64::from(be32(&h, 36)),
        backing_name: backing_name(file, &h)?,
        backing_format: exts,
        codec,
        extended_l2,
    };
    check_l1(&hdr, size)?;
    Ok(hdr)
}

fn check_features(incompat: u64) -> Result<()> {
    if incompat & INCOMPAT_DATA_FILE != 0 {
        return Err(unsupported(
            FORMAT,
            "external data file (incompatible feature bit 2)",
        ));
    }
    let unknown = incompat & !INCOMPAT_KNOWN;
    if unknown != 0 {
        return Err(unsupported(
            FORMAT,
            format!("incompatible features {unknown:#x}"),
        ));
    }
    Ok(())
}

/// Walks the header extensions; returns the backing format name, if any.
fn parse_extensions(h: &[u8], start: usize) -> Result<Option<String>> {
    let mut pos = start;
    let mut backing_format = None;
    // Each extension advances pos by at least 8 bytes within one cluster: bounded.
    while pos + 8 <= h.len() {
        let (ty, len) = (be32(h, pos), be32(h, pos + 4) as usize);
        if ty == 0 {
            break;
        }
        let data = h.get(pos + 8..pos + 8 + len).ok_or_else(|| {
            corrupt(
                FORMAT,
                pos as u64,
                format!("header extension {ty:#x} of {len} bytes overruns the first cluster"),
            )
        })?;
        match ty {
            EXT_BACKING_FORMAT => backing_format = Some(String::from_utf8_lossy(data).into_owned()),
            EXT_DATA_FILE => {
                return Err(unsupported(FORMAT, "external data file (header extension)"))
            }
            _ => {}
        }
        pos += 8 + len.div_ceil(8) * 8;
    }
    Ok(backing_format)
}

fn backing_name(file: &dyn BlockDevice, h: &[u8]) -> Result<Option<String>> {
    let (off, len) = (be64(h, 8), be32(h, 16));
    if off == 0 || len == 0 {
        return Ok(None);
    }
    if len > MAX_BACKING_NAME {
        return Err(corrupt(
            FORMAT,
            16,
            format!("backing file name of {len} bytes"),
        ));
    }
    let name = read_meta(file, FORMAT, off, len.into(), "backing file name")?;
    let name = String::from_utf8(name)
        .map_err(|_| corrupt(FORMAT, off, "backing file name is not UTF-8"))?;
    Ok(Some(name))
}

fn check_l1(h: &Header, file_size: u64) -> Result<()> {
    let entry_bytes = if h.extended_l2 { 16 } else { 8 };
    let per_l1 = (1u128 << h.cluster_bits) / entry_bytes * (1u128 << h.cluster_bits);
    let needed = u128::from(h.size).div_ceil(per_l1);
    if needed > u128::from(h.l1_size) || h.l1_size > MAX_L1_ENTRIES {
        return Err(corrupt(
            FORMAT,
            36,
            format!("l1_size {} for a virtual size of {} bytes (needs {needed}, at most {MAX_L1_ENTRIES})", h.l1_size, h.size),
        ));
    }
    let end = h.l1_offset.checked_add(h.l1_size * 8);
    if !h.l1_offset.is_multiple_of(1 << h.cluster_bits) || end.is_none_or(|e| e > file_size) {
        return Err(corrupt(
            FORMAT,
            h.l1_offset,
            format!(
                "L1 table of {} entries is unaligned or past the end of the file",
                h.l1_size
            ),
        ));
    }
    Ok(())
}

impl Qcow2 {
    fn cluster_size(&self) -> u64 {
        1 << self.h.cluster_bits
    }

    fn l1_entry(&self, index: u64) -> Result<u64> {
        let chunk = index * 8 / L1_CHUNK * L1_CHUNK;
        let at = self.h.l1_offset + chunk;
        let len = (self.h.l1_size * 8 - chunk).min(L1_CHUNK);
        let key = Key {
            image: self.id,
            kind: KIND_L1,
            offset: at,
        };
        let table = self.cache.get_or_load(key, || {
            read_meta(self.file.as_ref(), FORMAT, at, len, "L1 table")
        })?;
        Ok(be64(&table, (index * 8 - chunk) as usize))
    }

    fn l2_table(&self, at: u64) -> Result<Arc<[u8]>> {
        let key = Key {
            image: self.id,
            kind: KIND_L2,
            offset: at,
        };
        let len = self.cluster_size();
        self.cache.get_or_load(key, || {
            read_meta(self.file.as_ref(), FORMAT, at, len, "L2 table")
        })
    }

    /// Where the bytes at guest `off` live, and for how many bytes that holds.
    fn map(&self, off: u64) -> Result<(Piece, u64)> {
        let cs = self.cluster_size();
        let within = off & (cs - 1);
        let cluster = off >> self.h.cluster_bits;
        let entry_bytes = if self.h.extended_l2 { 16 } else { 8 };
        let per_l2 = cs / entry_bytes;
        let run = cs - within;
        let l1_index = cluster / per_l2;
        if l1_index >= self.h.l1_size {
            return Ok((Piece::Backing, run));
        }
        let l2_at = self.l1_entry(l1_index)? & OFFSET_MASK;
        if l2_at == 0 {
            return Ok((Piece::Backing, run));
        }
        if l2_at & (cs - 1) != 0 {
            return Err(corrupt(
                FORMAT,
                self.h.l1_offset + l1_index * 8,
                format!("L1 entry points at unaligned L2 table {l2_at:#x}"),
            ));
        }
        let table = self.l2_table(l2_at)?;
        let at = ((cluster % per_l2) * entry_bytes) as usize;
        let entry = be64(&table, at);
        let entry_at = l2_at + at as u64;
        if entry & L2_COMPRESSED != 0 {
            return Ok((self.compressed(entry, entry_at, within)?, run));
        }
        let host = entry & OFFSET_MASK;
        if host & (cs - 1) != 0 {
            return Err(corrupt(
                FORMAT,
                entry_at,
                format!("L2 entry points at unaligned cluster {host:#x}"),
            ));
        }
        if self.h.extended_l2 {
            return subcluster(be64(&table, at + 8), host, within, cs, entry_at);
        }
        Ok(match (entry & L2_ZERO != 0, host) {
            (true, _) => (Piece::Zero, run),
            (false, 0) => (Piece::Backing, run),
            (false, host) => (Piece::Data(host + within), run),
        })
    }

    /// Decodes (through the cache) the compressed cluster an L2 entry describes.
    fn compressed(&self, entry: u64, entry_at: u64, within: u64) -> Result<Piece> {
        let cb = self.h.cluster_bits;
        let shift = 62 - (cb - 8);
        let host = entry & ((1u64 << shift) - 1);
        let sectors = ((entry >> shift) & ((1u64 << (cb - 8)) - 1)) + 1;
        let csize = sectors * 512 - (host & 511);
        let file_size = self.file.size();
        if host >= file_size {
            return Err(corrupt(
                FORMAT,
                entry_at,
                format!("compressed cluster at {host:#x} is past the end of the file"),
            ));
        }
        // The last compressed cluster's sector count may run past the end of the file.
        let len = csize.min(file_size - host);
        let key = Key {
            image: self.id,
            kind: KIND_COMPRESSED,
            offset: host,
        };
        let out = self.cluster_size() as usize;
        let block = self.cache.get_or_load(key, || {
            let input = read_meta(self.file.as_ref(), FORMAT, host, len, "compressed cluster")?;
            decode(self.h.codec, &input, out, FORMAT, host)
        })?;
        Ok(Piece::Decoded(block, within as usize))
    }
}

/// Maps `within` a cluster with an extended L2 entry's subcluster bitmap.
fn subcluster(bitmap: u64, host: u64, within: u64, cs: u64, entry_at: u64) -> Result<(Piece, u64)> {
    let sc_size = cs / 32;
    let sc = within / sc_size;
    let run = sc_size - within % sc_size;
    let alloc = bitmap >> sc & 1 != 0;
    let zero = bitmap >> (32 + sc) & 1 != 0;
    Ok(match (alloc, zero) {
        (true, true) => {
            return Err(corrupt(
                FORMAT,
                entry_at + 8,
                format!("subcluster {sc} is both allocated and zero"),
            ))
        }
        (_, true) => (Piece::Zero, run),
        (true, false) if host == 0 => {
            return Err(corrupt(
                FORMAT,
                entry_at,
                format!("subcluster {sc} allocated in a cluster without host offset"),
            ))
        }
        (true, false) => (Piece::Data(host + within), run),
        (false, false) => (Piece::Backing, run),
    })
}

impl BlockDevice for Qcow2 {
    fn size(&self) -> u64 {
        self.h.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.h.size)?;
        let backing = (self.backing.as_deref(), 0);
        read_mapped(buf, offset, FORMAT, self.file.as_ref(), backing, |at| {
            self.map(at)
        })
    }
}
