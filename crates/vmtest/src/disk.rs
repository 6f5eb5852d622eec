//! The VM's data disk: ext4 made by `mkfs.ext4 -d` from a small tree, attached as virtio-blk and
//! mounted on `/data` by the guest's init.

use crate::error::VmError;
use crate::tool;
use std::path::Path;
use std::process::Command;

/// Size of the disk image (sparse on the host): room for the end-to-end suite's 64 MiB copies
/// each way.
pub const DISK_BYTES: u64 = 256 << 20;
/// The filesystem label.
pub const LABEL: &str = "porthole-data";
/// Where the guest mounts it.
pub const MOUNTPOINT: &str = "/data";
/// The files put on it: path under the mountpoint, contents.
pub const FILES: &[(&str, &str)] = &[
    ("hello.txt", "hello from the data disk\n"),
    ("etc/app.conf", "listen = 8080\nworkers = 2\n"),
];

/// Writes a fresh disk image at `image`, using `tree` as scratch space for its contents.
pub fn build(image: &Path, tree: &Path) -> Result<(), VmError> {
    for (path, contents) in FILES {
        let file = tree.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| VmError::io("creating the data tree", parent, e))?;
        }
        std::fs::write(&file, contents).map_err(|e| VmError::io("writing", &file, e))?;
    }
    let size = std::fs::File::create(image)
        .and_then(|f| f.set_len(DISK_BYTES))
        .map_err(|e| VmError::io("creating the data disk", image, e));
    size?;
    tool::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", LABEL, "-d"])
            .arg(tree)
            .arg(image),
        "install the Debian package e2fsprogs",
    )
    .map(drop)
}
