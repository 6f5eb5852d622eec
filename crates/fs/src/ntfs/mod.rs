//! NTFS through the `ntfs` crate (Colin Finck; MIT OR Apache-2.0; no_std-capable, reads via
//! `Read + Seek`): the crate reads the boot sector, MFT records (with fixups), attributes
//! (including attribute lists), resident and non-resident values with their data runs and
//! sparse runs. Around it this module adds what it lacks or what hostile input needs:
//!
//! - the boot sector is checked first ([`boot`]): the crate would size every MFT record
//!   allocation from a BPB field of up to 254 MiB;
//! - directory indexes are read here ([`index`]), because the crate's index iterator and finder
//!   follow B-tree subnode pointers without a bound (an INDX record pointing at itself hangs);
//! - compressed and encrypted data are refused with [`Error::Unsupported`] (the crate would
//!   return the raw LZNT1 bytes);
//! - every attribute walk and listing is bounded.
//!
//! Names are the Win32/POSIX ones (DOS 8.3 duplicates skipped), matched without case by
//! Unicode upper-casing (not the volume's $UpCase table; they agree outside rare scripts).
//! Metadata files (MFT records below 16: $MFT, $Bitmap, ...) are hidden, as ntfs-3g does.
//! Mode is 0o777 for everything (ntfs-3g's default without the `permissions` option), owner
//! 0:0, mtime from $STANDARD_INFORMATION, nlink the count of non-DOS names, ino the record number.
//! Symlinks: Windows symlink and junction reparse points, WSL (LX) symlinks, and the Interix
//! symlinks ntfs-3g writes by default (a system file holding `IntxLNK\1` + UTF-16 target).

mod boot;
mod index;
mod reader;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ntfs::structured_values::NtfsFileAttributeFlags;
use ntfs::{Ntfs, NtfsAttributeFlags, NtfsAttributeType, NtfsError, NtfsFile, NtfsReadSeek};

use crate::{Dev, DirEntry, Error, FileType, Filesystem, FsInfo, FsKind, Metadata, Result};
use index::Name;
use reader::DevReader;

/// The root directory's MFT record.
const ROOT: u64 = 5;
/// Records below this are the filesystem's own metadata files.
const FIRST_USER_RECORD: u64 = 16;
/// At most this many names are listed per directory (NTFS has no limit; large Windows
/// directories hold ~100,000).
const MAX_DIR_ENTRIES: usize = 1 << 20;
/// $INDEX_ALLOCATION larger than this is refused.
const MAX_INDEX_BYTES: u64 = 256 << 20;
/// Attributes visited per file record (an attribute list can point at many records).
const MAX_ATTRIBUTES: usize = 4096;
/// Symlink and reparse data read at most (reparse data is at most 16 KiB).
const MAX_LINK_BYTES: u64 = 64 << 10;
/// Directories whose listings are kept for lookups.
const DIR_CACHE: usize = 64;

const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
const TAG_LX_SYMLINK: u32 = 0xA000_001D;
const INTERIX_MAGIC: &[u8] = b"IntxLNK\x01";

/// Recognises the NTFS OEM id and opens the volume.
pub(crate) fn probe(device: &Dev) -> Option<Result<Box<dyn Filesystem>>> {
    let mut sector = [0u8; 512];
    device.read_exact_at(&mut sector, 0).ok()?;
    if sector.get(3..11) != Some(&b"NTFS    "[..]) {
        return None;
    }
    Some(NtfsFs::open(device.clone(), &sector).map(|fs| Box::new(fs) as Box<dyn Filesystem>))
}

/// An open NTFS volume.
pub(crate) struct NtfsFs {
    dev: Dev,
    ntfs: Ntfs,
    info: FsInfo,
    cache: Mutex<HashMap<u64, Arc<Vec<Name>>>>,
}

impl std::fmt::Debug for NtfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtfsFs").field("info", &self.info).finish()
    }
}

fn crate_err(e: NtfsError) -> Error {
    Error::Corrupt {
        fs: "ntfs",
        offset: 0,
        what: e.to_string(),
    }
}

fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        fs: "ntfs",
        offset,
        what: what.into(),
    }
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// What the type of a file is, and what a symlink points at.
enum Kind {
    Dir,
    File,
    Link(Vec<u8>),
}

