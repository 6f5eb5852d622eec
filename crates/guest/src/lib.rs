//! The guest view: one VM's disks assembled the way its operating system sees them.
//!
//! Offline inspection starts here. [`Disks::open`] opens a VM's image files (in attach order),
//! finds every partition, RAID array and logical volume ([`porthole_volume::scan`]) and probes
//! each for a filesystem ([`porthole_fs::open`]). [`Disks::roots`] finds the filesystems that hold
//! an operating system, and [`Disks::guest`] reads a root's `/etc/fstab` and mounts what it names
//! (by UUID, LABEL, PARTUUID, PARTLABEL, `/dev/disk/by-*`, `/dev/mapper`, `/dev/VG/LV` or the
//! guest's own `/dev/sdX`/`vdX`/`nvmeXnY` names) into one read-only [`GuestView`], in which
//! paths resolve as the guest's kernel would resolve them: symlinks followed inside the guest,
//! absolute ones from the guest's root, never the host's, and loops cut at 40 links.
//!
//! Everything here reads untrusted bytes through the layers below; a damaged volume or fstab
//! line becomes a warning and the rest of the guest stays readable.

mod disks;
pub mod fstab;
mod view;

pub use disks::{Disks, FoundFs, RootKind};
pub use view::{GuestView, Mount, MAX_PATH, MAX_SYMLINKS};

use std::path::PathBuf;

/// Errors from assembling or reading a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image file could not be opened (the image layer's message names the file).
    #[error("{source}")]
    Image {
        path: PathBuf,
        #[source]
        source: porthole_image::Error,
    },
    /// A filesystem failed while reading `path` (a guest path).
    #[error("{path}: {source}")]
    Fs {
        path: String,
        #[source]
        source: porthole_fs::Error,
    },
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    /// More than [`MAX_SYMLINKS`] symlinks in one path: a loop, as ELOOP.
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    /// A symlink whose target is empty or longer than [`MAX_PATH`].
    #[error("{path}: symbolic link target of {len} bytes is not usable")]
    BadSymlink { path: String, len: usize },
    #[error("no filesystem number {index} on these disks")]
    NoSuchFilesystem { index: usize },
}
