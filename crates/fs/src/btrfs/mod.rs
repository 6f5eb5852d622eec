//! btrfs, single device, read-only.
//!
//! Opening reads the primary superblock (CRC-32C checked), maps logical addresses through the
//! sys_chunk_array and the chunk tree ([`chunks`]), then finds subvolume trees through the root
//! tree. [`BtrfsFs`] serves one subvolume: by default the one `mount` shows (the root tree's
//! "default" entry, else the top level, tree 5), or any other through
//! [`BtrfsFs::open_subvolume`]. Subvolumes nested inside the served one appear as directories
//! and are entered transparently; inside a snapshot, nested subvolumes appear as empty
//! directories, as the kernel shows them.
//!
//! Nothing is scanned at open: every lookup is a B-tree search ([`tree`]).

mod bytes;
mod chunks;
mod compress;
mod file;
mod items;
mod lzo;
mod subvol;
mod superblock;
mod tree;
mod volume;

use std::sync::Arc;

use self::bytes::{corrupt, limit, name_hash, uuid_string};
use self::file::ExtentCache;
use self::items::{Inode, DIR_INDEX, DIR_ITEM, INODE_ITEM, ROOT_ITEM, XATTR_ITEM};
use self::tree::{Cursor, Tree};
use self::volume::Volume;
use crate::{Dev, DirEntry, Error, FileType, Filesystem, FsInfo, FsKind, Metadata, Result};

pub use self::subvol::{Subvolume, SubvolumeSelector};
pub(crate) use self::tree::Key;

/// Path components followed by one lookup.
const MAX_COMPONENTS: usize = 4096;
/// Entries one directory listing may return.
const MAX_DIR_ENTRIES: usize = 1 << 20;
/// Bytes of names one directory listing may return.
const MAX_DIR_NAME_BYTES: usize = 64 << 20;
/// Extended attributes of one inode, and their bytes (names and values).
const MAX_XATTRS: usize = 1 << 12;
const MAX_XATTR_BYTES: usize = 16 << 20;
/// The longest symlink target read (PATH_MAX).
const MAX_LINK: u64 = 4096;
/// The inode number the kernel shows for a snapshot's placeholder of a nested subvolume.
const EMPTY_SUBVOL_DIR_INO: u64 = 2;

/// Opens `device` when it carries the btrfs magic.
pub(crate) fn probe(device: &Dev) -> Option<Result<Box<dyn Filesystem>>> {
    if !superblock::has_magic(device) {
        return None;
    }
    Some(BtrfsFs::open(device.clone()).map(|fs| Box::new(fs) as Box<dyn Filesystem>))
}

/// A btrfs filesystem showing one subvolume.
#[derive(Debug, Clone)]
pub struct BtrfsFs {
    vol: Arc<Volume>,
    /// The subvolume (tree id) shown at `/`.
    subvol: u64,
    cache: Arc<ExtentCache>,
}

/// What a path leads to.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Inode {
        tree: u64,
        ino: u64,
    },
    /// A nested subvolume seen from a snapshot: an empty directory.
    EmptySubvol,
}

impl BtrfsFs {
    /// Opens the filesystem showing its default subvolume, as `mount` without `subvol=` does.
    pub fn open(device: Dev) -> Result<Self> {
        Self::open_with(device, true)
    }

    /// As [`BtrfsFs::open`], with checksum verification switchable (off only for fuzzing, so
    /// mutations reach the parsers behind the checksums).
    #[doc(hidden)]
    pub fn open_with(device: Dev, verify_checksums: bool) -> Result<Self> {
        let vol = Arc::new(Volume::open(device, verify_checksums)?);
        let mut fs = BtrfsFs {
            vol,
            subvol: items::FS_TREE,
            cache: Arc::default(),
        };
        fs.subvol = subvol::default_subvolume(&fs.vol)?;
        Ok(fs)
    }

    /// The tree id of the subvolume shown at `/` (5 for the top level).
    pub fn subvolume_id(&self) -> u64 {
        self.subvol
    }

    /// Every subvolume and snapshot (not the top level), as `btrfs subvolume list` shows them.
    pub fn list_subvolumes(&self) -> Result<Vec<Subvolume>> {
        subvol::list(&self.vol)
    }

