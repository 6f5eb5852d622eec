//! [`Disks`]: a VM's disk images opened, scanned for partitions and volumes, and every
//! filesystem on them probed; then the OS roots found and each assembled into a [`GuestView`]
//! through its `/etc/fstab`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use porthole_fs::{BtrfsFs, FileType, Filesystem, FsInfo, SubvolumeSelector};
use porthole_image::BlockDevice;
use porthole_volume::{scan, Volume, VolumeKind};

use crate::fstab::{self, FstabEntry};
use crate::view::{GuestView, Mount};
use crate::Error;

/// btrfs's top-level subvolume, what `subvol=/` names.
const TOP_LEVEL_SUBVOLUME: u64 = 5;

/// The largest fstab read; a real one is a few KiB.
const FSTAB_LIMIT: u64 = 1 << 20;

/// Filesystem types in fstab that hold no disk data of the guest's.
const VIRTUAL_FSTYPES: &[&str] = &[
    "swap",
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "devtmpfs",
    "none",
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "9p",
    "virtiofs",
    "fuse",
    "fuse.sshfs",
    "securityfs",
    "cgroup",
    "cgroup2",
    "efivarfs",
    "debugfs",
    "mqueue",
    "hugetlbfs",
    "autofs",
    "rpc_pipefs",
    "binfmt_misc",
];

/// A filesystem found on one of the volumes.
#[derive(Debug, Clone)]
pub struct FoundFs {
    /// Index into [`Disks::volumes`].
    pub volume: usize,
    /// For a btrfs subvolume other than the filesystem's default: its path from the top level.
    pub subvolume: Option<String>,
    pub info: FsInfo,
    pub fs: Arc<dyn Filesystem>,
}

/// What kind of operating system a root filesystem holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    Linux,
    Windows,
}

/// A VM's disks: volumes, filesystems, and what could not be read.
#[derive(Debug)]
pub struct Disks {
    /// Every partition, RAID array, logical volume, or whole unpartitioned disk.
    pub volumes: Vec<Volume>,
    pub filesystems: Vec<FoundFs>,
    /// Damage and surprises, each naming its device; reading goes on past them.
    pub problems: Vec<String>,
}

