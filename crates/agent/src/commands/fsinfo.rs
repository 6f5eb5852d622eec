//! guest-get-fsinfo: mounted block-device filesystems, their disks and usage, as qemu-ga 7.2
//! reports them on Linux.
//!
//! Mounts come from /proc/self/mountinfo. Like qemu-ga, a mount whose device has major 0
//! (tmpfs, proc, overlay, network filesystems, ...) is left out, except btrfs, whose source
//! device gives the numbers. The list is in reverse mount order. Sizes come from statvfs:
//! `used = (f_blocks - f_bfree) * f_frsize`, `total = used + f_bavail * f_frsize` (what an
//! unprivileged user sees).

use super::sysfs::{os_error, read_text, TABLE_LIMIT};
use super::{blocking, diskaddr, NoArgs};
use crate::agent::Agent;
use porthole_proto::commands::FilesystemInfo;
use porthole_proto::CommandError;
use serde_json::Value;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// One line of mountinfo that qemu-ga keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dir: String,
    pub fstype: String,
    pub source: String,
    pub major: u32,
    pub minor: u32,
}

pub async fn get_fsinfo(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let path = "/proc/self/mountinfo";
        let text = read_text(Path::new(path), TABLE_LIMIT)
            .map_err(|e| os_error(format!("open(\"{path}\")"), &e))?;
        let mut list = Vec::new();
        for mount in block_mounts(parse_mountinfo(&text)) {
            list.push(fsinfo(&mount)?);
        }
        list.reverse();
        super::to_value(list)
    })
    .await
}

/// The mounts qemu-ga considers: a real device number, or btrfs on a block device.
pub fn block_mounts(mounts: Vec<Mount>) -> Vec<Mount> {
    mounts
        .into_iter()
        .filter_map(|mut m| {
            if m.major == 0 {
                if m.fstype != "btrfs" {
                    return None;
                }
                let meta = std::fs::metadata(&m.source).ok()?;
                if !meta.file_type().is_block_device() {
                    return None;
                }
                let rdev = meta.rdev();
                m.major = libc::major(rdev);
                m.minor = libc::minor(rdev);
            }
            Some(m)
        })
        .collect()
}

fn fsinfo(mount: &Mount) -> Result<FilesystemInfo, CommandError> {
    let devpath = format!("/sys/dev/block/{}:{}", mount.major, mount.minor);
    let (name, disk) = diskaddr::resolve(Path::new(&devpath))?;
    let mut info = FilesystemInfo {
        name,
        mountpoint: mount.dir.clone(),
        r#type: mount.fstype.clone(),
        used_bytes: None,
        total_bytes: None,
        disk,
    };
    if let Ok(st) = nix::sys::statvfs::statvfs(mount.dir.as_str()) {
        let (used, total) = usage(&st);
        info.used_bytes = Some(used);
        info.total_bytes = Some(total);
    }
    Ok(info)
}

/// (used, total) bytes in C unsigned long arithmetic, as qemu-ga computes them: total is what
/// an unprivileged user sees (used + available).
#[allow(clippy::unnecessary_cast)] // the casts are needed where the fields are 32-bit
fn usage(st: &nix::sys::statvfs::Statvfs) -> (u64, u64) {
    let frsize = st.fragment_size() as u64;
    let used = (st.blocks() as u64).wrapping_sub(st.blocks_free() as u64);
    let total = used.wrapping_add(st.blocks_available() as u64);
    (used.wrapping_mul(frsize), total.wrapping_mul(frsize))
}

/// The lines of mountinfo with a device number, a mount point, and after ` - ` a type and a
/// source; octal escapes (`\040`) decoded. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let mut next = || fields.find(|f| !f.is_empty());
    next()?.parse::<u32>().ok()?;
    next()?.parse::<u32>().ok()?;
    let (major, minor) = next()?.split_once(':')?;
    let (major, minor) = (major.parse().ok()?, minor.parse().ok()?);
    next()?; // root
    let dir = next()?;
    // The optional fields end at the first " - " after the mount point.
    let dir_end = line.find(dir)? + dir.len();
    let (_, after) = line.get(dir_end..)?.split_once(" - ")?;
    let mut tail = after.split(' ').filter(|f| !f.is_empty());
    let fstype = tail.next()?;
    let source = tail.next()?;
    Some(Mount {
        dir: decode_mntname(dir),
        fstype: fstype.to_string(),
        source: decode_mntname(source),
        major,
        minor,
    })
}

/// Undoes mountinfo's escapes: `\\` and three-digit octal `\ooo` (first digit 0-3).
pub fn decode_mntname(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = |k: usize, max: u8| bytes.get(i + k).filter(|d| (b'0'..=max).contains(d));
        if b != b'\\' {
            out.push(b);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if let (Some(a), Some(m), Some(c)) = (octal(1, b'3'), octal(2, b'7'), octal(3, b'7'))
        {
            out.push((a - b'0') * 64 + (m - b'0') * 8 + (c - b'0'));
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
            22 27 0:21 / /proc rw,relatime - proc proc rw\n\
            40 27 8:1 / /mnt/my\\040disk rw shared:1 master:2 - xfs /dev/sd\\134a1 rw\n\
            41 27 8:2 / /broken rw\n\
            garbage\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].dir, "/");
        assert_eq!((mounts[0].major, mounts[0].minor), (254, 0));
        assert_eq!(mounts[2].dir, "/mnt/my disk");
        assert_eq!(mounts[2].source, "/dev/sd\\a1");
        assert_eq!(mounts[2].fstype, "xfs");
        let kept = block_mounts(mounts);
        assert_eq!(kept.len(), 2, "proc (major 0) is dropped");
    }

    #[test]
    fn escapes() {
        assert_eq!(decode_mntname("a\\040b"), "a b");
        assert_eq!(decode_mntname("a\\\\b"), "a\\b");
        assert_eq!(decode_mntname("a\\9xx"), "a\\9xx");
        assert_eq!(decode_mntname("end\\"), "end\\");
    }
}
