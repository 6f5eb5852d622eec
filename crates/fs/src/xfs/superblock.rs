//! The primary superblock (`xfs_dsb`, AG 0, byte 0) and the geometry derived from it: how inode
//! numbers and filesystem block numbers map to device offsets.
//!
//! Every field the reader relies on is cross-checked (powers of two, logs matching sizes, the AG
//! count agreeing with the block count), so later arithmetic can trust the geometry and a hostile
//! superblock fails here with the offending field's offset.

use super::bytes::{corrupt, Buf, FS};
use crate::{Error, Result};

pub(super) const MAGIC: &[u8; 4] = b"XFSB";
/// Bytes of the superblock read at open (one 512-byte sector holds every field used).
pub(super) const SIZE: usize = 512;

/// `sb_versionnum`: directory v2 is required (v1 directories predate Linux XFS).
const VERSION_DIRV2: u16 = 0x2000;
/// `sb_features2` (v4): directory entries carry a file type byte.
const FEATURES2_FTYPE: u32 = 0x200;
/// `sb_features_incompat` (v5) bits this reader understands.
const INCOMPAT_FTYPE: u32 = 1;
/// FTYPE, SPINODES, META_UUID, BIGTIME, NEEDSREPAIR, NREXT64, EXCHRANGE, PARENT: none of them
/// changes how inodes, data forks or directory data blocks are laid out beyond what is decoded.
const INCOMPAT_KNOWN: u32 = 0xff;

/// The geometry and identity of an XFS filesystem.
#[derive(Debug, Clone)]
pub(super) struct Superblock {
    pub block_size: u32,
    pub uuid: [u8; 16],
    pub root_ino: u64,
    pub ag_blocks: u32,
    pub ag_count: u32,
    pub ag_block_log: u8,
    pub inode_size: u16,
    pub inopb_log: u8,
    /// v5 (CRC) metadata: v3 inodes, self-describing block headers.
    pub v5: bool,
    /// Directory entries carry a file type.
    pub ftype: bool,
    pub dir_block_size: u32,
    pub label: Option<String>,
}

fn pow2_in(v: u64, lo: u64, hi: u64) -> bool {
    v.is_power_of_two() && (lo..=hi).contains(&v)
}

fn check(ok: bool, offset: usize, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(corrupt(offset as u64, format!("superblock: {what}")))
    }
}

impl Superblock {
    /// Parses and validates the superblock in `raw` (read from device offset 0).
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let b = Buf::new(raw, 0);
        check(b.slice(0, 4, "magic")? == MAGIC, 0, "bad magic")?;
        let block_size = b.u32(4, "sb_blocksize")?;
        let dblocks = b.u64(8, "sb_dblocks")?;
        let root_ino = b.u64(56, "sb_rootino")?;
        let ag_blocks = b.u32(84, "sb_agblocks")?;
        let ag_count = b.u32(88, "sb_agcount")?;
        let versionnum = b.u16(100, "sb_versionnum")?;
        let sect_size = b.u16(102, "sb_sectsize")?;
        let inode_size = b.u16(104, "sb_inodesize")?;
        let inopblock = b.u16(106, "sb_inopblock")?;
        let block_log = b.u8(120, "sb_blocklog")?;
        let inode_log = b.u8(122, "sb_inodelog")?;
        let inopb_log = b.u8(123, "sb_inopblog")?;
        let ag_block_log = b.u8(124, "sb_agblklog")?;
        let dir_block_log = b.u8(192, "sb_dirblklog")?;
        let features2 = b.u32(200, "sb_features2")?;
        let incompat = b.u32(216, "sb_features_incompat")?;

