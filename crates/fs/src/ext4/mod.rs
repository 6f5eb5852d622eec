//! ext2, ext3 and ext4, read-only.
//!
//! Opening reads only the superblock. Everything else is read on demand: a group descriptor
//! when an inode of that group is first needed (the inode table locations are then cached,
//! boundedly), an inode per path component, and only the directory and data blocks a request
//! touches. The journal is not replayed, so a filesystem that was not cleanly unmounted reads
//! as of its last checkpoint, like `debugfs` without `-c` would show it.
//!
//! Modules: [`superblock`] (geometry, features, ext2/3/4 kind), [`inode`] (decoding),
//! [`map`] (extent trees and indirect block maps), [`dir`] (entry blocks), [`xattr`]
//! (in-inode and block attributes, and inline data's continuation).

mod dir;
mod inode;
mod map;
mod raw;
mod superblock;
mod xattr;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Mutex;

use self::inode::{Inode, I_BLOCK_LEN, ROOT};
use self::map::Run;
use self::raw::{corrupt, le32, read, read_into, FS};
use self::superblock::{Superblock, INCOMPAT_FILETYPE};
use crate::{Dev, DirEntry, Error, FileType, Filesystem, FsInfo, Metadata, Result};

/// Directories larger than this are refused rather than listed (about a million entries).
const MAX_DIR_BYTES: u64 = 64 << 20;
/// Symlink targets longer than this are refused (Linux's PATH_MAX).
const MAX_LINK_BYTES: u64 = 4096;
/// Inode table locations kept; the cache is emptied when full.
const GROUP_CACHE: usize = 4096;
/// Name lookups kept (at most 255-byte names: a few MiB); emptied when full.
const LOOKUP_CACHE: usize = 8192;

/// Recognises the superblock magic and opens the filesystem.
pub(crate) fn probe(device: &Dev) -> Option<Result<Box<dyn Filesystem>>> {
    let mut magic = [0u8; 2];
    let at = superblock::OFFSET + superblock::MAGIC_AT as u64;
    device.read_exact_at(&mut magic, at).ok()?;
    (u16::from_le_bytes(magic) == superblock::MAGIC)
        .then(|| Ext4::open(device.clone()).map(|fs| Box::new(fs) as Box<dyn Filesystem>))
}

