//! The filesystems freeze, thaw and trim act on, and the three ioctls.
//!
//! The list is qemu-ga's: /proc/self/mountinfo, keeping mounts with a real device number (and
//! btrfs on a block device), which leaves out tmpfs, proc, overlay and network filesystems. The
//! parsing is guest-get-fsinfo's ([`super::super::fsinfo`]).
//!
//! `PORTHOLE_AGENT_MOUNTINFO` names another file to read instead: a test hook, so the freeze of
//! "every filesystem" can be exercised on a list holding only a test's own loop mount.

use super::super::fsinfo::{block_mounts, parse_mountinfo, Mount};
use super::super::sysfs::{os_error, read_text, TABLE_LIMIT};
use porthole_proto::CommandError;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The environment variable that replaces /proc/self/mountinfo (tests).
pub const MOUNTINFO_ENV: &str = "PORTHOLE_AGENT_MOUNTINFO";

// <linux/fs.h>: _IOWR('X', 119, int), _IOWR('X', 120, int), _IOWR('X', 121, struct fstrim_range).
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;
const FITRIM: libc::c_ulong = 0xC018_5879;
/// FITHAW is repeated until it fails (a filesystem frozen N times needs N thaws); the kernel
/// allows one user freeze per filesystem, so a handful is plenty.
const MAX_THAWS_PER_MOUNT: usize = 16;

/// `struct fstrim_range` of <linux/fs.h>.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct FstrimRange {
    pub start: u64,
    pub len: u64,
    pub minlen: u64,
}

/// The mounts to act on, in mount order.
pub fn list() -> Result<Vec<Mount>, CommandError> {
    let path = std::env::var_os(MOUNTINFO_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/self/mountinfo"));
    let text = read_text(&path, TABLE_LIMIT)
        .map_err(|e| os_error(format!("open(\"{}\")", path.display()), &e))?;
    Ok(block_mounts(parse_mountinfo(&text)))
}

/// Opens a mount point read-only (a directory fd is all the ioctls need).
pub fn open(mount: &Mount) -> io::Result<File> {
    File::open(&mount.dir)
}

/// True when the open directory really is the filesystem mountinfo names: a guest user who
/// renames a parent directory and plants a symlink must not redirect a freeze to another
/// filesystem. btrfs reports an anonymous device number, so it is not checked.
pub fn is_that_filesystem(file: &File, mount: &Mount) -> bool {
    if mount.fstype == "btrfs" {
        return true;
    }
    file.metadata().is_ok_and(|m| {
        let dev = m.dev();
        libc::major(dev) == mount.major && libc::minor(dev) == mount.minor
    })
}

fn ioctl(file: &File, request: libc::c_ulong, arg: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: `file` is an open descriptor; the three requests used here take either an ignored
    // int argument or a pointer to a live, correctly laid out `FstrimRange`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn freeze(file: &File) -> io::Result<()> {
    ioctl(file, FIFREEZE, std::ptr::null_mut())
}

/// Thaws until the kernel says the filesystem is not frozen; true if at least one thaw worked.
pub fn thaw(file: &File) -> bool {
    let mut thawed = false;
    for _ in 0..MAX_THAWS_PER_MOUNT {
        if ioctl(file, FITHAW, std::ptr::null_mut()).is_err() {
            break;
        }
        thawed = true;
    }
    thawed
}

/// Discards free ranges of at least `minlen` bytes; returns what the kernel wrote back.
pub fn trim(file: &File, minlen: u64) -> io::Result<FstrimRange> {
    let mut range = FstrimRange {
        start: 0,
        len: u64::MAX,
        minlen,
    };
    ioctl(file, FITRIM, (&mut range as *mut FstrimRange).cast())?;
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_fs_h() {
        // _IOWR(type, nr, size) = 3 << 30 | size << 16 | type << 8 | nr
        let iowr = |nr: libc::c_ulong, size: usize| -> libc::c_ulong {
            (3 << 30) | ((size as libc::c_ulong) << 16) | (0x58 << 8) | nr
        };
        assert_eq!(FIFREEZE, iowr(119, 4));
        assert_eq!(FITHAW, iowr(120, 4));
        assert_eq!(FITRIM, iowr(121, std::mem::size_of::<FstrimRange>()));
    }

    #[test]
    fn a_regular_directory_is_no_block_mount() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = File::open(dir.path())?;
        let fake = Mount {
            dir: dir.path().display().to_string(),
            fstype: "ext4".into(),
            source: "/dev/none".into(),
            major: 4095,
            minor: 4095,
        };
        assert!(!is_that_filesystem(&file, &fake));
        Ok(())
    }
}
