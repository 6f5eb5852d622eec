//! FAT12/16/32, as on an EFI system partition: 8.3 and VFAT long names, case-insensitive lookup,
//! cluster chains walked with loop detection, the FAT32 root cluster, the volume label and id
//! as blkid reports them.
//!
//! Written here rather than with the `fatfs` crate: its last release (0.3.6) wants
//! `Read + Write + Seek` storage, clears the dirty flag and rewrites FSInfo when dropped, and
//! has open reports of panics on malformed images (rafalh/rust-fatfs#56, #72). A read-only FAT
//! reader is small, and owning it lets every field be bounded.
//!
//! Metadata follows Linux's vfat defaults (no `uid`/`gid`/`umask`/`showexec` options, umask
//! 022): owner 0:0, directories 0755, files 0755 less the write bits when the read-only
//! attribute is set; mtime is the entry's local time read as UTC (`tz` unset); a directory's
//! nlink is 2 (Linux counts subdirectories; that costs a listing) and a file's 1.

mod bpb;
mod dir;
mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{Dev, DirEntry, Error, FileType, Filesystem, FsInfo, Metadata, Result};
use bpb::Geometry;
use dir::Entry;
use table::Table;

/// A directory larger than this is refused: the FAT specification caps a directory at 65,536
/// entries of 32 bytes.
const MAX_DIR_BYTES: u64 = 65536 * 32;
/// Parsed directories kept for lookups (a whole-tree walk looks up every entry of a directory).
const DIR_CACHE: usize = 64;
/// The inode number Linux gives the root directory.
const ROOT_INO: u64 = 1;

/// Recognises a FAT boot sector and opens the volume.
pub(crate) fn probe(device: &Dev) -> Option<Result<Box<dyn Filesystem>>> {
    let mut sector = [0u8; 512];
    device.read_exact_at(&mut sector, 0).ok()?;
    if !bpb::looks_like_fat(&sector) {
        return None;
    }
    Some(Fat::open(device.clone(), &sector).map(|fs| Box::new(fs) as Box<dyn Filesystem>))
}

/// Where a directory's entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DirLoc {
    /// The fixed FAT12/16 root directory region.
    FixedRoot,
    /// A cluster chain (the FAT32 root, or any subdirectory).
    Chain(u32),
}

/// An open FAT volume.
#[derive(Debug)]
pub(crate) struct Fat {
    dev: Dev,
    geo: Geometry,
    table: Table,
    info: FsInfo,
    cache: Mutex<HashMap<DirLoc, Arc<Vec<Entry>>>>,
}

/// What a path resolves to.
enum Node {
    Root,
    Entry(Entry),
}