    /// The same filesystem showing another subvolume: by id (fstab `subvolid=`) or by path from
    /// the top level (fstab `subvol=`; `/` or empty is the top level).
    pub fn open_subvolume(&self, which: SubvolumeSelector<'_>) -> Result<BtrfsFs> {
        let id = match which {
            SubvolumeSelector::Id(id) => {
                subvol::root_of(&self.vol, id)?;
                id
            }
            SubvolumeSelector::Path(path) => {
                let top = BtrfsFs {
                    subvol: items::FS_TREE,
                    ..self.clone()
                };
                let shown = String::from_utf8_lossy(path).into_owned();
                match top.resolve(path)? {
                    Loc::Inode { tree, ino } if ino == top.root_dir(tree)? => tree,
                    _ => {
                        return Err(Error::NotFound {
                            path: format!("subvolume {shown}"),
                        })
                    }
                }
            }
        };
        Ok(BtrfsFs {
            subvol: id,
            ..self.clone()
        })
    }

    fn tree(&self, id: u64) -> Result<Tree> {
        let r = subvol::root_of(&self.vol, id)?;
        Ok(Tree {
            root: r.bytenr,
            level: r.level,
        })
    }

    fn root_dir(&self, id: u64) -> Result<u64> {
        Ok(subvol::root_of(&self.vol, id)?.root_dirid)
    }

    /// The item with exactly `key` in tree `id`.
    fn item(&self, id: u64, key: Key) -> Result<Option<(Vec<u8>, u64)>> {
        let c = Cursor::seek(&self.vol, self.tree(id)?, key)?;
        Ok(c.current()
            .filter(|(k, _)| *k == key)
            .map(|(_, d)| (d.to_vec(), c.node_logical())))
    }

    fn inode(&self, tree: u64, ino: u64) -> Result<Inode> {
        let (data, at) = self
            .item(tree, Key::new(ino, INODE_ITEM, 0))?
            .ok_or_else(|| corrupt(0, format!("inode {ino} of tree {tree} has no inode item")))?;
        items::inode(&data).ok_or_else(|| corrupt(at, format!("inode item {ino} truncated")))
    }

    /// Follows `path` from the subvolume root; symlinks are never followed.
    fn resolve(&self, path: &[u8]) -> Result<Loc> {
        let mut loc = Loc::Inode {
            tree: self.subvol,
            ino: self.root_dir(self.subvol)?,
        };
        let mut walked: Vec<u8> = Vec::new();
        let shown = |w: &[u8]| String::from_utf8_lossy(w).into_owned();
        for (i, name) in path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .enumerate()
        {
            if i >= MAX_COMPONENTS {
                return Err(limit("path components", MAX_COMPONENTS as u64));
            }
            let parent_is_root = walked.is_empty();
            let parent_shown = shown(&walked);
            walked.extend_from_slice(b"/");
            walked.extend_from_slice(name);
            let Loc::Inode { tree, ino } = loc else {
                // The placeholder directory is empty.
                return Err(Error::NotFound {
                    path: shown(&walked),
                });
            };
            if items::file_type_of_mode(self.inode(tree, ino)?.mode) != FileType::Directory {
                return Err(Error::NotADirectory {
                    path: if parent_is_root {
                        "/".into()
                    } else {
                        parent_shown
                    },
                });
            }
            loc = self
                .lookup(tree, ino, name)?
                .ok_or_else(|| Error::NotFound {
                    path: shown(&walked),
                })?;
        }
        Ok(loc)
    }

    /// The entry `name` of directory `dir` in `tree`.
    fn lookup(&self, tree: u64, dir: u64, name: &[u8]) -> Result<Option<Loc>> {
        let Some((data, at)) = self.item(tree, Key::new(dir, DIR_ITEM, name_hash(name)))? else {
            return Ok(None);
        };
        let entries =
            items::dir_items(&data).ok_or_else(|| corrupt(at, "directory item truncated"))?;
        let Some(entry) = entries.iter().find(|e| e.name == name) else {
            return Ok(None);
        };
        self.enter(tree, entry.location).map(Some)
    }

    /// Where a directory entry's location key leads: an inode of the same tree, or the root of
    /// a subvolume (if the subvolume is really linked here; a snapshot's stale link is empty).
    fn enter(&self, tree: u64, location: Key) -> Result<Loc> {
        match location.kind {
            ROOT_ITEM => {
                let child = location.objectid;
                if subvol::is_linked(&self.vol, tree, child)? {
                    Ok(Loc::Inode {
                        tree: child,
                        ino: self.root_dir(child)?,
                    })
                } else {
                    Ok(Loc::EmptySubvol)
                }
            }
            _ => Ok(Loc::Inode {
                tree,
                ino: location.objectid,
            }),
        }
    }

    fn stat(&self, loc: Loc) -> Result<Metadata> {
        let Loc::Inode { tree, ino } = loc else {
            return Ok(Metadata {
                file_type: FileType::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                nlink: 1,
                mtime: None,
                ino: EMPTY_SUBVOL_DIR_INO,
            });
        };
        let i = self.inode(tree, ino)?;
        Ok(Metadata {
            file_type: items::file_type_of_mode(i.mode),
            mode: i.mode & 0o7777,
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            nlink: u64::from(i.nlink),
            mtime: Some(i.mtime),
            ino,
        })
    }

