//! One filesystem image from a host directory tree, made the way each filesystem's own tools
//! make it: `mkfs.ext4 -d`, `mkfs.btrfs --rootdir`, `mkfs.vfat` + `mcopy`, and (as root) a loop
//! or ntfs-3g mount for XFS and NTFS, whose mkfs cannot copy a tree in.

use std::path::Path;

use crate::kernel::{need_root, Mount};
use crate::tools::{run, truncate};

/// The filesystems porthole reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
    Btrfs,
    Vfat,
    Ntfs,
}

impl FsType {
    pub const ALL: [FsType; 5] = [
        FsType::Ext4,
        FsType::Xfs,
        FsType::Btrfs,
        FsType::Vfat,
        FsType::Ntfs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Vfat => "vfat",
            FsType::Ntfs => "ntfs",
        }
    }
}

/// Makes `image` (`size_mib` MiB, sparse) holding a copy of `tree`.
pub fn make(fs: FsType, tree: &Path, image: &Path, size_mib: u64) {
    truncate(image, size_mib << 20);
    let (tree_s, image_s) = (tree.to_string_lossy(), image.to_string_lossy());
    match fs {
        FsType::Ext4 => run(
            "mkfs.ext4",
            "e2fsprogs",
            &["-q", "-F", "-d", &tree_s, &image_s],
            None,
        ),
        FsType::Btrfs => run(
            "mkfs.btrfs",
            "btrfs-progs",
            &["-q", "-f", "--rootdir", &tree_s, &image_s],
            None,
        ),
        FsType::Vfat => {
            run("mkfs.vfat", "dosfstools", &["-F", "32", &image_s], None);
            let mut args = vec![
                "MTOOLS_SKIP_CHECK=1".to_string(),
                "mcopy".into(),
                "-s".into(),
                "-m".into(),
                "-i".into(),
                image_s.to_string(),
            ];
            for entry in std::fs::read_dir(tree).expect("read tree") {
                args.push(
                    entry
                        .expect("tree entry")
                        .path()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            args.push("::".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run("env", "mtools", &args, None)
        }
        FsType::Xfs => {
            need_root("building an XFS image from a tree");
            run("mkfs.xfs", "xfsprogs", &["-q", "-f", &image_s], None);
            let mounted = Mount::new(image, &image.with_extension("mnt"), "loop");
            mounted.fill_from(tree);
            String::new()
        }
        FsType::Ntfs => {
            need_root("building an NTFS image from a tree (ntfs-3g, /dev/fuse)");
            run("mkntfs", "ntfs-3g", &["-F", "-Q", &image_s], None);
            let dir = image.with_extension("mnt");
            std::fs::create_dir_all(&dir).expect("mountpoint");
            run(
                "ntfs-3g",
                "ntfs-3g",
                &[&image_s, &dir.to_string_lossy()],
                None,
            );
            let mounted = Mount(dir);
            mounted.fill_from(tree);
            String::new()
        }
    };
}
