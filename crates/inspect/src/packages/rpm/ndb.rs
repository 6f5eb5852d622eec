//! `Packages.db`, rpm's `ndb` backend (openSUSE/SLES since 2021): see rpm's
//! lib/backend/ndb/rpmpkg.c. All integers little-endian.
//!
//! - File header (32 bytes at 0): magic `RpmP`, version 0, generation, number of slot pages,
//!   next package index.
//! - Slot pages (4096 bytes each, from 0; the first two 16-byte slots of page 0 are the file
//!   header): 16-byte slots `Slot`, package index, block offset, block count. Block offset 0
//!   marks a free slot. Blocks are 16 bytes.
//! - Blobs at `blkoff * 16`: head `BlbS`, package index, timestamp, blob length; the header
//!   blob; padding; tail adler32, blob length, `BlbE`.
//!
//! rpm refuses the whole database on one bad slot; here a bad slot or blob costs that one
//! package and a warning.

use super::Budget;

const DB_MAGIC: &[u8; 4] = b"RpmP";
const SLOT_MAGIC: &[u8; 4] = b"Slot";
const BLOB_HEAD: &[u8; 4] = b"BlbS";
const BLOB_TAIL: &[u8; 4] = b"BlbE";
const PAGE: usize = 4096;
const BLK: u64 = 16;
const SLOT: usize = 16;
const HEAD_SIZE: usize = 16;
const TAIL_SIZE: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdbError {
    #[error("not an rpm ndb Packages.db (no `RpmP` magic at byte 0)")]
    NoMagic,
    #[error("unsupported ndb version {0} at byte 4")]
    Version(u32),
}

/// A slot or blob problem: costs one package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("header claims {claimed} slot pages but the file holds {present}")]
    SlotPages { claimed: u32, present: usize },
    #[error("slot at byte {at}: bad magic")]
    SlotMagic { at: usize },
    #[error("package {pkg} (slot at byte {at}): blob blocks {blkoff}+{blkcnt} are outside the file or inside the slot pages")]
    Range {
        pkg: u32,
        at: usize,
        blkoff: u32,
        blkcnt: u32,
    },
    #[error("slots add up to more than the file holds (overlapping blobs); stopped")]
    Budget,
    #[error("package {pkg}: blob at byte {at}: {what}")]
    Blob {
        pkg: u32,
        at: u64,
        what: &'static str,
    },
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

/// Adler-32 (RFC 1950), as rpm checks each blob with.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// Calls `on_record(pkgidx, blob)` for every used slot whose blob checks out.
pub fn read(
    bytes: &[u8],
    on_record: &mut dyn FnMut(u64, &[u8]),
    warnings: &mut Vec<String>,
) -> Result<(), NdbError> {
    if bytes.get(..4) != Some(DB_MAGIC.as_slice()) {
        return Err(NdbError::NoMagic);
    }
    let version = le32(bytes, 4);
    if version != 0 {
        return Err(NdbError::Version(version));
    }
    let mut warn = |e: SlotError| warnings.push(format!("Packages.db: {e}"));
    let claimed = le32(bytes, 12);
    let present = bytes.len() / PAGE;
    // Bounded by the file: a lying count cannot make us read past it.
    let pages = (claimed as usize).min(present.max(1));
    if claimed as usize != pages {
        warn(SlotError::SlotPages { claimed, present });
    }
    let min_blk = (pages * PAGE) as u64 / BLK;
    let budget = Budget::for_file(bytes.len());
    // The first two slots of page 0 hold the file header.
    let mut at = 2 * SLOT;
    while at + SLOT <= pages * PAGE {
        let slot = bytes.get(at..at + SLOT).unwrap_or_default();
        if slot.get(..4) != Some(SLOT_MAGIC.as_slice()) {
            warn(SlotError::SlotMagic { at });
        } else if le32(slot, 8) != 0 {
            let (pkg, blkoff, blkcnt) = (le32(slot, 4), le32(slot, 8), le32(slot, 12));
            // Only blobs inside the file count against the budget (blob() rejects the rest).
            let in_file = (u64::from(blkoff) + u64::from(blkcnt)) * BLK <= bytes.len() as u64;
            if in_file && !budget.take(u64::from(blkcnt) * BLK) {
                warn(SlotError::Budget);
                break;
            }
            match blob(bytes, pkg, blkoff, blkcnt, min_blk, at) {
                Ok((b, sum)) => {
                    if let Some(e) = sum {
                        warn(e);
                    }
                    on_record(u64::from(pkg), b);
                }
                Err(e) => warn(e),
            }
        }
        at += SLOT;
    }
    Ok(())
}

