//! Where a block device sits, from its sysfs path: qemu-ga 7.2's disk-address resolution
//! (shared by guest-get-fsinfo and guest-get-disks).
//!
//! The device's real sysfs path names its controller: `/devices/pci…/DDDD:BB:SS.F/…` for PCI
//! (the driver of the first PCI function with a known storage driver decides the bus type),
//! `/devices/css…` for s390 channel devices, `…/virtio…` for virtio-mmio. `target…/H:C:T:L`
//! and `host…`/`ata…` give the SCSI/ATA coordinates. Device-mapper and other virtual devices
//! are followed through their `slaves`. The device node and serial come from what udev
//! publishes: `DEVNAME` in the `uevent` file and `ID_SERIAL` in udev's database.

use super::sysfs::{os_error, read_text};
use porthole_proto::commands::{CcwAddress, DiskAddress, PciAddress};
use porthole_proto::CommandError;
use std::path::{Path, PathBuf};

/// Drivers whose PCI function is the disk controller.
const STORAGE_DRIVERS: &[&str] = &["ata_piix", "sym53c8xx", "virtio-pci", "ahci", "nvme"];
/// Device-mapper stacks are shallow; this bounds a (theoretical) cycle of `slaves` links.
const MAX_DEPTH: usize = 16;
/// qemu-ga looks at the first eight `hostN`/`ataN` siblings.
const MAX_HOSTS: usize = 8;
/// Cap for a sysfs attribute or a udev database record.
const ATTR_LIMIT: u64 = 64 << 10;

/// The device's name (basename of its real sysfs path) and disk addresses, as qemu-ga's
/// build_guest_fsinfo_for_device computes them. Errors are qemu-ga's (realpath, opendir).
pub fn resolve(devpath: &Path) -> Result<(String, Vec<DiskAddress>), CommandError> {
    let mut name = None;
    let mut disks = Vec::new();
    resolve_into(devpath, &mut name, &mut disks, 0)?;
    // qemu-ga prepends each disk it finds.
    disks.reverse();
    Ok((name.unwrap_or_default(), disks))
}

fn resolve_into(
    devpath: &Path,
    name: &mut Option<String>,
    disks: &mut Vec<DiskAddress>,
    depth: usize,
) -> Result<(), CommandError> {
    let syspath = std::fs::canonicalize(devpath)
        .map_err(|e| os_error(format!("realpath(\"{}\")", devpath.display()), &e))?;
    if name.is_none() {
        *name = Some(basename(&syspath));
    }
    let text = syspath.to_string_lossy().into_owned();
    if text.contains("/devices/virtual/block/") {
        if depth < MAX_DEPTH {
            resolve_slaves(&syspath, name, disks, depth)?;
        }
        return Ok(());
    }
    disks.extend(real_device(&syspath)?);
    Ok(())
}

fn basename(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_string())
}

fn resolve_slaves(
    syspath: &Path,
    name: &mut Option<String>,
    disks: &mut Vec<DiskAddress>,
    depth: usize,
) -> Result<(), CommandError> {
    let dir = syspath.join("slaves");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(os_error(format!("opendir(\"{}\")", dir.display()), &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| os_error(format!("readdir(\"{}\")", dir.display()), &e))?;
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            resolve_into(&dir.join(entry.file_name()), name, disks, depth + 1)?;
        }
    }
    Ok(())
}

/// An address with nothing known yet, as qemu-ga starts one.
fn unknown_disk() -> DiskAddress {
    DiskAddress {
        pci_controller: PciAddress::INVALID,
        bus_type: "unknown".into(),
        bus: 0,
        target: 0,
        unit: 0,
        serial: None,
        dev: None,
        ccw_address: None,
    }
}

/// A physical device's address; `None` when nothing at all is known about it.
fn real_device(syspath: &Path) -> Result<Option<DiskAddress>, CommandError> {
    let mut disk = unknown_disk();
    let udev = UdevDevice::open(syspath);
    disk.dev = udev.as_ref().and_then(UdevDevice::devnode);
    disk.serial = udev
        .as_ref()
        .and_then(|u| u.property("ID_SERIAL"))
        .filter(|s| !s.is_empty());
    let text = syspath.to_string_lossy().into_owned();
    let has_hwinf = if text.contains("/devices/pci") {
        pci_device(&text, &mut disk)?
    } else if text.contains("/devices/css") {
        ccw_device(&text, &mut disk)
    } else if text.contains("/virtio") {
        nonpci_virtio(&text, &mut disk)
    } else {
        false
    };
    Ok((has_hwinf || disk.dev.is_some() || disk.serial.is_some()).then_some(disk))
}

/// A tiny sscanf: hex and decimal numbers, literal characters, skipped tokens.
struct Scan<'a> {
    rest: &'a str,
}

