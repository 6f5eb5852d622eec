//! Block devices: guest-get-disks (/sys/block) and guest-get-diskstats (/proc/diskstats), as
//! qemu-ga 7.2 reports them on Linux.
//!
//! guest-get-disks lists each non-empty disk of /sys/block and its partitions, newest first (qemu-ga
//! prepends): the device node as name, the disks it is built on (`slaves`) as dependencies, the
//! address of physical disks, and device-mapper's name as alias.

use super::diskaddr::{self, UdevDevice};
use super::sysfs::{leading_numbers, os_error, read_text, TABLE_LIMIT};
use super::{blocking, NoArgs};
use crate::agent::Agent;
use porthole_proto::commands::{DiskInfo, DiskStats, DiskStatsInfo};
use porthole_proto::CommandError;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

pub async fn get_disks(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| super::to_value(list_disks(Path::new("/sys/block"))?)).await
}

pub fn list_disks(block: &Path) -> Result<Vec<DiskInfo>, CommandError> {
    let entries = std::fs::read_dir(block)
        .map_err(|e| os_error(format!("Can't open directory \"{}\"", block.display()), &e))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let disk_dir = block.join(&name);
        match read_text(&disk_dir.join("size"), 4096) {
            Ok(size) if size != "0\n" => {}
            _ => continue,
        }
        let Some(udev) = UdevDevice::open(&disk_dir) else {
            continue;
        };
        let Some(dev_name) = udev.devnode() else {
            continue;
        };
        let is_virtual = std::fs::canonicalize(&disk_dir)
            .map(|p| p.to_string_lossy().contains("/devices/virtual/"))
            .unwrap_or(true);
        let address = if is_virtual {
            None
        } else {
            diskaddr::resolve(&disk_dir)
                .ok()
                .and_then(|(_, disks)| disks.into_iter().next())
        };
        out.push(DiskInfo {
            name: dev_name.clone(),
            partition: false,
            dependencies: dependencies(&disk_dir),
            address,
            alias: udev.property("DM_NAME"),
        });
        out.extend(partitions(&disk_dir, &name, &dev_name));
    }
    // qemu-ga prepends every entry.
    out.reverse();
    Ok(out)
}

/// The device nodes of `slaves`, newest first; `None` without a `slaves` directory.
fn dependencies(disk_dir: &Path) -> Option<Vec<String>> {
    let entries = std::fs::read_dir(disk_dir.join("slaves")).ok()?;
    let mut deps: Vec<String> = entries
        .flatten()
        .filter_map(|e| UdevDevice::open(&e.path())?.devnode())
        .collect();
    deps.reverse();
    Some(deps)
}

/// The partitions of a disk: subdirectories named `<disk><N>` or `<disk>p<N>`.
fn partitions(disk_dir: &Path, disk: &str, disk_dev: &str) -> Vec<DiskInfo> {
    let Ok(entries) = std::fs::read_dir(disk_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(disk).unwrap_or("");
            let rest = rest.strip_prefix('p').unwrap_or(rest);
            rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let name = UdevDevice::open(&e.path())?.devnode()?;
            Some(DiskInfo {
                name,
                partition: true,
                dependencies: Some(vec![disk_dev.to_string()]),
                address: None,
                alias: None,
            })
        })
        .collect()
}

pub async fn get_diskstats(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let path = "/proc/diskstats";
        let text = read_text(Path::new(path), TABLE_LIMIT)
            .map_err(|e| os_error(format!("open(\"{path}\")"), &e))?;
        super::to_value(parse_diskstats(&text))
    })
    .await
}

/// /proc/diskstats: `major minor name` and 4 (old partitions), 11, 15 or 17 counters.
/// Counters qemu-ga reads as C `unsigned int` keep their low 32 bits.
pub fn parse_diskstats(text: &str) -> Vec<DiskStatsInfo> {
    text.lines().filter_map(parse_diskstats_line).collect()
}

fn parse_diskstats_line(line: &str) -> Option<DiskStatsInfo> {
    let mut tokens = line.split_whitespace();
    let major = tokens.next().and_then(super::sysfs::parse_u64)?;
    let minor = tokens.next().and_then(super::sysfs::parse_u64)?;
    let name = tokens.next()?;
    let v = leading_numbers(tokens.take(17));
    // qemu-ga's field count includes major, minor and name.
    let fields = v.len() + 3;
    if fields < 7 {
        return None;
    }
    let n = |i: usize| v.get(i).copied();
    let u32 = |i: usize| n(i).map(|x| x & 0xffff_ffff);
    let mut stats = DiskStats::default();
    if fields == 7 {
        stats.read_ios = n(0);
        stats.read_sectors = n(1);
        stats.write_ios = n(2);
        stats.write_sectors = n(3);
    }
    if fields >= 14 {
        stats.read_ios = n(0);
        stats.read_merges = n(1);
        stats.read_sectors = n(2);
        stats.read_ticks = n(3);
        stats.write_ios = n(4);
        stats.write_merges = n(5);
        stats.write_sectors = n(6);
        stats.write_ticks = u32(7);
        stats.ios_pgr = u32(8);
        stats.total_ticks = u32(9);
        stats.weight_ticks = u32(10);
    }
    if fields >= 18 {
        stats.discard_ios = n(11);
        stats.discard_merges = n(12);
        stats.discard_sectors = n(13);
        stats.discard_ticks = u32(14);
    }
    if fields >= 20 {
        stats.flush_ios = n(15);
        stats.flush_ticks = u32(16);
    }
    Some(DiskStatsInfo {
        name: name.to_string(),
        major: major & 0xffff_ffff,
        minor: minor & 0xffff_ffff,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_generations() {
        let text = "   7       0 loop0 396 0 18614 52 60 0 10605 162 0 76 237 0 0 0 0 13 22\n\
                    254 0 vda 1 2 3 4 5 6 7 4294967297 9 10 11\n\
                    8 1 sda1 10 20 30 40\n\
                    8 2 sda2 10 20\n\
                    x y z\n";
        let s = parse_diskstats(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].stats.flush_ticks, Some(22));
        assert_eq!(s[0].stats.read_sectors, Some(18614));
        assert_eq!(s[1].stats.write_ticks, Some(1), "unsigned int wraps");
        assert_eq!(s[1].stats.discard_ios, None);
        assert_eq!(s[2].stats.write_sectors, Some(40));
        assert_eq!(s[2].stats.read_merges, None);
    }
}
