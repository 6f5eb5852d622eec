//! Read-only access to virtual disk images.
//!
//! Every image format is presented through one trait, [`BlockDevice`]: a fixed-size, random-access,
//! read-only byte array. Partition tables, volume managers and filesystems (the crates above this one)
//! only ever see a `BlockDevice`, so they work the same on a raw file, a qcow2 chain or a VHDX.
//!
//! Images are hostile input: every length and offset read from a header is checked before use, and
//! no allocation is sized by a header field without a fixed upper bound.
//!
//! [`open_image`] detects the format by magic ([`detect_format`]; [`open_image_as`] forces one)
//! and returns one device for the whole chain:
//! - [`qcow2`]: v2 and v3, zlib and zstd compressed clusters, zero clusters, extended L2
//!   entries (subclusters), backing files; external data files and encryption are refused.
//! - [`vmdk`]: monolithicSparse, streamOptimized, monolithicFlat, twoGbMaxExtentSparse/Flat,
//!   and delta links (parentFileNameHint) as a backing chain.
//! - [`vhdx`]: fixed, dynamic and differencing (parent locator: relative path first); an
//!   image with a non-empty log is refused, since replaying it is a write.
//!
//! Format readers sit on an `Arc<dyn BlockDevice>` of their container file, so they also read
//! images held in memory ([`open_device`], used by [`fuzzing`]); only [`open_image`] turns
//! names found in images (backing files, extent files) into paths, relative to the image's
//! directory, and it refuses loops and chains deeper than [`MAX_CHAIN`]. Tables and decoded
//! clusters are loaded lazily through one bounded LRU [`Cache`] per opened chain, so opening
//! is cheap and memory bounded whatever size a header claims.

mod bytes;
mod cache;
mod compress;
pub mod fuzzing;
mod mapped;
mod open;
pub mod qcow2;
pub mod vhdx;
pub mod vmdk;

pub use cache::{Cache, CacheStats, DEFAULT_CACHE_BYTES};
pub use open::{
    detect_format, open_device, open_image, open_image_as, Dev, Format, Image, MAX_CHAIN,
};

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors from reading an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A read asked for bytes outside the device.
    #[error(
        "read of {len} bytes at offset {offset:#x} is beyond the end of the {size}-byte device"
    )]
    OutOfRange { offset: u64, len: usize, size: u64 },
    /// A structure in the image is malformed; names the format and where.
    #[error("{format} at offset {offset:#x}: {what}")]
    Corrupt {
        format: &'static str,
        offset: u64,
        what: String,
    },
    /// The image uses a feature porthole does not read.
    #[error("{format}: unsupported: {what}")]
    Unsupported { format: &'static str, what: String },
    /// A backing chain names the same file twice.
    #[error("backing chain loop: {path} is already in the chain")]
    BackingLoop { path: PathBuf },
    /// A backing chain is longer than porthole follows.
    #[error("backing chain deeper than {limit} images at {path}")]
    ChainTooDeep { path: PathBuf, limit: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A read-only, fixed-size, random-access device: a disk image, a partition, a logical volume.
pub trait BlockDevice: Send + Sync + fmt::Debug {
    /// Size of the device in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the bytes at `offset`. A read that would pass the end is an error
    /// ([`Error::OutOfRange`]); unallocated regions of sparse formats read as zeros.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
}

impl<T: BlockDevice + ?Sized> BlockDevice for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// Checks that `[offset, offset + len)` lies inside a device of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange { offset, len, size }),
    }
}

/// A raw image: the file's bytes are the disk's bytes.
#[derive(Debug)]
pub struct RawImage {
    path: PathBuf,
    file: File,
    size: u64,
}

impl RawImage {
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
        })
    }
}

impl BlockDevice for RawImage {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// A device held in memory: crafted and fuzzed images, and small decoded structures.
#[derive(Debug, Clone)]
pub struct MemDevice(pub Vec<u8>);

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size())?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match self.0.get(start..start.saturating_add(buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::OutOfRange {
                offset,
                len: buf.len(),
                size: self.size(),
            }),
        }
    }
}

/// A window `[start, start + len)` of another device: a partition, or one extent of a volume.
#[derive(Debug, Clone)]
pub struct Slice<D> {
    inner: D,
    start: u64,
    len: u64,
}

impl<D: BlockDevice> Slice<D> {
    /// Fails when the window does not fit inside `inner`.
    pub fn new(inner: D, start: u64, len: u64) -> Result<Self> {
        let size = inner.size();
        match start.checked_add(len) {
            Some(end) if end <= size => Ok(Self { inner, start, len }),
            _ => Err(Error::OutOfRange {
                offset: start,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                size,
            }),
        }
    }
}

impl<D: BlockDevice> BlockDevice for Slice<D> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.len)?;
        self.inner.read_exact_at(buf, self.start + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_slice_read_and_bound() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("porthole-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("raw.img");
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let raw = Arc::new(RawImage::open(&path)?);
        let slice = Slice::new(raw.clone(), 1000, 100)?;
        let mut buf = [0u8; 10];
        slice.read_exact_at(&mut buf, 90)?;
        assert_eq!(&buf[..], &data[1090..1100]);
        assert!(matches!(
            slice.read_exact_at(&mut buf, 95),
            Err(Error::OutOfRange { .. })
        ));
        assert!(Slice::new(raw, 4000, 200).is_err());
        Ok(())
    }
}