    /// Resolves `path` to an inode of the wanted type, with its inode item.
    fn file(&self, path: &[u8], want: FileType) -> Result<(u64, u64, Inode)> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        let Loc::Inode { tree, ino } = self.resolve(path)? else {
            return Err(match want {
                FileType::Symlink => Error::NotASymlink { path: shown() },
                _ => Error::IsADirectory { path: shown() },
            });
        };
        let inode = self.inode(tree, ino)?;
        let t = items::file_type_of_mode(inode.mode);
        if t == want {
            return Ok((tree, ino, inode));
        }
        Err(match (want, t) {
            (FileType::Symlink, _) => Error::NotASymlink { path: shown() },
            (_, FileType::Directory) => Error::IsADirectory { path: shown() },
            _ => Error::Unsupported {
                fs: bytes::FS,
                what: format!("{}: reading a {t:?}", shown()),
            },
        })
    }
}

impl Filesystem for BtrfsFs {
    fn info(&self) -> FsInfo {
        FsInfo {
            kind: FsKind::Btrfs,
            label: self.vol.sb.label.clone(),
            uuid: Some(uuid_string(&self.vol.sb.fsid)),
        }
    }

    fn metadata(&self, path: &[u8]) -> Result<Metadata> {
        self.stat(self.resolve(path)?)
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<DirEntry>> {
        let loc = self.resolve(path)?;
        let Loc::Inode { tree, ino } = loc else {
            return Ok(Vec::new());
        };
        if items::file_type_of_mode(self.inode(tree, ino)?.mode) != FileType::Directory {
            return Err(Error::NotADirectory {
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        let mut out = Vec::new();
        let mut name_bytes = 0usize;
        let mut c = Cursor::seek_ge(&self.vol, self.tree(tree)?, Key::new(ino, DIR_INDEX, 0))?;
        while let Some((key, data)) = c.current() {
            if key.objectid != ino || key.kind != DIR_INDEX {
                break;
            }
            let entries = items::dir_items(data)
                .ok_or_else(|| corrupt(c.node_logical(), "directory index item truncated"))?;
            for e in entries {
                if out.len() >= MAX_DIR_ENTRIES {
                    return Err(limit("directory entries", MAX_DIR_ENTRIES as u64));
                }
                name_bytes += e.name.len();
                if name_bytes > MAX_DIR_NAME_BYTES {
                    return Err(limit("directory name bytes", MAX_DIR_NAME_BYTES as u64));
                }
                let (file_type, entry_ino) = match e.location.kind {
                    // A subvolume: a directory whose root inode is what stat shows.
                    ROOT_ITEM => (FileType::Directory, items::FIRST_FREE_OBJECTID),
                    _ => (e.file_type, e.location.objectid),
                };
                out.push(DirEntry {
                    name: e.name.to_vec(),
                    file_type,
                    ino: entry_ino,
                });
            }
            c.next()?;
        }
        Ok(out)
    }

    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
        let (tree, ino, inode) = self.file(path, FileType::Regular)?;
        file::read(
            &self.vol,
            &self.cache,
            self.tree(tree)?,
            ino,
            inode.size,
            offset,
            buf,
        )
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let (tree, ino, inode) = self.file(path, FileType::Symlink)?;
        let len = inode.size.min(MAX_LINK) as usize;
        let mut buf = vec![0u8; len];
        let n = file::read(
            &self.vol,
            &self.cache,
            self.tree(tree)?,
            ino,
            inode.size,
            0,
            &mut buf,
        )?;
        buf.truncate(n);
        Ok(buf)
    }

    fn xattrs(&self, path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Loc::Inode { tree, ino } = self.resolve(path)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut c = Cursor::seek_ge(&self.vol, self.tree(tree)?, Key::new(ino, XATTR_ITEM, 0))?;
        while let Some((key, data)) = c.current() {
            if key.objectid != ino || key.kind != XATTR_ITEM {
                break;
            }
            let entries = items::dir_items(data)
                .ok_or_else(|| corrupt(c.node_logical(), "xattr item truncated"))?;
            for e in entries {
                if out.len() >= MAX_XATTRS {
                    return Err(limit("extended attributes", MAX_XATTRS as u64));
                }
                bytes += e.name.len() + e.data.len();
                if bytes > MAX_XATTR_BYTES {
                    return Err(limit("extended attribute bytes", MAX_XATTR_BYTES as u64));
                }
                out.push((e.name.to_vec(), e.data.to_vec()));
            }
            c.next()?;
        }
        Ok(out)
    }
}