impl Disks {
    /// Opens the images of one VM (in the order the VM attaches them: the first is `/dev/sda`).
    pub fn open(paths: &[PathBuf]) -> Result<Self, Error> {
        let devices = paths
            .iter()
            .map(|path| open_image(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_devices(&devices))
    }

    /// Scans already-open devices.
    pub fn from_devices(devices: &[Arc<dyn BlockDevice>]) -> Self {
        let found = scan(devices);
        let mut disks = Disks {
            volumes: found.volumes,
            filesystems: Vec::new(),
            problems: found.problems,
        };
        for index in 0..disks.volumes.len() {
            let volume = &disks.volumes[index];
            if matches!(volume.type_name.as_str(), "LVM2 PV" | "Linux RAID member") {
                continue;
            }
            let path = volume.path.clone();
            match porthole_fs::open(volume.device.clone()) {
                Ok(fs) => {
                    let info = fs.info();
                    let is_btrfs = info.kind == porthole_fs::FsKind::Btrfs;
                    disks.filesystems.push(FoundFs {
                        volume: index,
                        subvolume: None,
                        info,
                        fs: Arc::from(fs),
                    });
                    if is_btrfs {
                        disks.add_subvolumes(index);
                    }
                }
                Err(porthole_fs::Error::Unrecognized) => {}
                Err(e) => disks.problems.push(format!("{path}: {e}")),
            }
        }
        disks
    }

    /// Every subvolume of the btrfs filesystem on `volume` but its default one (already
    /// added), so an OS installed in a subvolume (`@`, `root`) is found as a root.
    fn add_subvolumes(&mut self, volume: usize) {
        let path = self.volumes[volume].path.clone();
        let opened = BtrfsFs::open(self.volumes[volume].device.clone());
        let listed = opened.and_then(|fs| Ok((fs.list_subvolumes()?, fs)));
        let (subvolumes, btrfs) = match listed {
            Ok(found) => found,
            Err(e) => return self.problems.push(format!("{path}: subvolumes: {e}")),
        };
        for subvolume in subvolumes {
            if subvolume.id == btrfs.subvolume_id() {
                continue;
            }
            match btrfs.open_subvolume(SubvolumeSelector::Id(subvolume.id)) {
                Ok(fs) => self.filesystems.push(FoundFs {
                    volume,
                    subvolume: Some(String::from_utf8_lossy(&subvolume.path).into_owned()),
                    info: fs.info(),
                    fs: Arc::new(fs),
                }),
                Err(e) => self.problems.push(format!(
                    "{path}: subvolume {}: {e}",
                    String::from_utf8_lossy(&subvolume.path)
                )),
            }
        }
    }

    /// The device path of a found filesystem; a btrfs subvolume is named as virt-inspector
    /// names it, `btrfsvol:/dev/sda2/@home`.
    pub fn device_of(&self, found: &FoundFs) -> String {
        let device = self
            .volumes
            .get(found.volume)
            .map_or("?", |v| v.path.as_str());
        match &found.subvolume {
            Some(subvolume) => format!("btrfsvol:{device}/{subvolume}"),
            None => device.to_string(),
        }
    }

    /// The filesystems that hold an operating system's root, with its kind, in device order.
    ///
    /// virt-inspector's test: a Linux root has `/etc` and one of `/bin`, `/etc/fstab`,
    /// `/etc/hosts`; a Windows root has `/Windows/System32` (NTFS lookups ignore case).
    pub fn roots(&self) -> Vec<(usize, RootKind)> {
        let is = |fs: &dyn Filesystem, path: &[u8], kind: FileType| {
            fs.metadata(path).is_ok_and(|m| m.file_type == kind)
        };
        let exists = |fs: &dyn Filesystem, path: &[u8]| fs.metadata(path).is_ok();
        let mut roots = Vec::new();
        for (index, found) in self.filesystems.iter().enumerate() {
            let fs = found.fs.as_ref();
            if is(fs, b"/etc", FileType::Directory)
                && [&b"/bin"[..], b"/etc/fstab", b"/etc/hosts"]
                    .iter()
                    .any(|p| exists(fs, p))
            {
                roots.push((index, RootKind::Linux));
            } else if is(fs, b"/Windows/System32", FileType::Directory) {
                roots.push((index, RootKind::Windows));
            }
        }
        roots
    }

    /// One filesystem alone, mounted at `/` (a data disk, or a root looked at without its fstab).
    pub fn single(&self, filesystem: usize) -> Result<GuestView, Error> {
        let found = self
            .filesystems
            .get(filesystem)
            .ok_or(Error::NoSuchFilesystem { index: filesystem })?;
        Ok(GuestView::new(vec![self.mount(found, "/", b"/".to_vec())]))
    }

    /// The guest whose root filesystem is `root` (an index into [`Disks::filesystems`]), with
    /// everything its `/etc/fstab` mounts that is on these disks. Entries that cannot be
    /// resolved are returned as warnings.
    pub fn guest(&self, root: usize) -> Result<(GuestView, Vec<String>), Error> {
        let alone = self.single(root)?;
        let mut warnings = Vec::new();
        let entries = match alone.read_file(b"/etc/fstab", FSTAB_LIMIT) {
            Ok(text) => {
                let (entries, parse_warnings) = fstab::parse(&text);
                warnings.extend(parse_warnings);
                entries
            }
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => {
                warnings.push(format!("/etc/fstab: {e}"));
                Vec::new()
            }
        };
        let root_fs = &self.filesystems[root];
        let mut mounts = vec![self.mount(root_fs, "/", b"/".to_vec())];
        for entry in &entries {
            if VIRTUAL_FSTYPES.contains(&entry.fstype.as_str())
                || !entry.mountpoint.starts_with('/')
                || entry.options.iter().any(|o| o == "bind")
            {
                continue;
            }
            let Some(index) = self.resolve_spec(&entry.spec) else {
                warnings.push(format!(
                    "fstab line {}: {} ({}) is not on these disks",
                    entry.line, entry.spec, entry.mountpoint
                ));
                continue;
            };
            let mount = match self.mount_entry(&self.filesystems[index], entry) {
                Ok(mount) => mount,
                Err(e) => {
                    warnings.push(format!("fstab line {}: {e}", entry.line));
                    continue;
                }
            };
            if entry.mountpoint == "/" {
                // The root is already there; a subvol= on it picks which subvolume.
                mounts[0] = mount;
            } else {
                mounts.push(mount);
            }
        }
        Ok((GuestView::new(mounts), warnings))
    }

    /// The mount an fstab entry makes of `found`: btrfs `subvolid=` or `subvol=` select a
    /// subvolume (by id, or by path from the top level), as the kernel does.
    fn mount_entry(&self, found: &FoundFs, entry: &FstabEntry) -> Result<Mount, Error> {
        let mut mount = self.mount(found, &entry.mountpoint, b"/".to_vec());
        if found.info.kind != porthole_fs::FsKind::Btrfs {
            return Ok(mount);
        }
        let selector = match (entry.option("subvolid"), entry.option("subvol")) {
            (Some(id), _) => match id.parse() {
                Ok(id) => SubvolumeSelector::Id(id),
                Err(_) => return Ok(mount),
            },
            (None, Some(path)) => SubvolumeSelector::Path(path.trim_start_matches('/').as_bytes()),
            (None, None) => return Ok(mount),
        };
        let fs_error = |source| Error::Fs {
            path: entry.mountpoint.clone(),
            source,
        };
        let device = self.volumes[found.volume].device.clone();
        let btrfs = BtrfsFs::open(device).map_err(fs_error)?;
        let subvolume = if matches!(selector, SubvolumeSelector::Path(b"")) {
            btrfs.open_subvolume(SubvolumeSelector::Id(TOP_LEVEL_SUBVOLUME))
        } else {
            btrfs.open_subvolume(selector)
        };
        mount.fs = Arc::new(subvolume.map_err(fs_error)?);
        // Name the mount as libguestfs names a subvolume mountable (`btrfsvol:/dev/sdb/@home`,
        // as `device_of` names the subvolumes it lists), so mountpoints and filesystems agree.
        if let SubvolumeSelector::Path(path) = selector {
            if !path.is_empty() {
                let path = String::from_utf8_lossy(path);
                mount.device = format!("btrfsvol:{}/{path}", mount.device);
            }
        }
        Ok(mount)
    }

    fn mount(&self, found: &FoundFs, mountpoint: &str, root: Vec<u8>) -> Mount {
        Mount {
            mountpoint: mountpoint.to_string(),
            device: self.device_of(found),
            fstype: found.info.kind.name().to_string(),
            root,
            fs: found.fs.clone(),
        }
    }

    /// The filesystem an fstab device spec names, as the guest's udev would resolve it.
    pub fn resolve_spec(&self, spec: &str) -> Option<usize> {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        // Subvolumes share their filesystem's identity; the default view stands for them all.
        let candidates = || {
            self.filesystems
                .iter()
                .enumerate()
                .filter(|(_, f)| f.subvolume.is_none())
        };
        let by_fs =
            |test: &dyn Fn(&FoundFs) -> bool| candidates().find(|(_, f)| test(f)).map(|(i, _)| i);
        let by_volume = |test: &dyn Fn(&Volume) -> bool| {
            candidates()
                .find(|(_, f)| self.volumes.get(f.volume).is_some_and(test))
                .map(|(i, _)| i)
        };
        let (key, value) = match spec.split_once('=') {
            Some((key, value)) => (key, value.trim_matches('"')),
            None => match disk_by_link(spec) {
                Some(pair) => pair,
                None => ("", spec),
            },
        };
        match key {
            "UUID" => by_fs(&|f| f.info.uuid.as_deref().is_some_and(|u| eq(u, value))),
            "LABEL" => by_fs(&|f| f.info.label.as_deref() == Some(value)),
            "PARTUUID" => by_volume(&|v| {
                v.kind == VolumeKind::Partition
                    && v.partuuid.as_deref().is_some_and(|u| eq(u, value))
            }),
            "PARTLABEL" => {
                by_volume(&|v| v.kind == VolumeKind::Partition && v.name.as_deref() == Some(value))
            }
            _ => {
                let wanted = canonical_device(value);
                by_volume(&|v| {
                    v.path == wanted || v.mapper_path.as_deref() == Some(wanted.as_str())
                })
            }
        }
    }
}

/// `/dev/disk/by-uuid/X` and friends as `(KEY, X)`.
fn disk_by_link(spec: &str) -> Option<(&'static str, &str)> {
    let rest = spec.strip_prefix("/dev/disk/")?;
    [
        ("by-uuid/", "UUID"),
        ("by-label/", "LABEL"),
        ("by-partuuid/", "PARTUUID"),
        ("by-partlabel/", "PARTLABEL"),
    ]
    .iter()
    .find_map(|(prefix, key)| rest.strip_prefix(prefix).map(|v| (*key, v)))
}

/// A guest device name in the form [`porthole_volume::scan`] uses: `/dev/vdb2`, `/dev/hdb2`,
/// `/dev/xvdb2` become `/dev/sdb2` (the disk's letter is its position, whatever the bus), and
/// `/dev/nvme1n1p2` becomes `/dev/sdb2`.
fn canonical_device(device: &str) -> String {
    let Some(name) = device.strip_prefix("/dev/") else {
        return device.to_string();
    };
    for bus in ["xvd", "vd", "hd"] {
        if let Some(rest) = name.strip_prefix(bus) {
            if rest.starts_with(|c: char| c.is_ascii_lowercase()) {
                return format!("/dev/sd{rest}");
            }
        }
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        let (controller, rest) = rest.split_once('n').unwrap_or((rest, ""));
        let partition = rest.split_once('p').map(|(_, p)| p).unwrap_or("");
        if let Ok(index) = controller.parse::<usize>() {
            return format!("{}{partition}", porthole_volume::disk_name(index));
        }
    }
    device.to_string()
}

/// Opens one image file in whatever format it is (raw, qcow2, VMDK, VHDX, with backing chains).
fn open_image(path: &Path) -> Result<Arc<dyn BlockDevice>, Error> {
    porthole_image::open_image(path).map_err(|source| Error::Image {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_map_to_scan_names() {
        assert_eq!(canonical_device("/dev/vda1"), "/dev/sda1");
        assert_eq!(canonical_device("/dev/xvdb"), "/dev/sdb");
        assert_eq!(canonical_device("/dev/hdc3"), "/dev/sdc3");
        assert_eq!(canonical_device("/dev/nvme0n1p2"), "/dev/sda2");
        assert_eq!(canonical_device("/dev/nvme1n1"), "/dev/sdb");
        assert_eq!(
            canonical_device("/dev/mapper/vg-root"),
            "/dev/mapper/vg-root"
        );
        assert_eq!(canonical_device("/dev/vg/root"), "/dev/vg/root");
        assert_eq!(canonical_device("/dev/md0"), "/dev/md0");
        assert_eq!(disk_by_link("/dev/disk/by-uuid/abc"), Some(("UUID", "abc")));
        assert_eq!(disk_by_link("/dev/sda"), None);
    }
}
