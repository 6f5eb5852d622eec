//! [`scan`]: every partition and logical volume on a set of whole disks, the way a Linux guest
//! would name them (`/dev/sda1`, `/dev/VG/LV`).

use crate::bytes::Dev;
use crate::error::Error;
use crate::lvm::{self, PhysicalVolume};
use crate::md;
use crate::partition::read_partition_table;

/// What a found volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// A whole disk without a partition table (its content is a filesystem or an LVM PV).
    Disk,
    Partition,
    /// A Linux md RAID1 array, read through one of its members.
    MdArray,
    LogicalVolume,
}

/// One device a filesystem may live on.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Linux device path: `/dev/sda`, `/dev/sda1`, `/dev/VG/LV`.
    pub path: String,
    /// `/dev/mapper/VG-LV` for logical volumes.
    pub mapper_path: Option<String>,
    pub kind: VolumeKind,
    pub size: u64,
    /// The partition type name ("Linux filesystem"), "LVM2 PV", "Linux RAID member",
    /// "Linux RAID1", "LVM2 LV" or "unknown".
    pub type_name: String,
    /// PARTUUID for partitions (as blkid prints it), the LV UUID for logical volumes.
    pub partuuid: Option<String>,
    /// GPT partition name, or the LV name.
    pub name: Option<String>,
    /// For partitions: the first byte on their disk (Windows' `MountedDevices` names MBR
    /// partitions by it).
    pub start: Option<u64>,
    pub device: Dev,
}

/// What [`scan`] found, and what it could not read (each problem names its device).
#[derive(Debug, Default)]
pub struct Scan {
    pub volumes: Vec<Volume>,
    pub volume_groups: Vec<lvm::VolumeGroup>,
    pub problems: Vec<String>,
}

/// What the scan collects on its way: PVs and md members, assembled after all disks are read.
#[derive(Default)]
struct Found {
    pvs: Vec<PhysicalVolume>,
    md: Vec<(md::MdMember, Dev)>,
}

/// Linux's disk naming: sda..sdz, sdaa...
pub fn disk_name(index: usize) -> String {
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    format!("/dev/sd{}", String::from_utf8_lossy(&letters))
}

/// Finds every partition of every disk and every LV of the volume groups whose PVs are among
/// the disks or their partitions. Damage is reported in `problems`, never a panic, and one
/// damaged disk does not hide the others.
pub fn scan(disks: &[Dev]) -> Scan {
    let mut out = Scan::default();
    let mut found = Found::default();
    for (i, disk) in disks.iter().enumerate() {
        scan_disk(&disk_name(i), disk, &mut out, &mut found);
    }
    add_md_arrays(&mut out, &mut found);
    match lvm::assemble_pvs(&found.pvs) {
        Ok(groups) => {
            for vg in &groups {
                add_lvs(vg, &mut out);
            }
            for pv in &found.pvs {
                let uuid = &pv.label.pv_uuid;
                if !groups.iter().any(|g| g.pvs.iter().any(|p| &p.uuid == uuid)) {
                    out.problems.push(format!(
                        "LVM physical volume {uuid} belongs to no volume group found \
                         (it has no metadata copy and no PV with one lists it)"
                    ));
                }
            }
            out.volume_groups = groups;
        }
        Err(e) => out.problems.push(format!("LVM: {e}")),
    }
    out
}

