//! A Windows root read as virt-inspector reads it, through its NTFS filesystem (whose lookups
//! ignore case, as Windows' do): the system root directory, the architecture of
//! `System32\cmd.exe`, and the SOFTWARE and SYSTEM hives of `System32\config`.
//!
//! Every problem (a missing or damaged hive, an unreadable `cmd.exe`) is a warning on the
//! operating system; what could be read is still reported.

use std::collections::HashSet;

use porthole_guest::GuestView;

use super::hive::MAX_HIVE_BYTES;
use super::{map_drive_letters, pe, read_software, read_system, PartitionInfo};
use crate::packages::windows::parse_software;
use crate::report::{DriveMapping, OperatingSystem};

/// The system root's name; virt-inspector's root test (and [`porthole_guest::Disks::roots`])
/// looks for `/Windows/System32`.
const SYSTEMROOT: &str = "windows";

/// Fills `os` with what the Windows root in `view` says. `partitions` are the partitions on
/// the disks, to resolve drive letters; `applications` reads the Uninstall keys.
pub(crate) fn inspect(
    view: &GuestView,
    partitions: &[PartitionInfo],
    applications: bool,
    os: &mut OperatingSystem,
) {
    os.name = "windows".to_string();
    os.distro = Some("windows".to_string());
    let Some(systemroot) = systemroot(view, &mut os.warnings) else {
        return;
    };
    os.arch = arch(view, &systemroot, &mut os.warnings);
    let software = hive(view, &systemroot, "SOFTWARE", &mut os.warnings);
    if let Some(bytes) = &software {
        let read = read_software(bytes);
        add_warnings(&mut os.warnings, read.warnings);
        let version = read.facts;
        os.product_name = version.product_name;
        os.product_variant = version.product_variant;
        os.major_version = version.major_version;
        os.minor_version = version.minor_version;
        os.osinfo = version.osinfo;
    }
    if applications {
        let parsed = software.as_deref().map(parse_software).unwrap_or_default();
        add_warnings(&mut os.warnings, parsed.warnings);
        os.applications = Some(parsed.applications);
    }
    drop(software);
    if let Some(bytes) = hive(view, &systemroot, "SYSTEM", &mut os.warnings) {
        let read = read_system(&bytes);
        add_warnings(&mut os.warnings, read.warnings);
        let system = read.facts;
        os.windows_current_control_set = system.control_set;
        os.hostname = system.hostname;
        let mut mappings: Vec<DriveMapping> = map_drive_letters(&system.drives, partitions)
            .into_iter()
            .map(|(letter, device)| DriveMapping {
                name: letter.to_string(),
                device,
            })
            .collect();
        mappings.sort_by(|a, b| a.name.cmp(&b.name));
        os.drive_mappings = mappings;
    }
    os.windows_systemroot = Some(systemroot);
}

/// `/Windows` as the root directory spells it.
fn systemroot(view: &GuestView, warnings: &mut Vec<String>) -> Option<String> {
    let entries = match view.read_dir(b"/") {
        Ok(entries) => entries,
        Err(e) => {
            warnings.push(format!("/: {e}"));
            return None;
        }
    };
    let found = entries.iter().find(|e| {
        e.file_type == porthole_fs::FileType::Directory
            && e.name.eq_ignore_ascii_case(SYSTEMROOT.as_bytes())
    });
    match found {
        Some(entry) => Some(format!("/{}", String::from_utf8_lossy(&entry.name))),
        None => {
            warnings.push("no /Windows directory in the root's listing".into());
            None
        }
    }
}

/// The architecture of `System32\cmd.exe`.
fn arch(view: &GuestView, systemroot: &str, warnings: &mut Vec<String>) -> Option<String> {
    let path = format!("{systemroot}/System32/cmd.exe");
    let mut header = vec![0u8; pe::HEADER_BYTES];
    let read = view.read_at(path.as_bytes(), 0, &mut header).map(|n| {
        header.truncate(n);
        pe::arch_of(&header)
    });
    match read {
        Ok(Ok(arch)) => Some(arch.to_string()),
        Ok(Err(e)) => {
            warnings.push(format!("{path}: {e}"));
            None
        }
        Err(e) => {
            warnings.push(format!("{e} (the architecture is read from it)"));
            None
        }
    }
}

/// The bytes of the hive `name` in `System32\config`, `None` (with a warning) if unreadable.
fn hive(
    view: &GuestView,
    systemroot: &str,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let path = format!("{systemroot}/System32/config/{name}");
    match view.read_file(path.as_bytes(), MAX_HIVE_BYTES) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            warnings.push(format!("{e} (the {name} hive)"));
            None
        }
    }
}

/// Adds `new` to `warnings`, leaving out those already there: the version and application
/// readers each open the SOFTWARE hive and would report its damage twice. (A set, not a
/// scan per warning: a hostile hive can yield a warning for each of 2^18 subkeys.)
fn add_warnings(warnings: &mut Vec<String>, new: Vec<String>) {
    let mut seen: HashSet<String> = warnings.iter().cloned().collect();
    for warning in new {
        if seen.insert(warning.clone()) {
            warnings.push(warning);
        }
    }
}
