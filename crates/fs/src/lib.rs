//! Read-only filesystems over a [`BlockDevice`].
//!
//! Every filesystem is reached through one trait, [`Filesystem`], whose paths are *inside that
//! filesystem*: absolute, `/`-separated byte strings with no `.` or `..` components. A filesystem
//! never follows a symbolic link: a symlink met in the middle of a path is reported as
//! [`Error::NotADirectory`], and [`Filesystem::metadata`] describes the link itself (lstat). Symlink
//! resolution across the filesystems of a guest belongs to the guest view above this crate, which
//! is the only place that knows the guest's mount table.
//!
//! File names are bytes: Linux names need not be UTF-8. FAT and NTFS names (UTF-16 on disk) are
//! returned as UTF-8.

use porthole_image::BlockDevice;
use std::fmt;
use std::sync::Arc;

pub mod fuzzing;

mod btrfs;
mod ext4;
mod fat;
mod ntfs;
mod xfs;

pub use btrfs::{BtrfsFs, Subvolume, SubvolumeSelector};

/// What kind of filesystem a reader serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Fat12,
    Fat16,
    Fat32,
    Ntfs,
}

impl FsKind {
    /// The name `blkid` and `/etc/fstab` use for this type.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => "vfat",
            FsKind::Ntfs => "ntfs",
        }
    }
}

/// Identity of a filesystem, as `blkid` would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub kind: FsKind,
    pub label: Option<String>,
    /// Formatted the way `blkid` prints it (dashed lowercase hex for ext4/XFS/btrfs,
    /// `XXXX-XXXX` for FAT, 16 upper-case hex digits for NTFS).
    pub uuid: Option<String>,
}

/// The type of a directory entry or inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

/// What `lstat` would say about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub file_type: FileType,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    /// Modification time, seconds since the epoch, when the filesystem records one.
    pub mtime: Option<i64>,
    /// The inode number (or the nearest equivalent: NTFS file record, FAT entry position).
    pub ino: u64,
}

/// One entry of a directory listing (`.` and `..` are never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub file_type: FileType,
    pub ino: u64,
}

/// Errors from reading a filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Device(#[from] porthole_image::Error),
    /// No known filesystem signature was found.
    #[error("no supported filesystem found")]
    Unrecognized,
    /// A structure is malformed; names the filesystem, the structure and its byte offset on the device.
    #[error("{fs} at offset {offset:#x}: {what}")]
    Corrupt {
        fs: &'static str,
        offset: u64,
        what: String,
    },
    #[error("{fs}: unsupported: {what}")]
    Unsupported { fs: &'static str, what: String },
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("{path}: is a directory")]
    IsADirectory { path: String },
    #[error("{path}: not a symbolic link")]
    NotASymlink { path: String },
    /// A fixed bound was hit (directory size, extent count, tree depth); guards against hostile images.
    #[error("{fs}: {what} exceeds the limit of {limit}")]
    LimitExceeded {
        fs: &'static str,
        what: &'static str,
        limit: u64,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A read-only filesystem. Paths are absolute inside the filesystem; see the crate docs.
pub trait Filesystem: Send + Sync + fmt::Debug {
    fn info(&self) -> FsInfo;

    /// lstat: describes the final component itself, never a symlink's target.
    fn metadata(&self, path: &[u8]) -> Result<Metadata>;

    /// Lists a directory, without `.` and `..`.
    fn read_dir(&self, path: &[u8]) -> Result<Vec<DirEntry>>;

    /// Reads up to `buf.len()` bytes of a regular file at `offset`; returns how many were read
    /// (0 at or past the end of the file).
    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// The target of a symbolic link, as stored.
    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>>;

    /// Extended attributes (name, value); filesystems that do not read them cheaply return none.
    fn xattrs(&self, _path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(Vec::new())
    }

    /// Reads a whole regular file, refusing files larger than `limit` bytes.
    fn read_file(&self, path: &[u8], limit: u64) -> Result<Vec<u8>> {
        let meta = self.metadata(path)?;
        if meta.file_type == FileType::Directory {
            return Err(Error::IsADirectory {
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        if meta.size > limit {
            return Err(Error::LimitExceeded {
                fs: self.info().kind.name(),
                what: "file size",
                limit,
            });
        }
        let len = usize::try_from(meta.size).map_err(|_| Error::LimitExceeded {
            fs: self.info().kind.name(),
            what: "file size",
            limit,
        })?;
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = self.read_at(path, done as u64, &mut out[done..])?;
            if n == 0 {
                break;
            }
            done += n;
        }
        out.truncate(done);
        Ok(out)
    }
}

/// A shared, type-erased device: a disk image, a partition or a logical volume.
pub type Dev = Arc<dyn BlockDevice>;

/// One reader's probe: `None` when its signature is absent, else the result of opening.
type Probe = fn(&Dev) -> Option<Result<Box<dyn Filesystem>>>;

/// Every reader, in probe order. NTFS precedes FAT: both start with a BIOS parameter block,
/// and only NTFS's OEM id tells them apart.
const PROBES: &[Probe] = &[
    ext4::probe,
    xfs::probe,
    btrfs::probe,
    ntfs::probe,
    fat::probe,
];

/// Probes `device` for a known filesystem by superblock magic and opens it.
pub fn open(device: Dev) -> Result<Box<dyn Filesystem>> {
    PROBES
        .iter()
        .find_map(|probe| probe(&device))
        .unwrap_or(Err(Error::Unrecognized))
}