impl Fat {
    fn open(dev: Dev, sector: &[u8]) -> Result<Fat> {
        let geo = bpb::parse(sector)?;
        let table = Table::new(&geo);
        let mut fs = Fat {
            dev,
            info: FsInfo {
                kind: geo.kind,
                label: None,
                uuid: geo
                    .volume_id
                    .map(|id| format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)),
            },
            geo,
            table,
            cache: Mutex::new(HashMap::new()),
        };
        // blkid prefers the root directory's label entry over the boot sector's copy.
        let (_, root_label) = fs.read_dir_loc(fs.root_loc())?;
        fs.info.label = root_label
            .as_ref()
            .or(fs.geo.label.as_ref())
            .and_then(dir::label);
        Ok(fs)
    }

    fn root_loc(&self) -> DirLoc {
        match self.geo.root_region {
            Some(_) => DirLoc::FixedRoot,
            None => DirLoc::Chain(self.geo.root_cluster),
        }
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.geo.data_offset + u64::from(cluster - 2) * u64::from(self.geo.cluster_size)
    }

    /// Reads and parses a directory, uncached; also returns its volume label entry.
    fn read_dir_loc(&self, loc: DirLoc) -> Result<(Vec<Entry>, Option<[u8; 11]>)> {
        match (loc, self.geo.root_region) {
            (DirLoc::FixedRoot, Some((offset, len))) => {
                // At most 65535 * 32 bytes: the root entry count is a u16.
                let mut buf = vec![0u8; len as usize];
                self.dev.read_exact_at(&mut buf, offset)?;
                Ok(dir::parse(&buf, |at| offset + at as u64))
            }
            (DirLoc::Chain(start), _) => {
                let cs = u64::from(self.geo.cluster_size);
                let max = MAX_DIR_BYTES.div_ceil(cs);
                let mut buf = Vec::new();
                let mut offsets = Vec::new();
                self.table.walk(&self.dev, start, max, |c| {
                    let at = buf.len();
                    buf.resize(at + cs as usize, 0);
                    self.dev
                        .read_exact_at(&mut buf[at..], self.cluster_offset(c))?;
                    offsets.push(self.cluster_offset(c));
                    // A zero first byte ends the directory: no need to read further clusters.
                    Ok(!buf[at..].chunks_exact(32).any(|e| e[0] == 0))
                })?;
                let cs = cs as usize;
                Ok(dir::parse(&buf, |at| {
                    offsets.get(at / cs).map_or(0, |o| o + (at % cs) as u64)
                }))
            }
            (DirLoc::FixedRoot, None) => Ok((Vec::new(), None)),
        }
    }

    fn dir_entries(&self, loc: DirLoc) -> Result<Arc<Vec<Entry>>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(&loc) {
            return Ok(hit.clone());
        }
        drop(cache);
        let entries = Arc::new(self.read_dir_loc(loc)?.0);
        cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= DIR_CACHE {
            cache.clear();
        }
        cache.insert(loc, entries.clone());
        Ok(entries)
    }

    fn entry_loc(&self, e: &Entry, path: &[u8]) -> Result<DirLoc> {
        if !e.is_dir() {
            return Err(Error::NotADirectory { path: shown(path) });
        }
        // Linux maps a subdirectory entry with cluster 0 to the root (mkfs's `..` convention).
        Ok(match e.first_cluster {
            0 => self.root_loc(),
            c => DirLoc::Chain(c),
        })
    }

    /// Resolves `path` component by component, matching long or short names without case.
    fn resolve(&self, path: &[u8]) -> Result<Node> {
        let text = std::str::from_utf8(path).map_err(|_| Error::NotFound { path: shown(path) })?;
        let mut node = Node::Root;
        for part in text.split('/').filter(|p| !p.is_empty()) {
            let loc = match &node {
                Node::Root => self.root_loc(),
                Node::Entry(e) => self.entry_loc(e, path)?,
            };
            let entries = self.dir_entries(loc)?;
            let found = entries
                .iter()
                .find(|e| dir::same_name(&e.name, part))
                .or_else(|| entries.iter().find(|e| dir::same_name(&e.short, part)));
            node = Node::Entry(
                found
                    .cloned()
                    .ok_or_else(|| Error::NotFound { path: shown(path) })?,
            );
        }
        Ok(node)
    }

    fn file(&self, path: &[u8]) -> Result<Entry> {
        match self.resolve(path)? {
            Node::Entry(e) if !e.is_dir() => Ok(e),
            _ => Err(Error::IsADirectory { path: shown(path) }),
        }
    }
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Filesystem for Fat {
    fn info(&self) -> FsInfo {
        self.info.clone()
    }

    fn metadata(&self, path: &[u8]) -> Result<Metadata> {
        Ok(match self.resolve(path)? {
            Node::Root => Metadata {
                file_type: FileType::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                nlink: 2,
                mtime: None,
                ino: ROOT_INO,
            },
            Node::Entry(e) => Metadata {
                file_type: if e.is_dir() {
                    FileType::Directory
                } else {
                    FileType::Regular
                },
                mode: match (e.is_dir(), e.read_only()) {
                    (true, _) => 0o755,
                    (false, false) => 0o755,
                    (false, true) => 0o555,
                },
                uid: 0,
                gid: 0,
                size: if e.is_dir() { 0 } else { u64::from(e.size) },
                nlink: if e.is_dir() { 2 } else { 1 },
                mtime: e.mtime,
                ino: e.pos,
            },
        })
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<DirEntry>> {
        let loc = match self.resolve(path)? {
            Node::Root => self.root_loc(),
            Node::Entry(e) => self.entry_loc(&e, path)?,
        };
        Ok(self
            .dir_entries(loc)?
            .iter()
            .map(|e| DirEntry {
                name: e.name.clone().into_bytes(),
                file_type: if e.is_dir() {
                    FileType::Directory
                } else {
                    FileType::Regular
                },
                ino: e.pos,
            })
            .collect())
    }

    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
        let e = self.file(path)?;
        let size = u64::from(e.size);
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((size - offset) as usize);
        let cs = u64::from(self.geo.cluster_size);
        let first = offset / cs;
        let last = (offset + want as u64 - 1) / cs;
        let mut index = 0u64;
        let mut done = 0usize;
        self.table
            .walk(&self.dev, e.first_cluster, size.div_ceil(cs), |c| {
                if index >= first {
                    let within = if index == first { offset % cs } else { 0 };
                    let n = ((cs - within) as usize).min(want - done);
                    self.dev
                        .read_exact_at(&mut buf[done..done + n], self.cluster_offset(c) + within)?;
                    done += n;
                }
                index += 1;
                Ok(index <= last)
            })?;
        if done < want {
            return Err(Error::Corrupt {
                fs: "vfat",
                offset: e.pos,
                what: format!("cluster chain ends before the file's {size} bytes"),
            });
        }
        Ok(done)
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.resolve(path)?;
        Err(Error::NotASymlink { path: shown(path) })
    }
}