impl NtfsFs {
    fn open(dev: Dev, sector: &[u8]) -> Result<NtfsFs> {
        boot::check(sector, dev.size())?;
        let mut r = DevReader::new(&dev);
        let ntfs = Ntfs::new(&mut r).map_err(crate_err)?;
        let label = match ntfs.volume_name(&mut r) {
            None => None,
            Some(name) => Some(name.map_err(crate_err)?.name().to_string_lossy()),
        };
        let info = FsInfo {
            kind: FsKind::Ntfs,
            label: label.filter(|l| !l.is_empty()),
            uuid: Some(format!("{:016X}", ntfs.serial_number())),
        };
        let fs = NtfsFs {
            dev,
            ntfs,
            info,
            cache: Mutex::new(HashMap::new()),
        };
        // The root must be readable for anything else to work: fail at open, not later.
        fs.names(ROOT)?;
        Ok(fs)
    }

    fn reader(&self) -> DevReader {
        DevReader::new(&self.dev)
    }

    fn file<'n>(&'n self, r: &mut DevReader, record: u64) -> Result<NtfsFile<'n>> {
        self.ntfs.file(r, record).map_err(crate_err)
    }

    /// The value of the first attribute of type `ty` named `name` ("" = unnamed), read whole
    /// (at most `limit` bytes), with the attribute's flags; `None` when absent.
    fn attribute_bytes(
        &self,
        r: &mut DevReader,
        file: &NtfsFile,
        ty: NtfsAttributeType,
        name: &str,
        limit: u64,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        let mut attrs = file.attributes();
        let mut seen = 0;
        while let Some(item) = attrs.next(r) {
            seen += 1;
            if seen > MAX_ATTRIBUTES {
                return Err(Error::LimitExceeded {
                    fs: "ntfs",
                    what: "attributes per file",
                    limit: MAX_ATTRIBUTES as u64,
                });
            }
            let item = item.map_err(crate_err)?;
            let attr = item.to_attribute().map_err(crate_err)?;
            if attr.ty().ok() != Some(ty)
                || attr.name().map_err(crate_err)?.to_string_lossy() != name
            {
                continue;
            }
            let at = attr.position().value().map_or(0, |p| p.get());
            let mut value = attr.value(r).map_err(crate_err)?;
            let len = value.len();
            if len > limit {
                return Err(Error::LimitExceeded {
                    fs: "ntfs",
                    what: "attribute size",
                    limit,
                });
            }
            let mut buf = vec![0u8; len as usize];
            value.read_exact(r, &mut buf).map_err(crate_err)?;
            return Ok(Some((buf, at)));
        }
        Ok(None)
    }

    /// The names in directory `record` (DOS duplicates and metadata files left out).
    fn names(&self, record: u64) -> Result<Arc<Vec<Name>>> {
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&record)
        {
            return Ok(hit.clone());
        }
        let mut r = self.reader();
        let dir = self.file(&mut r, record)?;
        let limit = u64::from(self.ntfs.file_record_size());
        let (root, at) = self
            .attribute_bytes(&mut r, &dir, NtfsAttributeType::IndexRoot, "$I30", limit)?
            .ok_or_else(|| {
                corrupt(
                    dir.position().value().map_or(0, |p| p.get()),
                    "directory without $INDEX_ROOT",
                )
            })?;
        let mut all = Vec::new();
        index::root_entries(&root, at, &mut all)?;
        self.allocation_entries(&mut r, &dir, &root, &mut all)?;
        all.retain(|n| n.namespace != index::NAMESPACE_DOS && n.record >= FIRST_USER_RECORD);
        let all = Arc::new(all);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= DIR_CACHE {
            cache.clear();
        }
        cache.insert(record, all.clone());
        Ok(all)
    }

    /// Adds the entries of every in-use INDX record of the directory's $INDEX_ALLOCATION.
    fn allocation_entries(
        &self,
        r: &mut DevReader,
        dir: &NtfsFile,
        root: &[u8],
        out: &mut Vec<Name>,
    ) -> Result<()> {
        let Some((bitmap, _)) = self.attribute_bytes(
            r,
            dir,
            NtfsAttributeType::Bitmap,
            "$I30",
            MAX_INDEX_BYTES / 512 / 8,
        )?
        else {
            return Ok(());
        };
        let size = index::root_record_size(root).unwrap_or(0);
        if !size.is_power_of_two() || !(512..=65536).contains(&size) {
            return Err(corrupt(0, format!("$INDEX_ROOT: index record size {size}")));
        }
        let (alloc, at) = self
            .attribute_bytes(
                r,
                dir,
                NtfsAttributeType::IndexAllocation,
                "$I30",
                MAX_INDEX_BYTES,
            )?
            .ok_or_else(|| corrupt(0, "$BITMAP without $INDEX_ALLOCATION"))?;
        for (i, chunk) in alloc.chunks_exact(size as usize).enumerate() {
            let used = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            if !used {
                continue;
            }
            let mut rec = chunk.to_vec();
            let rec_at = at + (i as u64) * u64::from(size);
            index::fixup(&mut rec, rec_at)?;
            index::record_entries(&rec, rec_at, out)?;
            if out.len() > MAX_DIR_ENTRIES {
                return Err(Error::LimitExceeded {
                    fs: "ntfs",
                    what: "directory entries",
                    limit: MAX_DIR_ENTRIES as u64,
                });
            }
        }
        Ok(())
    }

    /// Resolves `path` to a record number, matching names without case.
    fn resolve(&self, path: &[u8]) -> Result<u64> {
        let text = std::str::from_utf8(path).map_err(|_| Error::NotFound { path: shown(path) })?;
        let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty()).collect();
        let mut record = ROOT;
        for (i, part) in parts.iter().enumerate() {
            let names = match self.names(record) {
                Err(Error::Corrupt { what, .. }) if what.contains("without $INDEX_ROOT") => {
                    return Err(Error::NotADirectory { path: shown(path) })
                }
                other => other?,
            };
            let upper: Vec<char> = part.chars().flat_map(char::to_uppercase).collect();
            let found = names
                .iter()
                .find(|n| n.name == *part)
                .or_else(|| {
                    names.iter().find(|n| {
                        n.name
                            .chars()
                            .flat_map(char::to_uppercase)
                            .eq(upper.iter().copied())
                    })
                })
                .ok_or_else(|| Error::NotFound { path: shown(path) })?;
            // Only the last component may be a non-directory (lstat: symlinks included).
            let through = matches!(listed_type(found), FileType::Directory);
            if !through && i + 1 < parts.len() {
                return Err(Error::NotADirectory { path: shown(path) });
            }
            record = found.record;
        }
        Ok(record)
    }

    /// The file's type, from its record: directory flag, reparse tag or Interix link.
    fn kind(
        &self,
        r: &mut DevReader,
        file: &NtfsFile,
        attrs: NtfsFileAttributeFlags,
    ) -> Result<Kind> {
        if attrs.contains(NtfsFileAttributeFlags::REPARSE_POINT) {
            if let Some((data, _)) =
                self.attribute_bytes(r, file, NtfsAttributeType::ReparsePoint, "", MAX_LINK_BYTES)?
            {
                if let Some(target) = reparse_target(&data) {
                    return Ok(Kind::Link(target));
                }
            }
        }
        if file.is_directory() {
            return Ok(Kind::Dir);
        }
        if attrs.contains(NtfsFileAttributeFlags::SYSTEM) {
            if let Some((data, _)) = self
                .attribute_bytes(r, file, NtfsAttributeType::Data, "", MAX_LINK_BYTES)
                .unwrap_or(None)
            {
                if let Some(units) = data.strip_prefix(INTERIX_MAGIC) {
                    return Ok(Kind::Link(utf16(units).into_bytes()));
                }
            }
        }
        Ok(Kind::File)
    }

    /// The unnamed $DATA attribute's length and flags, without reading it.
    fn data_info(
        &self,
        r: &mut DevReader,
        file: &NtfsFile,
    ) -> Result<Option<(u64, NtfsAttributeFlags)>> {
        let Some(item) = file.data(r, "") else {
            return Ok(None);
        };
        let item = item.map_err(crate_err)?;
        let attr = item.to_attribute().map_err(crate_err)?;
        Ok(Some((attr.value_length(), attr.flags())))
    }
}