fn scan_disk(path: &str, disk: &Dev, out: &mut Scan, found: &mut Found) {
    match read_partition_table(disk) {
        Ok(Some(table)) => {
            out.problems
                .extend(table.warnings.iter().map(|w| format!("{path}: {w}")));
            for p in &table.partitions {
                let ppath = format!("{path}{}", p.number);
                probe_member(&ppath, &p.device, out, found);
                out.volumes.push(Volume {
                    path: ppath,
                    mapper_path: None,
                    kind: VolumeKind::Partition,
                    size: p.size(),
                    type_name: p.kind().name().to_string(),
                    partuuid: Some(p.partuuid.clone()),
                    name: p.name.clone(),
                    start: p.start_lba.checked_mul(p.sector_size),
                    device: p.device.clone(),
                });
            }
        }
        Ok(None) => {
            let type_name = probe_member(path, disk, out, found).unwrap_or("unknown");
            out.volumes.push(Volume {
                path: path.to_string(),
                mapper_path: None,
                kind: VolumeKind::Disk,
                size: disk.size(),
                type_name: type_name.to_string(),
                partuuid: None,
                name: None,
                start: None,
                device: disk.clone(),
            });
        }
        Err(e) => out.problems.push(format!("{path}: {e}")),
    }
}

/// Collects the device as an md member or else as an LVM PV; returns what it is. md comes
/// first: a 1.0 member starts with the array's data, so an LVM label inside the array would
/// also be seen on the member.
fn probe_member(path: &str, dev: &Dev, out: &mut Scan, found: &mut Found) -> Option<&'static str> {
    match md::probe(dev) {
        Ok(Some(member)) => {
            found.md.push((member, dev.clone()));
            return Some("Linux RAID member");
        }
        Ok(None) => {}
        Err(e) => out.problems.push(format!("{path}: {e}")),
    }
    probe_pv(path, dev, out, found).then_some("LVM2 PV")
}

/// Collects the device as a PV if it carries an LVM label; returns whether it does.
fn probe_pv(path: &str, dev: &Dev, out: &mut Scan, found: &mut Found) -> bool {
    match lvm::probe(dev) {
        Ok(Some(pv)) => {
            found.pvs.push(pv);
            true
        }
        Ok(None) => false,
        Err(e) => {
            out.problems.push(format!("{path}: {e}"));
            !matches!(e, Error::Device(_))
        }
    }
}

/// One volume per md array (read through the member with the most recent event count), and
/// the arrays probed for LVM PVs.
fn add_md_arrays(out: &mut Scan, found: &mut Found) {
    let mut members = std::mem::take(&mut found.md);
    // Newest first within each array, arrays in UUID order.
    members.sort_by(|a, b| {
        a.0.array_uuid
            .cmp(&b.0.array_uuid)
            .then(b.0.events.cmp(&a.0.events))
    });
    members.dedup_by(|a, b| a.0.array_uuid == b.0.array_uuid);
    for (member, dev) in members {
        let path = member.dev_path();
        match md::raid1_device(&dev, &member) {
            Ok(array) => {
                probe_pv(&path, &array, out, found);
                out.volumes.push(Volume {
                    path,
                    mapper_path: None,
                    kind: VolumeKind::MdArray,
                    size: array.size(),
                    type_name: "Linux RAID1".to_string(),
                    partuuid: None,
                    name: Some(member.name.clone()),
                    start: None,
                    device: array,
                });
            }
            Err(e) => out.problems.push(format!("{path}: {e}")),
        }
    }
}

fn add_lvs(vg: &lvm::VolumeGroup, out: &mut Scan) {
    for pv in vg.missing_pvs() {
        out.problems.push(format!(
            "LVM volume group {}: physical volume {} (uuid {}) is missing",
            vg.name, pv.name, pv.uuid
        ));
    }
    let mut lvs = vg.logical_volumes();
    lvs.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, lv) in lvs {
        match lv {
            Ok(lv) if lv.visible => out.volumes.push(Volume {
                path: lv.dev_path(),
                mapper_path: Some(lv.mapper_path()),
                kind: VolumeKind::LogicalVolume,
                size: porthole_image::BlockDevice::size(&lv),
                type_name: "LVM2 LV".to_string(),
                partuuid: Some(lv.uuid.clone()),
                name: Some(name),
                start: None,
                device: lv.into(),
            }),
            Ok(_) => {}
            Err(e) => out.problems.push(format!("/dev/{}/{name}: {e}", vg.name)),
        }
    }
}
