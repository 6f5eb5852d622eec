//! VMDK: a text descriptor naming extents (flat, sparse, zero), or a single hosted sparse
//! extent with the descriptor embedded. monolithicSparse, streamOptimized, monolithicFlat and
//! the twoGbMaxExtent split variants read; a delta link's parent (parentFileNameHint) is the
//! backing image. ESX's VMFSSPARSE/SESPARSE extents are refused.

mod descriptor;
mod sparse;

use std::sync::Arc;

use crate::bytes::{corrupt, read_file, read_meta, unsupported};
use crate::mapped::read_mapped;
use crate::open::{read_backing, Ctx, Dev, Format};
use crate::{check_range, BlockDevice, Result};

pub(crate) use descriptor::parse as parse_descriptor;
use descriptor::{Descriptor, ExtentKind};
use sparse::Sparse;

pub(crate) const FORMAT: &str = "vmdk";
/// Largest descriptor read (qemu's limit too).
const MAX_DESCRIPTOR: u64 = 1 << 20;

/// True when the first bytes of a file look like a VMDK: a sparse header or a descriptor.
pub(crate) fn probe(head: &[u8], size: u64) -> bool {
    head.starts_with(sparse::MAGIC)
        || head.starts_with(b"COWD")
        || head.starts_with(b"# Disk DescriptorFile")
        || (size <= MAX_DESCRIPTOR && head.windows(11).any(|w| w == b"createType="))
}

#[derive(Debug)]
enum Data {
    Flat(Dev, u64),
    Zero,
    Sparse(Sparse),
}

#[derive(Debug)]
struct Extent {
    start: u64,
    len: u64,
    data: Data,
}

/// An opened VMDK disk: its extents laid end to end, over an optional parent.
#[derive(Debug)]
pub struct Vmdk {
    extents: Vec<Extent>,
    size: u64,
    parent: Option<Dev>,
}

pub(crate) fn open(file: Dev, ctx: &Ctx) -> Result<Dev> {
    let mut head = [0u8; 4];
    read_file(file.as_ref(), FORMAT, &mut head, 0, "magic")?;
    if &head == b"COWD" {
        return Err(unsupported(FORMAT, "ESX COWD (VMFSSPARSE) extent"));
    }
    let (desc, extents) = if head == sparse::MAGIC {
        monolithic(file, ctx)?
    } else {
        if file.size() > MAX_DESCRIPTOR {
            return Err(unsupported(
                FORMAT,
                format!("descriptor file of {} bytes", file.size()),
            ));
        }
        let text = read_meta(file.as_ref(), FORMAT, 0, file.size(), "descriptor")?;
        let desc = parse_descriptor(&text, 0)?;
        let extents = from_descriptor(&desc, ctx)?;
        (desc, extents)
    };
    let size = extents.last().map_or(0, |e| e.start + e.len);
    let parent = match &desc.parent_hint {
        Some(hint) => {
            Some(ctx.open_backing(FORMAT, std::slice::from_ref(hint), Some(Format::Vmdk))?)
        }
        None => None,
    };
    Ok(Arc::new(Vmdk {
        extents,
        size,
        parent,
    }))
}

/// A file that is itself one sparse extent (monolithicSparse, streamOptimized).
fn monolithic(file: Dev, ctx: &Ctx) -> Result<(Descriptor, Vec<Extent>)> {
    let h = sparse::parse_header(file.as_ref())?;
    let (at, len) = h.descriptor;
    let desc = if at != 0 && len != 0 {
        let text = read_meta(
            file.as_ref(),
            FORMAT,
            at,
            len.min(MAX_DESCRIPTOR),
            "embedded descriptor",
        )?;
        parse_descriptor(&text, at)?
    } else {
        Descriptor::default()
    };
    let len = h.capacity;
    let data = Data::Sparse(Sparse::new(file, h, ctx.cache.clone())?);
    Ok((
        desc,
        vec![Extent {
            start: 0,
            len,
            data,
        }],
    ))
}

fn from_descriptor(desc: &Descriptor, ctx: &Ctx) -> Result<Vec<Extent>> {
    let mut start = 0u64;
    let mut out = Vec::with_capacity(desc.extents.len());
    for line in &desc.extents {
        let len = line
            .sectors
            .checked_mul(512)
            .filter(|l| start.checked_add(*l).is_some());
        let len = len.ok_or_else(|| corrupt(FORMAT, 0, "extent sizes overflow"))?;
        let data = match (&line.kind, &line.file) {
            (ExtentKind::Zero, _) => Data::Zero,
            (_, None) => return Err(corrupt(FORMAT, 0, "extent without file name")),
            (ExtentKind::Flat, Some(name)) => {
                let f = ctx.open_extent(FORMAT, name)?;
                let base = line.offset.saturating_mul(512);
                if base.checked_add(len).is_none_or(|end| end > f.size()) {
                    return Err(corrupt(
                        FORMAT,
                        base,
                        format!("flat extent {name:?} is shorter than its {len} bytes"),
                    ));
                }
                Data::Flat(f, base)
            }
            (ExtentKind::Sparse, Some(name)) => {
                let f = ctx.open_extent(FORMAT, name)?;
                let h = sparse::parse_header(f.as_ref())?;
                Data::Sparse(Sparse::new(f, h, ctx.cache.clone())?)
            }
        };
        out.push(Extent { start, len, data });
        start += len;
    }
    Ok(out)
}

impl Vmdk {
    fn read_extent(&self, e: &Extent, buf: &mut [u8], local: u64) -> Result<()> {
        match &e.data {
            Data::Zero => {
                buf.fill(0);
                Ok(())
            }
            Data::Flat(f, base) => read_file(f.as_ref(), FORMAT, buf, base + local, "flat extent"),
            Data::Sparse(s) => {
                let parent = (self.parent.as_deref(), e.start);
                read_mapped(buf, local, FORMAT, s.file(), parent, |at| s.map(at))
            }
        }
    }
}

impl BlockDevice for Vmdk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let mut pos = 0usize;
        let mut i = self.extents.partition_point(|e| e.start + e.len <= offset);
        while pos < buf.len() {
            let at = offset + pos as u64;
            let Some(e) = self.extents.get(i) else {
                // Past the last extent (cannot happen: size is their sum).
                return read_backing(None, &mut buf[pos..], at);
            };
            let local = at - e.start;
            let n = usize::try_from(e.len - local)
                .unwrap_or(usize::MAX)
                .min(buf.len() - pos);
            self.read_extent(e, &mut buf[pos..pos + n], local)?;
            pos += n;
            i += 1;
        }
        Ok(())
    }
}
