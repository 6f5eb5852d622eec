//! The file allocation table: loaded once, then cluster chains are walked in memory with a
//! visited set, so a chain that loops is reported instead of followed forever.

use std::sync::OnceLock;

use super::bpb::Geometry;
use crate::{Dev, Error, FsKind, Result};

/// FATs larger than this are refused: 64 MiB holds 16 M FAT32 entries, far beyond an EFI system
/// partition, and the bound keeps a hostile BPB from sizing an allocation.
const MAX_FAT_BYTES: u64 = 64 << 20;

/// The first FAT (or the active one), read on first use.
#[derive(Debug)]
pub(crate) struct Table {
    kind: FsKind,
    offset: u64,
    len: u64,
    cluster_count: u32,
    bytes: OnceLock<Vec<u8>>,
}

/// What a FAT entry says about the cluster after this one.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Cluster(u32),
    End,
    /// Free, reserved or bad: a chain must never reach one.
    Broken(u32),
}

impl Table {
    pub(crate) fn new(geo: &Geometry) -> Self {
        Table {
            kind: geo.kind,
            offset: geo.fat_offset,
            len: geo.fat_bytes,
            cluster_count: geo.cluster_count,
            bytes: OnceLock::new(),
        }
    }

    fn load(&self, dev: &Dev) -> Result<&[u8]> {
        if let Some(b) = self.bytes.get() {
            return Ok(b);
        }
        if self.len > MAX_FAT_BYTES {
            return Err(Error::LimitExceeded {
                fs: "vfat",
                what: "FAT size",
                limit: MAX_FAT_BYTES,
            });
        }
        // Bounded above; a device shorter than the FAT fails the read instead.
        let mut buf = vec![0u8; self.len as usize];
        dev.read_exact_at(&mut buf, self.offset)?;
        Ok(self.bytes.get_or_init(|| buf))
    }

    fn entry(&self, fat: &[u8], cluster: u32) -> Next {
        let c = cluster as usize;
        let raw = match self.kind {
            FsKind::Fat12 => {
                let at = c + c / 2;
                let v = fat
                    .get(at..at + 2)
                    .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
                u32::from(if c & 1 == 0 { v & 0xFFF } else { v >> 4 })
            }
            FsKind::Fat16 => fat
                .get(c * 2..c * 2 + 2)
                .map_or(0, |s| u32::from(u16::from_le_bytes([s[0], s[1]]))),
            _ => fat.get(c * 4..c * 4 + 4).map_or(0, |s| {
                u32::from_le_bytes([s[0], s[1], s[2], s[3]]) & 0x0FFF_FFFF
            }),
        };
        let end = match self.kind {
            FsKind::Fat12 => 0xFF8,
            FsKind::Fat16 => 0xFFF8,
            _ => 0x0FFF_FFF8,
        };
        if raw >= end {
            Next::End
        } else if self.valid(raw) {
            Next::Cluster(raw)
        } else {
            Next::Broken(raw)
        }
    }

    /// Whether `cluster` names a data cluster.
    pub(crate) fn valid(&self, cluster: u32) -> bool {
        cluster >= 2 && cluster - 2 < self.cluster_count
    }

    /// Walks the chain from `start`, calling `visit` with each cluster in order until it returns
    /// false or the chain ends. Errors on a loop, on a free/bad/out-of-range link, and when the
    /// chain is longer than `max_clusters`.
    pub(crate) fn walk(
        &self,
        dev: &Dev,
        start: u32,
        max_clusters: u64,
        mut visit: impl FnMut(u32) -> Result<bool>,
    ) -> Result<()> {
        let fat = self.load(dev)?;
        if !self.valid(start) {
            return Err(self.corrupt(start, format!("chain starts at invalid cluster {start}")));
        }
        let mut seen = vec![0u64; (self.cluster_count as usize).div_ceil(64)];
        let mut cluster = start;
        let mut count = 0u64;
        loop {
            let i = (cluster - 2) as usize;
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            match seen.get_mut(word) {
                Some(w) if *w & bit != 0 => {
                    return Err(self.corrupt(cluster, format!("cluster chain from {start} loops")))
                }
                Some(w) => *w |= bit,
                None => return Err(self.corrupt(cluster, "cluster out of range".to_string())),
            }
            count += 1;
            if count > max_clusters {
                return Err(Error::LimitExceeded {
                    fs: "vfat",
                    what: "cluster chain length",
                    limit: max_clusters,
                });
            }
            if !visit(cluster)? {
                return Ok(());
            }
            match self.entry(fat, cluster) {
                Next::End => return Ok(()),
                Next::Cluster(next) => cluster = next,
                Next::Broken(raw) => {
                    return Err(self.corrupt(
                        cluster,
                        format!("cluster chain from {start} reaches entry value {raw:#x}"),
                    ))
                }
            }
        }
    }

    /// Byte offset of `cluster`'s FAT entry, for error messages.
    fn corrupt(&self, cluster: u32, what: String) -> Error {
        let bits = match self.kind {
            FsKind::Fat12 => 12,
            FsKind::Fat16 => 16,
            _ => 32,
        };
        Error::Corrupt {
            fs: "vfat",
            offset: self.offset + u64::from(cluster) * bits / 8,
            what: format!("FAT: {what}"),
        }
    }
}