        let version = versionnum & 0xf;
        check(version == 4 || version == 5, 100, "unknown version")?;
        let v5 = version == 5;
        check(v5 || versionnum & VERSION_DIRV2 != 0, 100, "v1 directories")?;
        if v5 && incompat & !INCOMPAT_KNOWN != 0 {
            return Err(Error::Unsupported {
                fs: FS,
                what: format!("incompatible features {:#x}", incompat & !INCOMPAT_KNOWN),
            });
        }
        let bs = u64::from(block_size);
        check(pow2_in(bs, 512, 65536), 4, "block size")?;
        check(1u64 << block_log.min(63) == bs, 120, "block log")?;
        check(pow2_in(sect_size.into(), 512, 32768), 102, "sector size")?;
        check(pow2_in(inode_size.into(), 256, 2048), 104, "inode size")?;
        check(
            u64::from(inode_size) <= bs,
            104,
            "inode larger than a block",
        )?;
        check(
            1u64 << inode_log.min(63) == u64::from(inode_size),
            122,
            "inode log",
        )?;
        check(
            u64::from(inopblock) == bs / u64::from(inode_size),
            106,
            "inodes per block",
        )?;
        check(
            1u64 << inopb_log.min(63) == u64::from(inopblock),
            123,
            "inodes per block log",
        )?;
        // sb_agblklog is log2 of agblocks rounded up (xfs_highbit32(agblocks - 1) + 1).
        check(ag_blocks >= 1 && ag_block_log <= 31, 84, "AG size")?;
        check(
            u64::from(ag_blocks) <= 1u64 << ag_block_log,
            124,
            "AG block log",
        )?;
        check(
            ag_block_log == 0 || u64::from(ag_blocks) > 1u64 << (ag_block_log - 1),
            124,
            "AG block log",
        )?;
        // Every AG but the last is full, so the count follows from the block count.
        let full = u64::from(ag_count.saturating_sub(1)) * u64::from(ag_blocks);
        check(
            ag_count >= 1 && full < dblocks && dblocks <= full + u64::from(ag_blocks),
            88,
            "AG count disagrees with the block count",
        )?;
        check(dblocks.checked_mul(bs).is_some(), 8, "block count")?;
        let dir_block_size = bs << dir_block_log.min(16);
        check(dir_block_size <= 65536, 192, "directory block size")?;
        let ftype = if v5 {
            incompat & INCOMPAT_FTYPE != 0
        } else {
            features2 & FEATURES2_FTYPE != 0
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(b.slice(32, 16, "sb_uuid")?);
        let fname = b.slice(108, 12, "sb_fname")?;
        let fname = fname.split(|&c| c == 0).next().unwrap_or_default();
        let label = (!fname.is_empty()).then(|| String::from_utf8_lossy(fname).into_owned());
        Ok(Superblock {
            block_size,
            uuid,
            root_ino,
            ag_blocks,
            ag_count,
            ag_block_log,
            inode_size,
            inopb_log,
            v5,
            ftype,
            dir_block_size: dir_block_size as u32,
            label,
        })
    }

    /// `blkid`'s form: dashed lowercase hex.
    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Device offset of AG-relative block `agbno` in AG `agno`, if both are in range.
    fn ag_block_offset(&self, agno: u64, agbno: u64) -> Option<u64> {
        if agno >= u64::from(self.ag_count) || agbno >= u64::from(self.ag_blocks) {
            return None;
        }
        let block = agno
            .checked_mul(self.ag_blocks.into())?
            .checked_add(agbno)?;
        block.checked_mul(self.block_size.into())
    }

    /// Device offset of filesystem block `fsb` (AG number in the high bits, `sb_agblklog` low).
    pub fn fsb_offset(&self, fsb: u64) -> Option<u64> {
        let agno = fsb >> self.ag_block_log;
        let agbno = fsb & ((1u64 << self.ag_block_log) - 1);
        self.ag_block_offset(agno, agbno)
    }

    /// Device offset of inode `ino`: AG | AG block | index within the block.
    pub fn inode_offset(&self, ino: u64) -> Option<u64> {
        let shift = u32::from(self.ag_block_log) + u32::from(self.inopb_log);
        let agno = ino.checked_shr(shift).unwrap_or(0);
        let agbno = (ino >> self.inopb_log) & ((1u64 << self.ag_block_log) - 1);
        let index = ino & ((1u64 << self.inopb_log) - 1);
        self.ag_block_offset(agno, agbno)?
            .checked_add(index * u64::from(self.inode_size))
    }
}
