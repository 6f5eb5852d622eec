//! The ext2/3/4 superblock: geometry, features, identity, and the ext2/ext3/ext4 decision.
//!
//! Every geometry field is checked here, once, so the rest of the reader can multiply and
//! divide by them without guarding against zero or absurd values again.

use super::raw::{corrupt, le16, le32, FS};
use crate::{Error, FsKind, Result};

/// Byte offset of the primary superblock on the device.
pub(crate) const OFFSET: u64 = 1024;
/// Bytes of the superblock read (the on-disk structure is 1024 bytes).
pub(crate) const SIZE: usize = 1024;
pub(crate) const MAGIC: u16 = 0xEF53;
/// Offset of `s_magic` inside the superblock.
pub(crate) const MAGIC_AT: usize = 0x38;

// s_feature_compat
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
// s_feature_incompat
const INCOMPAT_COMPRESSION: u32 = 0x1;
pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_DIRDATA: u32 = 0x1000;
/// Every incompat feature this reader knows; anything else may change the on-disk format.
const INCOMPAT_KNOWN: u32 = 0x3_F7DF;
// s_feature_ro_compat
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;

/// Features ext3 understands (libblkid's `EXT3_FEATURE_*_SUPP`): a filesystem using any other
/// is ext4 to blkid.
const EXT3_RO_COMPAT_SUPP: u32 = 0x1 | 0x2 | 0x4;
const EXT3_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;

#[derive(Debug, Clone)]
pub(crate) struct Superblock {
    pub block_size: u64,
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub inodes_per_group: u32,
    pub inode_size: u32,
    pub desc_size: u32,
    pub group_count: u32,
    pub first_meta_bg: u32,
    pub backup_bgs: [u32; 2],
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub uuid: [u8; 16],
    pub label: [u8; 16],
}

fn bad(field: &str, value: impl std::fmt::Display) -> Error {
    corrupt(OFFSET, format!("superblock: {field} {value} is invalid"))
}

impl Superblock {
    /// Parses and validates the 1024-byte superblock. The caller has checked the magic.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let log = le32(b, 0x18);
        if log > 6 {
            return Err(bad("block size log (s_log_block_size)", log));
        }
        let block_size = 1024u64 << log;
        let compat = le32(b, 0x5C);
        let incompat = le32(b, 0x60);
        let ro_compat = le32(b, 0x64);
        check_features(incompat)?;
        let rev = le32(b, 0x4C);
        let inode_size = if rev == 0 {
            128
        } else {
            u32::from(le16(b, 0x58))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || u64::from(inode_size) > block_size {
            return Err(bad("inode size (s_inode_size)", inode_size));
        }
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            u32::from(le16(b, 0xFE))
        } else {
            32
        };
        if desc_size < 32 || !desc_size.is_power_of_two() || u64::from(desc_size) > block_size {
            return Err(bad("group descriptor size (s_desc_size)", desc_size));
        }
        let blocks_hi = if incompat & INCOMPAT_64BIT != 0 {
            u64::from(le32(b, 0x150))
        } else {
            0
        };
        let blocks_count = u64::from(le32(b, 0x4)) | blocks_hi << 32;
        // Every block's byte offset must fit in a u64, so the reader can multiply freely.
        if blocks_count.checked_mul(block_size).is_none() {
            return Err(bad("block count", blocks_count));
        }
        let first_data_block = u64::from(le32(b, 0x14));
        if first_data_block >= blocks_count || first_data_block > 1 {
            return Err(bad(
                "first data block (s_first_data_block)",
                first_data_block,
            ));
        }
        // A group's block bitmap is one block, so a group holds at most 8 * block_size blocks;
        // the same holds for inodes.
        let blocks_per_group = u64::from(le32(b, 0x20));
        if blocks_per_group == 0 || blocks_per_group > 8 * block_size {
            return Err(bad("blocks per group", blocks_per_group));
        }
        let inodes_per_group = le32(b, 0x28);
        if inodes_per_group == 0 || u64::from(inodes_per_group) > 8 * block_size {
            return Err(bad("inodes per group", inodes_per_group));
        }
        let groups = (blocks_count - first_data_block).div_ceil(blocks_per_group);
        let group_count = u32::try_from(groups).map_err(|_| bad("block group count", groups))?;
        let inodes_count = le32(b, 0x0);
        if u64::from(inodes_count) > u64::from(group_count) * u64::from(inodes_per_group) {
            return Err(bad("inode count", inodes_count));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(b.get(0x68..0x78).unwrap_or(&[0; 16]));
        let mut label = [0u8; 16];
        label.copy_from_slice(b.get(0x78..0x88).unwrap_or(&[0; 16]));
        Ok(Self {
            block_size,
            inodes_count,
            blocks_count,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inode_size,
            desc_size,
            group_count,
            first_meta_bg: le32(b, 0x104),
            backup_bgs: [le32(b, 0x24C), le32(b, 0x250)],
            compat,
            incompat,
            ro_compat,
            uuid,
            label,
        })
    }

    /// ext2, ext3 or ext4, decided as libblkid does: any feature ext3 does not understand
    /// makes it ext4; otherwise a journal makes it ext3.
    pub fn kind(&self) -> FsKind {
        if self.ro_compat & !EXT3_RO_COMPAT_SUPP != 0 || self.incompat & !EXT3_INCOMPAT_SUPP != 0 {
            FsKind::Ext4
        } else if self.compat & COMPAT_HAS_JOURNAL != 0 {
            FsKind::Ext3
        } else {
            FsKind::Ext2
        }
    }

