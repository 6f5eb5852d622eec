//! Format detection, the public entry points, and the one place that turns names found in
//! images (backing files, extent files) into host paths.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cache::{Cache, DEFAULT_CACHE_BYTES};
use crate::{qcow2, vhdx, vmdk, BlockDevice, Error, RawImage, Result};

/// A shared, type-erased device.
pub type Dev = Arc<dyn BlockDevice>;

/// Longest backing chain followed (the image itself plus its ancestors).
pub const MAX_CHAIN: usize = 32;

/// The container formats porthole reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    Vhdx,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
        }
    }

    /// Parses qemu's format names (as in a qcow2 backing-format extension).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "raw" | "file" | "host_device" => Some(Format::Raw),
            "qcow2" => Some(Format::Qcow2),
            "vmdk" => Some(Format::Vmdk),
            "vhdx" => Some(Format::Vhdx),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An opened image: the detected (or forced) format of the top file and its virtual disk.
#[derive(Debug, Clone)]
pub struct Image {
    pub format: Format,
    pub device: Dev,
    /// The files of the backing chain below the top image, nearest first.
    pub backing_chain: Vec<PathBuf>,
}

/// Opens an image file of any supported format, detected by magic, as one device.
pub fn open_image(path: &Path) -> Result<Dev> {
    Ok(open_image_as(path, None)?.device)
}

/// Opens an image file, detecting its format unless `format` forces one.
pub fn open_image_as(path: &Path, format: Option<Format>) -> Result<Image> {
    let ctx = Ctx::files(path, Arc::new(Cache::new(DEFAULT_CACHE_BYTES)))?;
    let file: Dev = Arc::new(RawImage::open(path)?);
    ctx.open(file, format)
}

/// Opens an image held in `file` (for instance in memory). Images that name other files
/// (backing files, VMDK extents) are refused: only [`open_image`] resolves paths.
pub fn open_device(file: Dev, format: Option<Format>) -> Result<Image> {
    let ctx = Ctx {
        cache: Arc::new(Cache::new(DEFAULT_CACHE_BYTES)),
        files: None,
        opened: Arc::default(),
    };
    ctx.open(file, format)
}

/// Detects the format of an image by its magic; anything unrecognised is raw.
pub fn detect_format(file: &dyn BlockDevice) -> Result<Format> {
    let mut head = [0u8; 1024];
    let n = head
        .len()
        .min(usize::try_from(file.size()).unwrap_or(usize::MAX));
    let head = &mut head[..n];
    file.read_exact_at(head, 0)?;
    Ok(if head.starts_with(qcow2::MAGIC) {
        Format::Qcow2
    } else if head.starts_with(vhdx::MAGIC) {
        Format::Vhdx
    } else if vmdk::probe(head, file.size()) {
        Format::Vmdk
    } else {
        Format::Raw
    })
}

/// What a format reader may open besides its own container file: a shared cache, and (for
/// images opened from a path) the directory and chain used to resolve names of other files.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub cache: Arc<Cache>,
    files: Option<Files>,
    /// Every backing file opened for this chain, in the order opened (nearest first).
    opened: Arc<Mutex<Vec<PathBuf>>>,
}

#[derive(Debug, Clone)]
struct Files {
    /// Directory of the image being opened: relative names are relative to it.
    dir: PathBuf,
    /// Canonical paths of the images opened so far on this chain, top first.
    chain: Vec<PathBuf>,
}

impl Ctx {
    fn files(path: &Path, cache: Arc<Cache>) -> Result<Self> {
        let canon = canonical(path)?;
        let dir = canon.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            cache,
            files: Some(Files {
                dir,
                chain: vec![canon],
            }),
            opened: Arc::default(),
        })
    }

    /// Reads the format of `file` and opens it.
    pub(crate) fn open(&self, file: Dev, format: Option<Format>) -> Result<Image> {
        let format = match format {
            Some(f) => f,
            None => detect_format(file.as_ref())?,
        };
        let device = match format {
            Format::Raw => file,
            Format::Qcow2 => qcow2::open(file, self)?,
            Format::Vmdk => vmdk::open(file, self)?,
            Format::Vhdx => vhdx::open(file, self)?,
        };
        let backing_chain = self.opened.lock().map(|o| o.clone()).unwrap_or_default();
        Ok(Image {
            format,
            device,
            backing_chain,
        })
    }

    /// Opens a raw extent file named (relative to the image's directory) by a descriptor.
    pub(crate) fn open_extent(&self, format: &'static str, name: &str) -> Result<Dev> {
        let files = self.need_files(format, name)?;
        let path = files.dir.join(name);
        Ok(Arc::new(RawImage::open(&path)?))
    }

    /// Opens a backing (parent) image: the first of `candidates` that exists, with `backing`
    /// as its format or probed. Refuses loops and chains deeper than [`MAX_CHAIN`].
    pub(crate) fn open_backing(
        &self,
        format: &'static str,
        candidates: &[String],
        backing: Option<Format>,
    ) -> Result<Dev> {
        let first = candidates.first().map(String::as_str).unwrap_or_default();
        let files = self.need_files(format, first)?;
        let path = candidates
            .iter()
            .map(|c| files.dir.join(c))
            .find(|p| p.exists())
            .unwrap_or_else(|| files.dir.join(first));
        let canon = canonical(&path)?;
        if files.chain.contains(&canon) {
            return Err(Error::BackingLoop { path: canon });
        }
        if files.chain.len() >= MAX_CHAIN {
            return Err(Error::ChainTooDeep {
                path: canon,
                limit: MAX_CHAIN,
            });
        }
        let mut chain = files.chain.clone();
        chain.push(canon.clone());
        if let Ok(mut opened) = self.opened.lock() {
            opened.push(canon.clone());
        }
        let ctx = Ctx {
            opened: self.opened.clone(),
            cache: self.cache.clone(),
            files: Some(Files {
                dir: canon.parent().map(Path::to_path_buf).unwrap_or_default(),
                chain,
            }),
        };
        let file: Dev = Arc::new(RawImage::open(&canon)?);
        Ok(ctx.open(file, backing)?.device)
    }

    fn need_files(&self, format: &'static str, name: &str) -> Result<&Files> {
        self.files.as_ref().ok_or_else(|| Error::Unsupported {
            format,
            what: format!("image names another file ({name:?}) but was not opened from a path"),
        })
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    path.canonicalize().map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `buf` from a backing device at `offset`; bytes past its end read as zeros (a
/// backing file may be smaller than its overlay).
pub(crate) fn read_backing(
    dev: Option<&dyn BlockDevice>,
    buf: &mut [u8],
    offset: u64,
) -> Result<()> {
    let Some(dev) = dev else {
        buf.fill(0);
        return Ok(());
    };
    let avail = dev.size().saturating_sub(offset);
    let n = usize::try_from(avail).unwrap_or(usize::MAX).min(buf.len());
    let (inside, past) = buf.split_at_mut(n);
    if !inside.is_empty() {
        dev.read_exact_at(inside, offset)?;
    }
    past.fill(0);
    Ok(())
}
