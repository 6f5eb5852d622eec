//! Item types of the root and FS trees and their parsers. Every parser takes the item's data
//! and returns `None` when it is too short; callers turn that into a located error.

use super::bytes::{slice, u16_at, u32_at, u64_at, u8_at};
use super::tree::Key;
use crate::FileType;

pub(super) const INODE_ITEM: u8 = 1;
pub(super) const INODE_REF: u8 = 12;
pub(super) const XATTR_ITEM: u8 = 24;
pub(super) const DIR_ITEM: u8 = 84;
pub(super) const DIR_INDEX: u8 = 96;
pub(super) const EXTENT_DATA: u8 = 108;
pub(super) const ROOT_ITEM: u8 = 132;
pub(super) const ROOT_BACKREF: u8 = 144;
pub(super) const ROOT_REF: u8 = 156;

/// The root tree's own directory, holding the "default" subvolume entry.
pub(super) const ROOT_TREE_DIR: u64 = 6;
/// The top-level subvolume.
pub(super) const FS_TREE: u64 = 5;
/// Subvolume ids run from here to `LAST_FREE_OBJECTID`.
pub(super) const FIRST_FREE_OBJECTID: u64 = 256;
pub(super) const LAST_FREE_OBJECTID: u64 = u64::MAX - 255;

/// What `stat` needs from an inode item.
#[derive(Debug, Clone)]
pub(super) struct Inode {
    pub size: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: i64,
}

pub(super) fn inode(d: &[u8]) -> Option<Inode> {
    Some(Inode {
        size: u64_at(d, 16)?,
        nlink: u32_at(d, 40)?,
        uid: u32_at(d, 44)?,
        gid: u32_at(d, 48)?,
        mode: u32_at(d, 52)?,
        mtime: u64_at(d, 136)? as i64,
    })
}

pub(super) fn file_type_of_mode(mode: u32) -> FileType {
    match mode & 0o170000 {
        0o100000 => FileType::Regular,
        0o040000 => FileType::Directory,
        0o120000 => FileType::Symlink,
        0o020000 => FileType::CharDevice,
        0o060000 => FileType::BlockDevice,
        0o010000 => FileType::Fifo,
        0o140000 => FileType::Socket,
        _ => FileType::Unknown,
    }
}

/// One entry of a DIR_ITEM, DIR_INDEX or XATTR_ITEM (several may share one item).
#[derive(Debug, Clone)]
pub(super) struct DirItem<'a> {
    pub location: Key,
    pub file_type: FileType,
    pub name: &'a [u8],
    pub data: &'a [u8],
}

const DIR_ITEM_HEADER: usize = 30;
/// BTRFS_NAME_LEN (and XATTR_NAME_MAX): longer names are corruption.
pub(super) const NAME_MAX: usize = 255;

/// Every entry packed in one item; `None` if any is truncated.
pub(super) fn dir_items(mut d: &[u8]) -> Option<Vec<DirItem<'_>>> {
    let mut out = Vec::new();
    // Each entry consumes at least its header, so this ends.
    while !d.is_empty() {
        let location = Key::parse(slice(d, 0, 17)?)?;
        let data_len = usize::from(u16_at(d, 25)?);
        let name_len = usize::from(u16_at(d, 27)?);
        if name_len > NAME_MAX {
            return None;
        }
        let file_type = match u8_at(d, 29)? {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => FileType::Unknown,
        };
        let name = slice(d, DIR_ITEM_HEADER, name_len)?;
        let data = slice(d, DIR_ITEM_HEADER + name_len, data_len)?;
        out.push(DirItem {
            location,
            file_type,
            name,
            data,
        });
        d = d.get(DIR_ITEM_HEADER + name_len + data_len..)?;
    }
    Some(out)
}

/// A ROOT_ITEM: where a tree's root block is and its top directory.
#[derive(Debug, Clone, Copy)]
pub(super) struct RootItem {
    pub root_dirid: u64,
    pub bytenr: u64,
    pub level: u8,
}

pub(super) fn root_item(d: &[u8]) -> Option<RootItem> {
    Some(RootItem {
        root_dirid: u64_at(d, 168)?,
        bytenr: u64_at(d, 176)?,
        level: u8_at(d, 238)?,
    })
}

/// A ROOT_REF / ROOT_BACKREF: the directory (in the parent tree) holding a subvolume, and its name.
#[derive(Debug, Clone)]
pub(super) struct RootRef {
    pub dirid: u64,
    pub name: Vec<u8>,
}

pub(super) fn root_ref(d: &[u8]) -> Option<RootRef> {
    let len = usize::from(u16_at(d, 16)?);
    Some(RootRef {
        dirid: u64_at(d, 0)?,
        name: slice(d, 18, len)?.to_vec(),
    })
}

/// The first name of an INODE_REF item (index u64, name_len u16, name).
pub(super) fn inode_ref_name(d: &[u8]) -> Option<&[u8]> {
    slice(d, 10, usize::from(u16_at(d, 8)?))
}

/// A file extent (EXTENT_DATA item).
#[derive(Debug, Clone)]
pub(super) enum Extent<'a> {
    /// Data inside the item; `ram_bytes` is its decoded length.
    Inline {
        compression: u8,
        ram_bytes: u64,
        data: &'a [u8],
    },
    /// Data in a disk extent; `disk_bytenr == 0` is a hole, `prealloc` reads as zeros.
    Regular {
        compression: u8,
        prealloc: bool,
        ram_bytes: u64,
        disk_bytenr: u64,
        disk_num_bytes: u64,
        offset: u64,
        num_bytes: u64,
    },
}

pub(super) const COMPRESS_NONE: u8 = 0;

/// Parses an EXTENT_DATA item; `Err` names what is wrong.
pub(super) fn extent(d: &[u8]) -> Result<Extent<'_>, String> {
    let short = || "file extent item truncated".to_string();
    let ram_bytes = u64_at(d, 8).ok_or_else(short)?;
    let compression = u8_at(d, 16).ok_or_else(short)?;
    let encryption = u8_at(d, 17).ok_or_else(short)?;
    let other = u16_at(d, 18).ok_or_else(short)?;
    if encryption != 0 || other != 0 {
        return Err(format!(
            "file extent with encryption {encryption} / encoding {other} is not readable"
        ));
    }
    match u8_at(d, 20).ok_or_else(short)? {
        0 => Ok(Extent::Inline {
            compression,
            ram_bytes,
            data: d.get(21..).unwrap_or(&[]),
        }),
        kind @ (1 | 2) => Ok(Extent::Regular {
            compression,
            prealloc: kind == 2,
            ram_bytes,
            disk_bytenr: u64_at(d, 21).ok_or_else(short)?,
            disk_num_bytes: u64_at(d, 29).ok_or_else(short)?,
            offset: u64_at(d, 37).ok_or_else(short)?,
            num_bytes: u64_at(d, 45).ok_or_else(short)?,
        }),
        kind => Err(format!("file extent of unknown type {kind}")),
    }
}
