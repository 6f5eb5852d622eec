//! Inodes: locating one through its group descriptor and decoding the fields lstat needs.

use super::raw::{corrupt, le16, le32};
use crate::{FileType, Metadata};

pub(crate) const ROOT: u32 = 2;
/// Bytes of `i_block`: extent root, block map, fast symlink target or inline data.
pub(crate) const I_BLOCK_LEN: usize = 60;
const I_BLOCK_AT: usize = 0x28;
/// The fixed part of an inode; `i_extra_isize` more bytes follow in larger inodes.
const GOOD_OLD_SIZE: usize = 128;

const FLAG_ENCRYPT: u32 = 0x800;
const FLAG_EXTENTS: u32 = 0x8_0000;
const FLAG_INLINE_DATA: u32 = 0x1000_0000;

/// A decoded inode, with its raw bytes kept for in-inode extended attributes.
#[derive(Debug, Clone)]
pub(crate) struct Inode {
    pub ino: u32,
    /// Byte offset of the inode on the device, for error messages.
    pub offset: u64,
    pub mode: u16,
    pub size: u64,
    pub flags: u32,
    pub file_acl: u64,
    raw: Vec<u8>,
}

impl Inode {
    /// Decodes `raw` (one `s_inode_size` record) read from `offset`.
    pub fn parse(ino: u32, offset: u64, raw: Vec<u8>) -> crate::Result<Self> {
        let inode = Self {
            ino,
            offset,
            mode: le16(&raw, 0x0),
            size: u64::from(le32(&raw, 0x4)) | u64::from(le32(&raw, 0x6C)) << 32,
            flags: le32(&raw, 0x20),
            file_acl: u64::from(le32(&raw, 0x68)) | u64::from(le16(&raw, 0x76)) << 32,
            raw,
        };
        if inode.mode == 0 {
            return Err(corrupt(
                offset,
                format!("inode {ino} is not in use (mode 0)"),
            ));
        }
        if inode.extra_range().is_none() {
            return Err(corrupt(
                offset,
                format!(
                    "inode {ino}: i_extra_isize {} is invalid",
                    inode.extra_isize()
                ),
            ));
        }
        Ok(inode)
    }

    pub fn file_type(&self) -> FileType {
        match self.mode & 0xF000 {
            0x8000 => FileType::Regular,
            0x4000 => FileType::Directory,
            0xA000 => FileType::Symlink,
            0x2000 => FileType::CharDevice,
            0x6000 => FileType::BlockDevice,
            0x1000 => FileType::Fifo,
            0xC000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    pub fn i_block(&self) -> &[u8] {
        self.raw
            .get(I_BLOCK_AT..I_BLOCK_AT + I_BLOCK_LEN)
            .unwrap_or_default()
    }

    /// Device offset of `i_block`, for error messages about structures stored there.
    pub fn i_block_offset(&self) -> u64 {
        self.offset + I_BLOCK_AT as u64
    }

    pub fn has_extents(&self) -> bool {
        self.flags & FLAG_EXTENTS != 0
    }

    pub fn has_inline_data(&self) -> bool {
        self.flags & FLAG_INLINE_DATA != 0
    }

    pub fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPT != 0
    }

    fn extra_isize(&self) -> usize {
        if self.raw.len() > GOOD_OLD_SIZE {
            usize::from(le16(&self.raw, 0x80))
        } else {
            0
        }
    }

    /// The bytes after the fixed part and `i_extra_isize`: where in-inode xattrs live.
    fn extra_range(&self) -> Option<std::ops::Range<usize>> {
        let start = GOOD_OLD_SIZE.checked_add(self.extra_isize())?;
        (start <= self.raw.len() && self.extra_isize() & 3 == 0).then_some(start..self.raw.len())
    }

    /// The in-inode extended attribute area and its device offset (empty for 128-byte inodes).
    pub fn xattr_area(&self) -> (&[u8], u64) {
        let range = self.extra_range().unwrap_or(0..0);
        let at = self.offset + range.start as u64;
        (self.raw.get(range).unwrap_or_default(), at)
    }

    /// Whether the inode has room for the field ending `end` bytes into the extra area.
    fn has_extra(&self, end: usize) -> bool {
        end <= self.extra_isize()
    }

    /// Modification time: the signed 32-bit seconds, extended by the two epoch bits of
    /// `i_mtime_extra` when the inode is large enough to hold them.
    fn mtime(&self) -> i64 {
        let mut secs = i64::from(le32(&self.raw, 0x10) as i32);
        if self.has_extra(0x0C) {
            secs += i64::from(le32(&self.raw, 0x88) & 3) << 32;
        }
        secs
    }

    pub fn metadata(&self) -> Metadata {
        let hi16 = |at| u32::from(le16(&self.raw, at)) << 16;
        Metadata {
            file_type: self.file_type(),
            mode: u32::from(self.mode & 0o7777),
            uid: u32::from(le16(&self.raw, 0x2)) | hi16(0x78),
            gid: u32::from(le16(&self.raw, 0x18)) | hi16(0x7A),
            size: self.size,
            nlink: u64::from(le16(&self.raw, 0x1A)),
            mtime: Some(self.mtime()),
            ino: u64::from(self.ino),
        }
    }

    /// The directory entry type byte's meaning, for entries whose type the directory records.
    pub fn dirent_type(ty: u8) -> FileType {
        match ty {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => FileType::Unknown,
        }
    }
}