impl<'a> Scan<'a> {
    fn new(rest: &'a str) -> Self {
        Self { rest }
    }
    fn digits(&mut self, radix: u32) -> Option<u32> {
        let len = self
            .rest
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(self.rest.len());
        let (number, rest) = self.rest.split_at(len);
        let value = u32::from_str_radix(number, radix).ok()?;
        self.rest = rest;
        Some(value)
    }
    fn hex(&mut self) -> Option<u32> {
        self.digits(16)
    }
    fn dec(&mut self) -> Option<u32> {
        self.digits(10)
    }
    fn lit(&mut self, c: char) -> Option<()> {
        self.rest = self.rest.strip_prefix(c)?;
        Some(())
    }
}

/// `H:C:T/H:C:T:L` after `/target`: the (channel, target, lun) of the SCSI device.
fn scsi_target(syspath: &str) -> Option<[u32; 3]> {
    let at = syspath.find("/target")?;
    let mut s = Scan::new(syspath.get(at + 7..)?);
    s.dec()?;
    s.lit(':')?;
    s.dec()?;
    s.lit(':')?;
    s.dec()?;
    s.lit('/')?;
    s.dec()?;
    s.lit(':')?;
    let a = s.dec()?;
    s.lit(':')?;
    let b = s.dec()?;
    s.lit(':')?;
    let c = s.dec()?;
    Some([a, b, c])
}

/// `/DDDD:BB:SS.F` at the start of `s`.
fn pci_function(s: &mut Scan) -> Option<[u32; 4]> {
    s.lit('/')?;
    let domain = s.hex()?;
    s.lit(':')?;
    let bus = s.hex()?;
    s.lit(':')?;
    let slot = s.hex()?;
    s.lit('.')?;
    let function = s.hex()?;
    Some([domain, bus, slot, function])
}

fn driver_of(path: &str) -> Option<String> {
    let link = std::fs::read_link(format!("{path}/driver")).ok()?;
    Some(basename(&link))
}

fn pci_device(syspath: &str, disk: &mut DiskAddress) -> Result<bool, CommandError> {
    let Some(at) = syspath.find("/devices/pci") else {
        return Ok(false);
    };
    // `/devices/pciDDDD:BB` then the functions down to the controller.
    let mut s = Scan::new(syspath.get(at + 12..).unwrap_or(""));
    let root = (|| {
        s.hex()?;
        s.lit(':')?;
        s.hex()?;
        pci_function(&mut s)
    })();
    let Some(mut pci) = root else {
        return Ok(false);
    };
    let driver = loop {
        let end = syspath.len() - s.rest.len();
        let driver = driver_of(syspath.get(..end).unwrap_or(syspath));
        if let Some(d) = driver.filter(|d| STORAGE_DRIVERS.contains(&d.as_str())) {
            break d;
        }
        match pci_function(&mut s) {
            Some(next) => pci = next,
            None => return Ok(false),
        }
    };
    let target = scsi_target(syspath);
    let (host_at, ata) = match syspath.find("/ata") {
        Some(at) => (Some((at, at + 4)), true),
        None => (syspath.find("/host").map(|at| (at, at + 5)), false),
    };
    let mut host = None;
    let mut hosts = Vec::new();
    if let Some((at, number_at)) = host_at {
        if let Some(h) = Scan::new(syspath.get(number_at..).unwrap_or("")).dec() {
            host = Some(h);
            hosts = sibling_hosts(syspath.get(..at).unwrap_or(""), ata)?;
        }
    }
    let [domain, bus, slot, function] = pci.map(i64::from);
    disk.pci_controller = PciAddress {
        domain,
        bus,
        slot,
        function,
    };
    let host_index = || host.and_then(|h| hosts.iter().position(|x| *x == h));
    match driver.as_str() {
        "ata_piix" => {
            // One host per IDE bus, target*:0:<unit>:0.
            let (Some(t), Some(i)) = (target, host_index()) else {
                return Ok(false);
            };
            disk.bus_type = "ide".into();
            disk.bus = i as i64;
            disk.unit = i64::from(t[1]);
        }
        "sym53c8xx" => {
            let Some(t) = target else { return Ok(false) };
            disk.bus_type = "scsi".into();
            disk.unit = i64::from(t[1]);
        }
        "virtio-pci" => match target {
            // virtio-scsi: target*:0:0:<unit>.
            Some(t) => {
                disk.bus_type = "scsi".into();
                disk.unit = i64::from(t[2]);
            }
            // virtio-blk: one disk per device.
            None => disk.bus_type = "virtio".into(),
        },
        "ahci" => {
            // One host per unit.
            let (Some(_), Some(i)) = (target, host_index()) else {
                return Ok(false);
            };
            disk.bus_type = "sata".into();
            disk.unit = i as i64;
        }
        _ => disk.bus_type = "nvme".into(),
    }
    Ok(true)
}

