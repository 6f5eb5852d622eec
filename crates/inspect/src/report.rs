//! The inspection report: what [`crate::inspect`] found, in porthole's native form (serialized
//! as `porthole inspect --format json`). Field names follow virt-inspector's elements so the
//! two read alike.

use serde::Serialize;

use crate::linux::accounts::Accounts;
use crate::linux::network::Interface;
use crate::linux::services::Service;
use crate::linux::system::SystemFacts;
use crate::packages::Application;

/// Everything found on one VM's disks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub operating_systems: Vec<OperatingSystem>,
    /// Problems with the disks themselves (damaged tables, unreadable volumes).
    pub warnings: Vec<String>,
}

/// One operating system (one root filesystem).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OperatingSystem {
    /// The root filesystem's device (`/dev/sda2`, `/dev/vg/root`, `btrfsvol:/dev/sda2/@`).
    pub root: String,
    /// `linux` or `windows`.
    pub name: String,
    pub distro: Option<String>,
    pub product_name: Option<String>,
    pub product_variant: Option<String>,
    pub major_version: u32,
    pub minor_version: u32,
    pub arch: Option<String>,
    pub hostname: Option<String>,
    pub package_format: Option<String>,
    pub package_management: Option<String>,
    /// Windows: the system root directory as its case is on the root filesystem (`/Windows`).
    pub windows_systemroot: Option<String>,
    /// Windows: the control set the SYSTEM hive's `Select\Current` names (`ControlSet001`).
    pub windows_current_control_set: Option<String>,
    /// libosinfo's short id (`debian12`, `win2k22`).
    pub osinfo: Option<String>,
    pub mountpoints: Vec<Mountpoint>,
    pub filesystems: Vec<FilesystemFact>,
    /// Windows: drive letters (`MountedDevices`) of partitions found on the disks, by letter.
    pub drive_mappings: Vec<DriveMapping>,
    /// `None` when applications were not asked for.
    pub applications: Option<Vec<Application>>,
    /// Linux: services started at boot (systemd, OpenRC, SysV links). `None` for Windows.
    pub services: Option<Vec<Service>>,
    /// Linux: users, administrator groups and sudo rules. `None` for Windows.
    pub accounts: Option<Accounts>,
    /// Linux: configured interfaces from netplan, ifupdown, NetworkManager, networkd and
    /// ifcfg files. `None` for Windows.
    pub network: Option<Vec<Interface>>,
    /// Linux: timezone, kernels, SELinux, AppArmor, cloud-init, guest agents. `None` for
    /// Windows.
    pub system: Option<SystemFacts>,
    /// What could not be read about this OS; the rest of the report still stands.
    pub warnings: Vec<String>,
}

/// A mount the OS's fstab makes, of a device found on the disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mountpoint {
    pub device: String,
    pub mountpoint: String,
}

/// A filesystem on the disks: what `blkid` would say of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilesystemFact {
    pub device: String,
    #[serde(rename = "type")]
    pub fstype: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

/// A Windows drive letter and the device of the partition it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriveMapping {
    /// The letter, upper case (`C`).
    pub name: String,
    pub device: String,
}