/// An open ext2/3/4 filesystem.
#[derive(Debug)]
pub(crate) struct Ext4 {
    dev: Dev,
    sb: Superblock,
    /// Inode table block of each group seen so far.
    inode_tables: Mutex<HashMap<u32, u64>>,
    /// (directory inode, name) -> inode, so walking a tree does not rescan each directory
    /// once per path below it.
    lookups: Mutex<HashMap<(u32, Vec<u8>), u32>>,
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Ext4 {
    pub(crate) fn open(dev: Dev) -> Result<Self> {
        let raw = read(
            dev.as_ref(),
            superblock::OFFSET,
            superblock::SIZE,
            "superblock",
        )?;
        let sb = Superblock::parse(&raw)?;
        let fs = Self {
            dev,
            sb,
            inode_tables: Mutex::new(HashMap::new()),
            lookups: Mutex::new(HashMap::new()),
        };
        // The root must be a directory, or nothing below it is reachable.
        if fs.inode(ROOT)?.file_type() != FileType::Directory {
            return Err(corrupt(superblock::OFFSET, "root inode is not a directory"));
        }
        Ok(fs)
    }

    /// Block number of `group`'s inode table, from its descriptor.
    fn inode_table(&self, group: u32) -> Result<u64> {
        let mut cache = lock(&self.inode_tables);
        if let Some(&block) = cache.get(&group) {
            return Ok(block);
        }
        let at = self.sb.descriptor_offset(group).ok_or_else(|| {
            corrupt(
                superblock::OFFSET,
                format!("group {group}'s descriptor offset overflows"),
            )
        })?;
        let desc = read(
            self.dev.as_ref(),
            at,
            self.sb.desc_size as usize,
            "group descriptor",
        )?;
        let hi = if self.sb.desc_size >= 64 {
            le32(&desc, 0x28)
        } else {
            0
        };
        let block = u64::from(le32(&desc, 0x8)) | u64::from(hi) << 32;
        if block >= self.sb.blocks_count {
            return Err(corrupt(
                at,
                format!("group {group}: inode table at block {block}, beyond the filesystem"),
            ));
        }
        if cache.len() >= GROUP_CACHE {
            cache.clear();
        }
        cache.insert(group, block);
        Ok(block)
    }

    fn inode(&self, ino: u32) -> Result<Inode> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(corrupt(
                superblock::OFFSET,
                format!("inode number {ino} outside 1..={}", self.sb.inodes_count),
            ));
        }
        let index = ino - 1;
        let group = index / self.sb.inodes_per_group;
        if group >= self.sb.group_count {
            return Err(corrupt(
                superblock::OFFSET,
                format!(
                    "inode {ino} lies in group {group} of {}",
                    self.sb.group_count
                ),
            ));
        }
        let table = self.inode_table(group)?;
        let within = u64::from(index % self.sb.inodes_per_group) * u64::from(self.sb.inode_size);
        let at = table
            .checked_mul(self.sb.block_size)
            .and_then(|t| t.checked_add(within))
            .ok_or_else(|| {
                corrupt(
                    superblock::OFFSET,
                    format!("inode {ino}'s offset overflows"),
                )
            })?;
        let raw = read(self.dev.as_ref(), at, self.sb.inode_size as usize, "inode")?;
        Inode::parse(ino, at, raw)
    }

    /// The inode at `path`, never following symlinks.
    fn resolve(&self, path: &[u8]) -> Result<Inode> {
        let mut inode = self.inode(ROOT)?;
        let mut walked = 0;
        for comp in path.split(|&b| b == b'/') {
            walked += comp.len() + 1;
            if comp.is_empty() {
                continue;
            }
            let here = || shown(path.get(..walked.min(path.len())).unwrap_or(path));
            if inode.file_type() != FileType::Directory {
                return Err(Error::NotADirectory { path: here() });
            }
            let found = if comp == b"." || comp == b".." {
                None
            } else {
                self.lookup(&inode, comp)?
            };
            let ino = found.ok_or_else(|| Error::NotFound { path: here() })?;
            inode = self.inode(ino)?;
        }
        Ok(inode)
    }

    /// The inode number of `name` in directory `dir`.
    fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<u32>> {
        let key = (dir.ino, name.to_vec());
        if let Some(&ino) = lock(&self.lookups).get(&key) {
            return Ok(Some(ino));
        }
        let found = self.scan_for(dir, name)?;
        if let Some(ino) = found {
            let mut cache = lock(&self.lookups);
            if cache.len() >= LOOKUP_CACHE {
                cache.clear();
            }
            cache.insert(key, ino);
        }
        Ok(found)
    }

    /// Scans directory `dir` for `name`, stopping at the first match.
    fn scan_for(&self, dir: &Inode, name: &[u8]) -> Result<Option<u32>> {
        let mut found = None;
        self.for_each_entry(dir, &mut |e| {
            if e.name == name {
                found = Some(e.ino);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// Calls `f` on each live entry of directory `dir`, reading one block at a time.
    fn for_each_entry(
        &self,
        dir: &Inode,
        f: &mut dyn FnMut(dir::RawEntry) -> ControlFlow<()>,
    ) -> Result<()> {
        if dir.is_encrypted() {
            return Err(Error::Unsupported {
                fs: FS,
                what: format!("inode {}: encrypted directory", dir.ino),
            });
        }
        let filetype = self.sb.has(INCOMPAT_FILETYPE);
        if dir.has_inline_data() {
            // The first 4 bytes of i_block hold the parent's inode number ("..").
            let head = dir.i_block().get(4..).unwrap_or_default();
            if dir::parse_block(head, dir.i_block_offset() + 4, filetype, f)?.is_continue() {
                let (area, at) = dir.xattr_area();
                if let Some(more) = inline_continuation(area, at)? {
                    let _ = dir::parse_block(&more, at, filetype, f)?;
                }
            }
            return Ok(());
        }
        if dir.size > MAX_DIR_BYTES {
            return Err(Error::LimitExceeded {
                fs: FS,
                what: "directory size",
                limit: MAX_DIR_BYTES,
            });
        }
        let bs = self.sb.block_size;
        let blocks = dir.size.div_ceil(bs);
        let mut buf = vec![0u8; bs as usize];
        let mut lblk = 0;
        while lblk < blocks {
            let run = map::map(self.dev.as_ref(), &self.sb, dir, lblk)?;
            let (phys, len) = match run {
                Run::Zero { len } => {
                    lblk = lblk.saturating_add(len);
                    continue;
                }
                Run::Mapped { phys, len } => (phys, len.min(blocks - lblk)),
            };
            for i in 0..len {
                let at = (phys + i) * bs;
                read_into(self.dev.as_ref(), at, &mut buf, "directory block")?;
                if dir::parse_block(&buf, at, filetype, f)?.is_break() {
                    return Ok(());
                }
            }
            lblk += len;
        }
        Ok(())
    }

    /// Reads file bytes of `inode` at `offset` into `buf`, clamped to the file size.
    fn read_data(&self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= inode.size {
            return Ok(0);
        }
        let want =
            usize::try_from(inode.size - offset).map_or(buf.len(), |left| left.min(buf.len()));
        let buf = &mut buf[..want];
        if inode.has_inline_data() {
            let data = self.inline_data(inode)?;
            let start = offset as usize;
            let src = data
                .get(start..start + want)
                .ok_or_else(|| corrupt(inode.offset, "inline data shorter than its size"))?;
            buf.copy_from_slice(src);
            return Ok(want);
        }
        let bs = self.sb.block_size;
        let mut done = 0;
        while done < want {
            let pos = offset + done as u64;
            let run = map::map(self.dev.as_ref(), &self.sb, inode, pos / bs)?;
            let blocks = match run {
                Run::Mapped { len, .. } | Run::Zero { len } => len,
            };
            let avail = blocks.saturating_mul(bs) - pos % bs;
            let n = usize::try_from(avail).map_or(want - done, |a| a.min(want - done));
            let chunk = &mut buf[done..done + n];
            match run {
                Run::Zero { .. } => chunk.fill(0),
                Run::Mapped { phys, .. } => {
                    read_into(self.dev.as_ref(), phys * bs + pos % bs, chunk, "file data")?
                }
            }
            done += n;
        }
        Ok(want)
    }

    /// The whole of an inline-data inode: `i_block` then the `system.data` attribute.
    fn inline_data(&self, inode: &Inode) -> Result<Vec<u8>> {
        let (area, at) = inode.xattr_area();
        let mut data = inode.i_block().to_vec();
        data.extend(inline_continuation(area, at)?.unwrap_or_default());
        let size = usize::try_from(inode.size).unwrap_or(usize::MAX);
        if size > data.len() {
            return Err(corrupt(
                inode.offset,
                format!(
                    "inode {}: inline data of {size} bytes, {} stored",
                    inode.ino,
                    data.len()
                ),
            ));
        }
        data.truncate(size);
        Ok(data)
    }

    fn link_target(&self, inode: &Inode) -> Result<Vec<u8>> {
        if inode.size > MAX_LINK_BYTES {
            return Err(Error::LimitExceeded {
                fs: FS,
                what: "symlink target length",
                limit: MAX_LINK_BYTES,
            });
        }
        let len = inode.size as usize;
        if inode.has_inline_data() {
            return self.inline_data(inode);
        }
        // A fast symlink keeps its target in i_block, as e2fsprogs decides it.
        if len < I_BLOCK_LEN {
            return Ok(inode.i_block().get(..len).unwrap_or_default().to_vec());
        }
        let mut target = vec![0u8; len];
        let n = self.read_data(inode, 0, &mut target)?;
        target.truncate(n);
        Ok(target)
    }

    fn xattrs_of(&self, inode: &Inode) -> Result<Vec<xattr::Xattr>> {
        let (area, at) = inode.xattr_area();
        let mut all = xattr::in_inode(area, at)?;
        if inode.file_acl != 0 {
            if inode.file_acl >= self.sb.blocks_count {
                return Err(corrupt(
                    inode.offset,
                    format!(
                        "inode {}: xattr block {} beyond the filesystem",
                        inode.ino, inode.file_acl
                    ),
                ));
            }
            let at = inode.file_acl * self.sb.block_size;
            let block = read(
                self.dev.as_ref(),
                at,
                self.sb.block_size as usize,
                "xattr block",
            )?;
            all.extend(xattr::in_block(&block, at)?);
        }
        Ok(all)
    }
}

/// Locks a cache; a poisoned one is still consistent (every update is a single insert).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `system.data` attribute that continues inline data past `i_block`.
fn inline_continuation(area: &[u8], at: u64) -> Result<Option<Vec<u8>>> {
    Ok(xattr::in_inode(area, at)?
        .into_iter()
        .find(|(name, _)| name == b"system.data")
        .map(|(_, value)| value))
}

impl Filesystem for Ext4 {
    fn info(&self) -> FsInfo {
        FsInfo {
            kind: self.sb.kind(),
            label: self.sb.label(),
            uuid: self.sb.uuid(),
        }
    }

    fn metadata(&self, path: &[u8]) -> Result<Metadata> {
        Ok(self.resolve(path)?.metadata())
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<DirEntry>> {
        let dir = self.resolve(path)?;
        if dir.file_type() != FileType::Directory {
            return Err(Error::NotADirectory { path: shown(path) });
        }
        let mut out = Vec::new();
        self.for_each_entry(&dir, &mut |e| {
            out.push(DirEntry {
                name: e.name.to_vec(),
                file_type: Inode::dirent_type(e.file_type),
                ino: u64::from(e.ino),
            });
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
        let inode = self.resolve(path)?;
        if inode.is_encrypted() {
            return Err(Error::Unsupported {
                fs: FS,
                what: format!("{}: encrypted file", shown(path)),
            });
        }
        match inode.file_type() {
            FileType::Regular => self.read_data(&inode, offset, buf),
            FileType::Directory => Err(Error::IsADirectory { path: shown(path) }),
            other => Err(Error::Unsupported {
                fs: FS,
                what: format!("{}: reading the contents of a {other:?}", shown(path)),
            }),
        }
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let inode = self.resolve(path)?;
        if inode.file_type() != FileType::Symlink {
            return Err(Error::NotASymlink { path: shown(path) });
        }
        self.link_target(&inode)
    }

    fn xattrs(&self, path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let inode = self.resolve(path)?;
        self.xattrs_of(&inode)
    }
}
