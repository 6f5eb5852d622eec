//! Extended attributes kept in the inode (short-form attribute fork). Attributes in leaf or node
//! blocks are reported as unsupported rather than silently left out.

use super::bytes::{Buf, FS};
use super::inode::{Format, Inode};
use crate::{Error, Result};

/// `xfs_attr_sf_entry.flags`: namespaces, and entries that are not user-visible xattrs.
const ROOT: u8 = 0x02;
const SECURE: u8 = 0x04;
const PARENT: u8 = 0x08;
const INCOMPLETE: u8 = 0x80;

pub(super) fn list(inode: &Inode) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let Some(fork) = &inode.attr else {
        return Ok(Vec::new());
    };
    match fork.format {
        Format::Local => short_form(fork.buf()),
        Format::Extents | Format::Btree if fork.nextents == 0 => Ok(Vec::new()),
        _ => Err(Error::Unsupported {
            fs: FS,
            what: "extended attributes outside the inode".into(),
        }),
    }
}

/// Header: total size (2), count (1), pad (1); entries: namelen, valuelen, flags, name, value.
fn short_form(b: Buf<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let total = usize::from(b.u16(0, "attr sf total size")?);
    let b = b.sub(0, total, "short-form attributes")?;
    let count = b.u8(2, "attr sf count")?;
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..count {
        let namelen = usize::from(b.u8(at, "attr name length")?);
        let valuelen = usize::from(b.u8(at + 1, "attr value length")?);
        let flags = b.u8(at + 2, "attr flags")?;
        let name = b.slice(at + 3, namelen, "attr name")?;
        let value = b.slice(at + 3 + namelen, valuelen, "attr value")?;
        at += 3 + namelen + valuelen;
        let prefix: &[u8] = match flags & (ROOT | SECURE) {
            0 => b"user.",
            ROOT => b"trusted.",
            SECURE => b"security.",
            _ => continue,
        };
        // XFS keeps POSIX ACLs in its own binary form under these root names; skip them
        // rather than present them as trusted.* attributes they are not.
        if flags & (PARENT | INCOMPLETE) != 0
            || (flags & ROOT != 0 && name.starts_with(b"SGI_ACL_"))
        {
            continue;
        }
        out.push(([prefix, name].concat(), value.to_vec()));
    }
    Ok(out)
}