/// The numbers of the first eight `ataN` / `hostN` entries of `dir`, sorted.
fn sibling_hosts(dir: &str, ata: bool) -> Result<Vec<u32>, CommandError> {
    let prefix = if ata { "ata" } else { "host" };
    let entries =
        std::fs::read_dir(dir).map_err(|e| os_error(format!("opendir(\"{dir}\")"), &e))?;
    let mut hosts: Vec<u32> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Scan::new(name.strip_prefix(prefix)?).dec()
        })
        .take(MAX_HOSTS)
        .collect();
    hosts.sort_unstable();
    Ok(hosts)
}

fn ccw_device(syspath: &str, disk: &mut DiskAddress) -> bool {
    let Some(at) = syspath.find("/devices/css") else {
        return false;
    };
    let rest = syspath.get(at + 12..).unwrap_or("");
    let mut s = Scan::new(rest);
    let parsed = (|| {
        s.hex()?;
        s.lit('/')?;
        let cssid = s.hex()?;
        s.lit('.')?;
        let ssid = s.hex()?;
        s.lit('.')?;
        let subchno = s.hex()?;
        s.lit('/')?;
        s.hex()?;
        s.lit('.')?;
        s.hex()?;
        s.lit('.')?;
        let devno = s.hex()?;
        Some([cssid, ssid, subchno, devno].map(i64::from))
    })();
    let Some([cssid, ssid, subchno, devno]) = parsed else {
        return false;
    };
    disk.ccw_address = Some(CcwAddress {
        cssid,
        ssid,
        subchno,
        devno,
    });
    if rest.contains("/virtio") {
        nonpci_virtio(syspath, disk);
    }
    true
}

fn nonpci_virtio(syspath: &str, disk: &mut DiskAddress) -> bool {
    match scsi_target(syspath) {
        Some([bus, target, unit]) => {
            disk.bus_type = "scsi".into();
            disk.bus = i64::from(bus);
            disk.target = i64::from(target);
            disk.unit = i64::from(unit);
        }
        None => disk.bus_type = "virtio".into(),
    }
    true
}

/// What libudev would say about a device: its `uevent` properties and udev's database record.
pub struct UdevDevice {
    uevent: String,
    db: String,
}

impl UdevDevice {
    /// `None` when the path is not a device (no `uevent`), as udev_device_new_from_syspath.
    pub fn open(syspath: &Path) -> Option<Self> {
        let real: PathBuf = std::fs::canonicalize(syspath).ok()?;
        let uevent = read_text(&real.join("uevent"), ATTR_LIMIT).ok()?;
        let dev = read_text(&real.join("dev"), ATTR_LIMIT).unwrap_or_default();
        let class = if real.to_string_lossy().contains("/block/") {
            'b'
        } else {
            'c'
        };
        let db = match dev.trim() {
            "" => String::new(),
            id => read_text(
                Path::new(&format!("/run/udev/data/{class}{id}")),
                ATTR_LIMIT,
            )
            .unwrap_or_default(),
        };
        Some(Self { uevent, db })
    }

    /// `/dev/` + the kernel's DEVNAME.
    pub fn devnode(&self) -> Option<String> {
        let name = self
            .uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVNAME="))?;
        Some(if name.starts_with('/') {
            name.to_string()
        } else {
            format!("/dev/{name}")
        })
    }

    /// A property from udev's database (`E:KEY=VALUE`), else from `uevent`.
    pub fn property(&self, key: &str) -> Option<String> {
        let find = |text: &str, prefix: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(prefix)?
                    .strip_prefix(key)?
                    .strip_prefix('=')
                    .map(str::to_string)
            })
        };
        find(&self.db, "E:").or_else(|| find(&self.uevent, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scsi_targets() {
        assert_eq!(
            scsi_target(
                "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:1/0:0:1:7/block/sda"
            ),
            Some([0, 1, 7])
        );
        assert_eq!(
            scsi_target("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"),
            None
        );
        assert_eq!(scsi_target("/target"), None);
    }

    #[test]
    fn ccw_paths() {
        let mut disk = unknown_disk();
        assert!(ccw_device(
            "/sys/devices/css0/0.0.0002/0.0.0009/virtio2/block/vda",
            &mut disk
        ));
        assert_eq!(disk.ccw_address.map(|c| (c.subchno, c.devno)), Some((2, 9)));
        assert_eq!(disk.bus_type, "virtio");
        assert!(!ccw_device("/sys/devices/css0/zz", &mut disk));
    }
}