    pub fn has(&self, incompat: u32) -> bool {
        self.incompat & incompat != 0
    }

    /// The label, up to its first NUL; `None` when empty.
    pub fn label(&self) -> Option<String> {
        let end = self.label.iter().position(|&c| c == 0).unwrap_or(16);
        let label = self.label.get(..end).unwrap_or_default();
        (!label.is_empty()).then(|| String::from_utf8_lossy(label).into_owned())
    }

    /// The UUID in blkid's dashed lowercase form; `None` when all zero.
    pub fn uuid(&self) -> Option<String> {
        if self.uuid == [0; 16] {
            return None;
        }
        let mut s = String::with_capacity(36);
        for (i, byte) in self.uuid.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{byte:02x}"));
        }
        Some(s)
    }

    /// Byte offset of group `group`'s descriptor.
    pub fn descriptor_offset(&self, group: u32) -> Option<u64> {
        let per_block = self.block_size / u64::from(self.desc_size);
        let index = u64::from(group) / per_block;
        let block = if self.has(INCOMPAT_META_BG) && index >= u64::from(self.first_meta_bg) {
            // meta_bg: each meta-group's descriptors sit in its first group, after the
            // superblock backup if that group has one.
            let first = u32::try_from(index * per_block).ok()?;
            self.group_first_block(first)? + u64::from(self.has_super(first))
        } else {
            self.first_data_block + 1 + index
        };
        block
            .checked_mul(self.block_size)?
            .checked_add(u64::from(group) % per_block * u64::from(self.desc_size))
    }

    fn group_first_block(&self, group: u32) -> Option<u64> {
        u64::from(group)
            .checked_mul(self.blocks_per_group)?
            .checked_add(self.first_data_block)
    }

    /// Whether `group` holds a superblock backup.
    fn has_super(&self, group: u32) -> bool {
        if group == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return self.backup_bgs.contains(&group);
        }
        if group <= 1 || self.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| is_power_of(group, base))
    }
}

fn is_power_of(n: u32, base: u32) -> bool {
    let mut power = 1u64;
    while power < u64::from(n) {
        power *= u64::from(base);
    }
    power == u64::from(n)
}

/// Refuses the features that change the on-disk format in ways this reader does not follow.
fn check_features(incompat: u32) -> Result<()> {
    let unsupported = |what: &str| {
        Err(Error::Unsupported {
            fs: FS,
            what: what.to_string(),
        })
    };
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return unsupported("an external journal device holds no files");
    }
    if incompat & INCOMPAT_COMPRESSION != 0 {
        return unsupported("compression feature");
    }
    if incompat & INCOMPAT_DIRDATA != 0 {
        return unsupported("dirdata feature");
    }
    if incompat & !INCOMPAT_KNOWN != 0 {
        return unsupported(&format!(
            "unknown incompatible features {:#x}",
            incompat & !INCOMPAT_KNOWN
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal valid superblock: 4 KiB blocks, one group.
    fn sb(compat: u32, incompat: u32, ro_compat: u32) -> Superblock {
        let mut b = vec![0u8; SIZE];
        let mut put = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(0x0, 128);
        put(0x4, 1024);
        put(0x18, 2);
        put(0x20, 32768);
        put(0x28, 128);
        put(0x4C, 1);
        put(0x5C, compat);
        put(0x60, incompat);
        put(0x64, ro_compat);
        b[0x58..0x5A].copy_from_slice(&256u16.to_le_bytes());
        b[0x68..0x78].copy_from_slice(&[0xab; 16]);
        Superblock::parse(&b).unwrap()
    }

    #[test]
    fn kind_follows_blkid() {
        assert_eq!(sb(0, INCOMPAT_FILETYPE, 0x3).kind(), FsKind::Ext2);
        assert_eq!(
            sb(COMPAT_HAS_JOURNAL, INCOMPAT_FILETYPE, 0x3).kind(),
            FsKind::Ext3
        );
        // extents, or a ro_compat feature ext3 lacks (huge_file), make it ext4 even without
        // a journal.
        assert_eq!(sb(0, INCOMPAT_FILETYPE | 0x40, 0).kind(), FsKind::Ext4);
        assert_eq!(
            sb(COMPAT_HAS_JOURNAL, INCOMPAT_FILETYPE, 0x8).kind(),
            FsKind::Ext4
        );
    }

    #[test]
    fn uuid_is_dashed_lowercase() {
        let s = sb(0, 0, 0);
        assert_eq!(s.uuid().unwrap(), "abababab-abab-abab-abab-abababababab");
        assert_eq!(s.label(), None);
    }

    #[test]
    fn superblock_backups() {
        let s = sb(0, 0, RO_COMPAT_SPARSE_SUPER);
        let with: Vec<u32> = (0..50).filter(|&g| s.has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
    }

    #[test]
    fn refuses_format_changing_features() {
        let mut b = vec![0u8; SIZE];
        b[0x60..0x64].copy_from_slice(&INCOMPAT_COMPRESSION.to_le_bytes());
        assert!(matches!(
            Superblock::parse(&b),
            Err(Error::Unsupported { .. })
        ));
    }
}
