//! XFS, read-only: v4 and v5 (CRC) filesystems.
//!
//! Opening reads only the primary superblock and the root inode. A path is resolved from the
//! root inode one directory at a time ([`dir`]), inode numbers are turned into device offsets by
//! the superblock's geometry ([`superblock`]), and file data is read through the data fork's
//! block map ([`bmap`]). Checksums are not verified: every structure is instead bounds-checked
//! and cross-checked (magic numbers, levels, owners) where it is used.
//!
//! Only the blocks a request needs are read: no AG headers, free-space or inode B+trees.
//! A truncated image therefore opens, and reads that reach past its end fail with the device's
//! out-of-range error.

mod attr;
mod bmap;
mod bytes;
mod dir;
mod inode;
mod superblock;
mod symlink;

use std::sync::{Arc, Mutex};

use bytes::{corrupt, FS};
use inode::{Format, Inode};
use superblock::Superblock;

use crate::{Dev, DirEntry, Error, FileType, Filesystem, FsInfo, FsKind, Metadata, Result};

/// Directories whose listings are kept, so that a walk stat'ing every entry of a big directory
/// does not re-read it per entry.
const DIR_CACHE: usize = 8;
/// Path components resolved per lookup.
const MAX_COMPONENTS: usize = 4096;

/// `Some` when the device starts with the XFS superblock magic.
pub(crate) fn probe(device: &Dev) -> Option<Result<Box<dyn Filesystem>>> {
    let mut magic = [0u8; 4];
    device.read_exact_at(&mut magic, 0).ok()?;
    (&magic == superblock::MAGIC)
        .then(|| Xfs::open(device.clone()).map(|fs| Box::new(fs) as Box<dyn Filesystem>))
}

/// The device and its geometry: what every module needs to read a structure.
#[derive(Debug)]
pub(super) struct Volume {
    dev: Dev,
    sb: Superblock,
}

impl Volume {
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(&mut buf, offset)?;
        Ok(buf)
    }

    fn read_into(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        Ok(self.dev.read_exact_at(buf, offset)?)
    }

    /// Device offset of filesystem block `fsb`; `what` names the pointer for the error.
    fn fsb_offset(&self, fsb: u64, what: &str) -> Result<u64> {
        self.sb
            .fsb_offset(fsb)
            .ok_or_else(|| corrupt(0, format!("{what} {fsb:#x} outside the filesystem")))
    }

    fn inode(&self, ino: u64) -> Result<Inode> {
        let offset = self
            .sb
            .inode_offset(ino)
            .ok_or_else(|| corrupt(0, format!("inode number {ino} outside the filesystem")))?;
        let raw = self.read(offset, self.sb.inode_size.into())?;
        Inode::parse(&self.sb, ino, &raw, offset)
    }
}

/// An open XFS filesystem.
#[derive(Debug)]
pub struct Xfs {
    vol: Volume,
    root: Inode,
    /// Recently listed directories, most recent last.
    dirs: Mutex<Vec<(u64, Arc<Vec<dir::Entry>>)>>,
}

impl Xfs {
    pub fn open(dev: Dev) -> Result<Self> {
        let mut raw = [0u8; superblock::SIZE];
        dev.read_exact_at(&mut raw, 0)?;
        let sb = Superblock::parse(&raw)?;
        let vol = Volume { dev, sb };
        let root = vol.inode(vol.sb.root_ino)?;
        if root.file_type() != FileType::Directory {
            return Err(corrupt(root.offset, "root inode is not a directory"));
        }
        Ok(Xfs {
            vol,
            root,
            dirs: Mutex::new(Vec::new()),
        })
    }

    /// The entries of directory `d`, from the cache when recently listed.
    fn entries(&self, d: &Inode) -> Result<Arc<Vec<dir::Entry>>> {
        let mut cache = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(|(ino, _)| *ino == d.ino) {
            let hit = cache.remove(i);
            let entries = hit.1.clone();
            cache.push(hit);
            return Ok(entries);
        }
        drop(cache);
        let entries = Arc::new(dir::list(&self.vol, d)?);
        let mut cache = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= DIR_CACHE {
            cache.remove(0);
        }
        cache.push((d.ino, entries.clone()));
        Ok(entries)
    }

    /// The inode at `path`, never following symlinks (lstat).
    fn resolve(&self, path: &[u8]) -> Result<Inode> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        let mut cur = self.root.clone();
        for (n, name) in path
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty())
            .enumerate()
        {
            if n >= MAX_COMPONENTS {
                return Err(Error::NotFound { path: shown() });
            }
            if cur.file_type() != FileType::Directory {
                return Err(Error::NotADirectory { path: shown() });
            }
            let entries = self.entries(&cur)?;
            let entry = entries
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| Error::NotFound { path: shown() })?;
            cur = self.vol.inode(entry.ino)?;
        }
        Ok(cur)
    }
}

impl Filesystem for Xfs {
    fn info(&self) -> FsInfo {
        FsInfo {
            kind: FsKind::Xfs,
            label: self.vol.sb.label.clone(),
            uuid: Some(self.vol.sb.uuid_string()),
        }
    }

    fn metadata(&self, path: &[u8]) -> Result<Metadata> {
        Ok(self.resolve(path)?.metadata())
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<DirEntry>> {
        let d = self.resolve(path)?;
        if d.file_type() != FileType::Directory {
            return Err(Error::NotADirectory {
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        let entries = self.entries(&d)?;
        Ok(entries
            .iter()
            .map(|e| DirEntry {
                name: e.name.clone(),
                // Without ftype (older v4), the type is only in the inode.
                file_type: match e.file_type {
                    FileType::Unknown => self
                        .vol
                        .inode(e.ino)
                        .map_or(FileType::Unknown, |i| i.file_type()),
                    t => t,
                },
                ino: e.ino,
            })
            .collect())
    }

    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
        let file = self.resolve(path)?;
        let shown = || String::from_utf8_lossy(path).into_owned();
        match file.file_type() {
            FileType::Regular => {}
            FileType::Directory => return Err(Error::IsADirectory { path: shown() }),
            _ => {
                return Err(Error::Unsupported {
                    fs: FS,
                    what: format!("{}: reading data of a special file", shown()),
                })
            }
        }
        if offset >= file.size {
            return Ok(0);
        }
        let len = usize::try_from(file.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let out = &mut buf[..len];
        match file.data.format {
            _ if file.realtime => {
                return Err(Error::Unsupported {
                    fs: FS,
                    what: "files on a realtime device".into(),
                })
            }
            Format::Local => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let b = file.data.buf();
                out.copy_from_slice(b.slice(start, len, "inline file data")?);
            }
            Format::Extents | Format::Btree => {
                let map = bmap::extents(&self.vol, &file.data, file.ino)?;
                bmap::read_mapped(&self.vol, &map, offset, out)?;
            }
            _ => return Err(corrupt(file.offset, "regular file fork format")),
        }
        Ok(len)
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let link = self.resolve(path)?;
        if link.file_type() != FileType::Symlink {
            return Err(Error::NotASymlink {
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        symlink::target(&self.vol, &link)
    }

    fn xattrs(&self, path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        attr::list(&self.resolve(path)?)
    }
}