/// Decodes UTF-16LE bytes (odd trailing byte dropped).
fn utf16(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// The target of a symlink-like reparse point, as a Unix path; `None` for other tags.
fn reparse_target(data: &[u8]) -> Option<Vec<u8>> {
    let tag = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let field = |at: usize| {
        data.get(at..at + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    match tag {
        TAG_LX_SYMLINK => Some(data.get(12..)?.to_vec()),
        TAG_SYMLINK | TAG_MOUNT_POINT => {
            let (buffer, relative) = if tag == TAG_SYMLINK {
                (20, data.get(16).is_some_and(|f| f & 1 != 0))
            } else {
                (16, false)
            };
            let (off, len) = (field(8)?, field(10)?);
            let name = utf16(data.get(buffer + off..buffer + off + len)?);
            let name = name.replace('\\', "/");
            if relative {
                return Some(name.into_bytes());
            }
            // "\??\C:\dir" -> "/dir": the volume is the root of the guest view's drive.
            let name = name.strip_prefix("/??/").unwrap_or(&name);
            let name = match name.as_bytes() {
                [d, b':', ..] if d.is_ascii_alphabetic() => &name[2..],
                _ => name,
            };
            Some(name.as_bytes().to_vec())
        }
        _ => None,
    }
}

fn nt_time(t: u64) -> i64 {
    (t / 10_000_000) as i64 - 11_644_473_600
}

impl Filesystem for NtfsFs {
    fn info(&self) -> FsInfo {
        self.info.clone()
    }

    fn metadata(&self, path: &[u8]) -> Result<Metadata> {
        let record = self.resolve(path)?;
        let mut r = self.reader();
        let file = self.file(&mut r, record)?;
        let si = file.info().map_err(crate_err)?;
        let kind = self.kind(&mut r, &file, si.file_attributes())?;
        let (file_type, size) = match &kind {
            Kind::Dir => (FileType::Directory, 0),
            Kind::Link(t) => (FileType::Symlink, t.len() as u64),
            Kind::File => (
                FileType::Regular,
                self.data_info(&mut r, &file)?.map_or(0, |(len, _)| len),
            ),
        };
        Ok(Metadata {
            file_type,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size,
            nlink: self.link_count(&mut r, &file)?,
            mtime: Some(nt_time(si.modification_time().nt_timestamp())),
            ino: record,
        })
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<DirEntry>> {
        let record = self.resolve(path)?;
        let names = match self.names(record) {
            Err(Error::Corrupt { what, .. }) if what.contains("without $INDEX_ROOT") => {
                return Err(Error::NotADirectory { path: shown(path) })
            }
            other => other?,
        };
        Ok(names
            .iter()
            .map(|n| DirEntry {
                name: n.name.clone().into_bytes(),
                file_type: listed_type(n),
                ino: n.record,
            })
            .collect())
    }

    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
        let record = self.resolve(path)?;
        let mut r = self.reader();
        let file = self.file(&mut r, record)?;
        if file.is_directory() {
            return Err(Error::IsADirectory { path: shown(path) });
        }
        let Some(item) = file.data(&mut r, "") else {
            return Ok(0);
        };
        let item = item.map_err(crate_err)?;
        let attr = item.to_attribute().map_err(crate_err)?;
        let flags = attr.flags();
        if flags.contains(NtfsAttributeFlags::COMPRESSED) {
            return Err(Error::Unsupported {
                fs: "ntfs",
                what: format!("{}: compressed data", shown(path)),
            });
        }
        if flags.contains(NtfsAttributeFlags::ENCRYPTED) {
            return Err(Error::Unsupported {
                fs: "ntfs",
                what: format!("{}: encrypted data", shown(path)),
            });
        }
        let mut value = attr.value(&mut r).map_err(crate_err)?;
        let len = value.len();
        if offset >= len || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((len - offset) as usize);
        value
            .seek(&mut r, std::io::SeekFrom::Start(offset))
            .map_err(crate_err)?;
        value
            .read_exact(&mut r, &mut buf[..want])
            .map_err(crate_err)?;
        Ok(want)
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let record = self.resolve(path)?;
        let mut r = self.reader();
        let file = self.file(&mut r, record)?;
        let si = file.info().map_err(crate_err)?;
        match self.kind(&mut r, &file, si.file_attributes())? {
            Kind::Link(target) => Ok(target),
            _ => Err(Error::NotASymlink { path: shown(path) }),
        }
    }
}

impl NtfsFs {
    /// Names other than DOS 8.3 duplicates: what `ls` shows as the link count.
    fn link_count(&self, r: &mut DevReader, file: &NtfsFile) -> Result<u64> {
        let mut attrs = file.attributes();
        let (mut count, mut seen) = (0u64, 0usize);
        while let Some(item) = attrs.next(r) {
            seen += 1;
            if seen > MAX_ATTRIBUTES {
                break;
            }
            let item = item.map_err(crate_err)?;
            let attr = item.to_attribute().map_err(crate_err)?;
            if attr.ty().ok() != Some(NtfsAttributeType::FileName) {
                continue;
            }
            let name = attr
                .structured_value::<_, ntfs::structured_values::NtfsFileName>(r)
                .map_err(crate_err)?;
            if name.namespace() != ntfs::structured_values::NtfsFileNamespace::Dos {
                count += 1;
            }
        }
        Ok(count.max(1))
    }
}

/// The type a listing can tell from the index key alone; `Unknown` for system files (an
/// Interix symlink is only told apart by its data) and unrecognised reparse points.
fn listed_type(n: &Name) -> FileType {
    if n.flags & index::ATTR_REPARSE != 0 {
        match n.reparse_tag {
            TAG_SYMLINK | TAG_MOUNT_POINT | TAG_LX_SYMLINK => FileType::Symlink,
            _ => FileType::Unknown,
        }
    } else if n.flags & index::ATTR_DIRECTORY != 0 {
        FileType::Directory
    } else if n.flags & index::ATTR_SYSTEM != 0 {
        FileType::Unknown
    } else {
        FileType::Regular
    }
}
