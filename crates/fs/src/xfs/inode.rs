//! On-disk inodes (`xfs_dinode`): the v1/v2 core (100 bytes) or the v3 core of CRC filesystems
//! (176 bytes), followed by the literal area holding the data fork and, after `di_forkoff`, the
//! attribute fork.

use super::bytes::{corrupt, Buf};
use super::superblock::Superblock;
use crate::{FileType, Metadata, Result};

const MAGIC: u16 = 0x494e; // "IN"
const CORE_V2: usize = 100;
const CORE_V3: usize = 176;
/// `di_flags`: the file's data lives on the realtime device.
const FLAG_REALTIME: u16 = 0x1;
/// `di_flags2`: timestamps are 64-bit nanosecond counters.
const FLAG2_BIGTIME: u64 = 1 << 3;
/// `di_flags2`: extent counters are 64/32 bits wide.
const FLAG2_NREXT64: u64 = 1 << 4;
/// Seconds between the bigtime epoch and the Unix epoch (bigtime counts from i32::MIN).
const BIGTIME_EPOCH_OFFSET: i64 = 1 << 31;

/// How a fork's contents are stored (`di_format`, `di_aformat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Dev,
    Local,
    Extents,
    Btree,
    Other(u8),
}

impl From<u8> for Format {
    fn from(v: u8) -> Self {
        match v {
            0 => Format::Dev,
            1 => Format::Local,
            2 => Format::Extents,
            3 => Format::Btree,
            n => Format::Other(n),
        }
    }
}

/// One fork: its format, record count and bytes (copied out of the inode).
#[derive(Debug, Clone)]
pub(super) struct Fork {
    pub format: Format,
    pub nextents: u64,
    pub data: Vec<u8>,
    /// Device offset of `data[0]`.
    pub offset: u64,
}

impl Fork {
    pub fn buf(&self) -> Buf<'_> {
        Buf::new(&self.data, self.offset)
    }
}

/// The parts of an inode the reader uses.
#[derive(Debug, Clone)]
pub(super) struct Inode {
    pub ino: u64,
    /// Device offset of the inode.
    pub offset: u64,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub mtime: i64,
    pub realtime: bool,
    pub data: Fork,
    /// `None` when the inode has no attribute fork.
    pub attr: Option<Fork>,
}

impl Inode {
    /// Parses the inode `ino` from `raw` (one `sb_inodesize` record read at `offset`).
    pub fn parse(sb: &Superblock, ino: u64, raw: &[u8], offset: u64) -> Result<Self> {
        let b = Buf::new(raw, offset);
        if b.u16(0, "di_magic")? != MAGIC {
            return Err(corrupt(offset, format!("inode {ino}: bad magic")));
        }
        let version = b.u8(4, "di_version")?;
        let core = match version {
            3 if sb.v5 => CORE_V3,
            1 | 2 if !sb.v5 => CORE_V2,
            _ => return Err(corrupt(b.at(4), format!("inode {ino}: version {version}"))),
        };
        let flags2 = if version == 3 {
            b.u64(120, "di_flags2")?
        } else {
            0
        };
        let nlink = if version == 1 {
            b.u16(6, "di_onlink")?.into()
        } else {
            b.u32(16, "di_nlink")?
        };
        let (nextents, anextents) = if flags2 & FLAG2_NREXT64 != 0 {
            (
                b.u64(24, "di_big_nextents")?,
                u64::from(b.u32(76, "di_big_anextents")?),
            )
        } else {
            (
                u64::from(b.u32(76, "di_nextents")?),
                u64::from(b.u16(80, "di_anextents")?),
            )
        };
        let mtime = if flags2 & FLAG2_BIGTIME != 0 {
            let ns = b.u64(40, "di_mtime")?;
            (ns / 1_000_000_000) as i64 - BIGTIME_EPOCH_OFFSET
        } else {
            i64::from(b.u32(40, "di_mtime")? as i32)
        };
        let forkoff = usize::from(b.u8(82, "di_forkoff")?) * 8;
        let literal = raw.len().saturating_sub(core);
        if forkoff >= literal && forkoff != 0 {
            return Err(corrupt(
                b.at(82),
                format!("inode {ino}: fork offset past the inode"),
            ));
        }
        let data_len = if forkoff == 0 { literal } else { forkoff };
        let data = b.sub(core, data_len, "data fork")?;
        let attr = if forkoff == 0 {
            None
        } else {
            let a = b.sub(core + forkoff, literal - forkoff, "attribute fork")?;
            Some(Fork {
                format: b.u8(83, "di_aformat")?.into(),
                nextents: anextents,
                data: a.data.to_vec(),
                offset: a.base,
            })
        };
        Ok(Inode {
            ino,
            offset,
            mode: b.u16(2, "di_mode")?,
            uid: b.u32(8, "di_uid")?,
            gid: b.u32(12, "di_gid")?,
            nlink,
            size: b.u64(56, "di_size")?,
            mtime,
            realtime: b.u16(90, "di_flags")? & FLAG_REALTIME != 0,
            data: Fork {
                format: b.u8(5, "di_format")?.into(),
                nextents,
                data: data.data.to_vec(),
                offset: data.base,
            },
            attr,
        })
    }

    pub fn file_type(&self) -> FileType {
        mode_type(self.mode)
    }

    pub fn metadata(&self) -> Metadata {
        Metadata {
            file_type: self.file_type(),
            mode: u32::from(self.mode) & 0o7777,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            nlink: self.nlink.into(),
            mtime: Some(self.mtime),
            ino: self.ino,
        }
    }
}

/// The file type in the `S_IFMT` bits of a mode.
pub(super) fn mode_type(mode: u16) -> FileType {
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