/// The header blob of package `pkg` stored in blocks `blkoff..blkoff + blkcnt`, checked as
/// rpm's `rpmpkgReadBlob` does (magics, index, lengths). rpm verifies the adler32 only when
/// moving blobs, not when reading them, so a mismatch comes back as a warning beside the blob.
fn blob(
    bytes: &[u8],
    pkg: u32,
    blkoff: u32,
    blkcnt: u32,
    min_blk: u64,
    slot_at: usize,
) -> Result<(&[u8], Option<SlotError>), SlotError> {
    let range = SlotError::Range {
        pkg,
        at: slot_at,
        blkoff,
        blkcnt,
    };
    let start = u64::from(blkoff) * BLK;
    let end = start + u64::from(blkcnt) * BLK;
    if u64::from(blkoff) < min_blk || end > bytes.len() as u64 || blkcnt == 0 {
        return Err(range);
    }
    let area = bytes.get(start as usize..end as usize).ok_or(range)?;
    let bad = |what| SlotError::Blob {
        pkg,
        at: start,
        what,
    };
    if area.get(..4) != Some(BLOB_HEAD.as_slice()) {
        return Err(bad("no `BlbS` head magic"));
    }
    if le32(area, 4) != pkg {
        return Err(bad("head names another package"));
    }
    let len = le32(area, 12) as usize;
    let total = HEAD_SIZE + len + TAIL_SIZE;
    if total.div_ceil(BLK as usize) != area.len() / BLK as usize {
        return Err(bad("blob length does not match the slot's block count"));
    }
    let tail = area.get(area.len() - TAIL_SIZE..).unwrap_or_default();
    if tail.get(8..12) != Some(BLOB_TAIL.as_slice()) || le32(tail, 4) as usize != len {
        return Err(bad("bad tail (magic or length)"));
    }
    let blob = area
        .get(HEAD_SIZE..HEAD_SIZE + len)
        .ok_or(bad("blob length"))?;
    let checked = area.get(..area.len() - TAIL_SIZE).unwrap_or_default();
    let sum_ok = adler32(checked) == le32(tail, 0);
    Ok((
        blob,
        (!sum_ok).then(|| bad("adler32 mismatch (read anyway, as rpm does)")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_known_value() {
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(adler32(&[0xff; 100_000]), {
            let (mut a, mut b) = (1u64, 0u64);
            for _ in 0..100_000 {
                a = (a + 0xff) % 65521;
                b = (b + a) % 65521;
            }
            ((b << 16) | a) as u32
        });
    }

    /// Every slot of page 0 naming the same real blob: copies come out until the records add
    /// up to about twice the file, then one warning, instead of work quadratic in the file.
    #[test]
    fn overlapping_slots_are_bounded() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/seeds/rpm_ndb/two-packages.ndb"
        );
        let mut db = std::fs::read(path).unwrap_or_default();
        assert!(db.len() > PAGE, "seed {path}");
        let first = db[2 * SLOT..3 * SLOT].to_vec();
        assert_eq!(&first[..4], SLOT_MAGIC);
        for at in (2 * SLOT..PAGE).step_by(SLOT) {
            db[at..at + SLOT].copy_from_slice(&first);
        }
        let (mut n, mut w) = (0, Vec::new());
        read(&db, &mut |_, _| n += 1, &mut w).unwrap_or_default();
        assert!(n > 2 && n < 254, "{n}");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("add up to more than the file"), "{w:?}");
    }

    #[test]
    fn not_ndb() {
        let mut w = Vec::new();
        assert_eq!(read(b"xx", &mut |_, _| {}, &mut w), Err(NdbError::NoMagic));
    }
}
