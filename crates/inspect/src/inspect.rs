//! [`inspect`]: every OS root on a VM's disks, its facts and (optionally) its applications.

use porthole_guest::{Disks, GuestView, RootKind};

use crate::linux::{accounts, distro, elf, network, services, system};
use crate::packages::{apk, dpkg, pacman, rpm, Parsed};
use crate::report::{FilesystemFact, Mountpoint, OperatingSystem, Report};
use crate::windows::{self, PartitionInfo};

/// What to collect.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Read the package databases (virt-inspector's `--no-applications` turns this off).
    pub applications: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { applications: true }
    }
}

/// Inspects every operating system on `disks`.
pub fn inspect(disks: &Disks, options: Options) -> Report {
    let filesystems: Vec<FilesystemFact> = disks
        .filesystems
        .iter()
        .map(|f| FilesystemFact {
            device: disks.device_of(f),
            fstype: f.info.kind.name().to_string(),
            label: f.info.label.clone(),
            uuid: f.info.uuid.clone(),
        })
        .collect();
    let mut report = Report {
        warnings: disks.problems.clone(),
        ..Report::default()
    };
    for (root, kind) in disks.roots() {
        let mut os = OperatingSystem {
            root: disks.device_of(&disks.filesystems[root]),
            filesystems: filesystems.clone(),
            ..OperatingSystem::default()
        };
        match disks.guest(root) {
            Ok((view, warnings)) => {
                os.warnings.extend(warnings);
                os.mountpoints = view
                    .mounts()
                    .map(|m| Mountpoint {
                        device: m.device.clone(),
                        mountpoint: m.mountpoint.clone(),
                    })
                    .collect();
                match kind {
                    RootKind::Linux => inspect_linux(&view, options, &mut os),
                    RootKind::Windows => windows::guest::inspect(
                        &view,
                        &partitions(disks),
                        options.applications,
                        &mut os,
                    ),
                }
            }
            Err(e) => os.warnings.push(format!("cannot assemble the guest: {e}")),
        }
        report.operating_systems.push(os);
    }
    report
}

fn inspect_linux(view: &GuestView, options: Options, os: &mut OperatingSystem) {
    os.name = "linux".to_string();
    if let Some(found) = distro::detect(view, &mut os.warnings) {
        let dnf_installed = view
            .stat(b"/usr/bin/dnf")
            .is_ok_and(|m| m.file_type == porthole_fs::FileType::Regular);
        let (format, manager) = distro::package_tools(&found, dnf_installed);
        os.package_format = format.map(str::to_string);
        os.package_management = manager.map(str::to_string);
        os.osinfo = distro::osinfo(&found);
        os.distro = Some(found.distro);
        os.product_name = found.product_name;
        os.product_variant = found.product_variant;
        os.major_version = found.major;
        os.minor_version = found.minor;
    }
    os.arch = elf::guest_arch(view).map(str::to_string);
    os.hostname = hostname(view);
    if options.applications {
        let parsed = applications(view, os.package_format.as_deref());
        os.warnings.extend(parsed.warnings);
        os.applications = Some(parsed.applications);
    }
    let services = services::read(view, &mut os.warnings);
    os.accounts = Some(accounts::read(view, &mut os.warnings));
    os.network = Some(network::read(view, &mut os.warnings));
    os.system = Some(system::read(
        view,
        &services,
        os.applications.as_deref(),
        &mut os.warnings,
    ));
    os.services = Some(services);
}

/// The partitions on the disks, as Windows' `MountedDevices` names them: by MBR disk
/// signature and start, or by GPT partition GUID. An MBR PARTUUID is blkid's
/// `<disk signature>-<partition number>`, so the signature is read back from it.
fn partitions(disks: &Disks) -> Vec<PartitionInfo> {
    disks
        .volumes
        .iter()
        .filter_map(|v| {
            let start = v.start?;
            let partuuid = v.partuuid.as_deref()?;
            let mbr_signature = match partuuid.split_once('-') {
                Some((signature, number)) if signature.len() == 8 && number.len() == 2 => {
                    u32::from_str_radix(signature, 16).ok()
                }
                _ => None,
            };
            Some(PartitionInfo {
                device: v.path.clone(),
                mbr_disk_signature: mbr_signature,
                start,
                gpt_partuuid: mbr_signature.is_none().then(|| partuuid.to_string()),
            })
        })
        .collect()
}

/// The first line of `/etc/hostname` or `/etc/HOSTNAME`, else `HOSTNAME=` in
/// `/etc/sysconfig/network` (older Red Hat), as virt-inspector looks.
fn hostname(view: &GuestView) -> Option<String> {
    let first_line = |path: &str| {
        let bytes = view.read_file(path.as_bytes(), 64 << 10).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let line = text.lines().next()?.trim().to_string();
        (!line.is_empty()).then_some(line)
    };
    first_line("/etc/hostname")
        .or_else(|| first_line("/etc/HOSTNAME"))
        .or_else(|| {
            let bytes = view.read_file(b"/etc/sysconfig/network", 64 << 10).ok()?;
            porthole_shellvars::parse(&String::from_utf8_lossy(&bytes))
                .remove("HOSTNAME")
                .filter(|h| !h.is_empty())
        })
}

/// The installed packages, from the database the package format names (or any found).
fn applications(view: &GuestView, format: Option<&str>) -> Parsed {
    match format {
        Some("deb") => dpkg_database(view),
        Some("rpm") => rpm_database(view),
        Some("apk") => apk_database(view),
        Some("pacman") => pacman_database(view),
        _ if view.exists(dpkg::STATUS_PATH.as_bytes()) => dpkg_database(view),
        _ if view.exists(apk::INSTALLED_PATH.as_bytes()) => apk_database(view),
        _ if view.exists(pacman::LOCAL_DIR.as_bytes()) => pacman_database(view),
        _ => rpm_database(view),
    }
}

fn dpkg_database(view: &GuestView) -> Parsed {
    let status = match view.read_file(dpkg::STATUS_PATH.as_bytes(), dpkg::MAX_STATUS_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Parsed {
                warnings: vec![format!("{}: {e}", dpkg::STATUS_PATH)],
                ..Parsed::default()
            }
        }
    };
    let mut updates = Vec::new();
    for entry in view
        .read_dir(dpkg::UPDATES_DIR.as_bytes())
        .unwrap_or_default()
    {
        let name = String::from_utf8_lossy(&entry.name).into_owned();
        if name.parse::<u64>().is_err() {
            continue;
        }
        let path = format!("{}/{name}", dpkg::UPDATES_DIR);
        if let Ok(bytes) = view.read_file(path.as_bytes(), dpkg::MAX_STATUS_BYTES) {
            updates.push((name, bytes));
        }
    }
    dpkg::parse_database(&status, &updates)
}

fn rpm_database(view: &GuestView) -> Parsed {
    for (path, kind) in rpm::CANDIDATES {
        match view.read_file(path.as_bytes(), rpm::MAX_DB_BYTES) {
            Ok(bytes) => return rpm::parse_database(*kind, &bytes),
            Err(porthole_guest::Error::NotFound { .. }) => {}
            Err(e) => {
                return Parsed {
                    warnings: vec![format!("{path}: {e}")],
                    ..Parsed::default()
                }
            }
        }
    }
    Parsed::default()
}

fn apk_database(view: &GuestView) -> Parsed {
    match view.read_file(apk::INSTALLED_PATH.as_bytes(), apk::MAX_INSTALLED_BYTES) {
        Ok(bytes) => apk::parse_installed(&bytes),
        Err(e) => Parsed {
            warnings: vec![format!("{}: {e}", apk::INSTALLED_PATH)],
            ..Parsed::default()
        },
    }
}

/// Every package directory's `desc`, parsed as it is read so that only one is held at a
/// time; unreadable ones are warnings beside the parsed rest.
fn pacman_database(view: &GuestView) -> Parsed {
    let mut entries = match view.read_dir(pacman::LOCAL_DIR.as_bytes()) {
        Ok(entries) => entries,
        Err(e) => {
            return Parsed {
                warnings: vec![format!("{}: {e}", pacman::LOCAL_DIR)],
                ..Parsed::default()
            }
        }
    };
    // ALPM_DB_VERSION sits beside the package directories.
    entries.retain(|e| e.file_type == porthole_fs::FileType::Directory);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut parsed = Parsed::default();
    if entries.len() > pacman::MAX_PACKAGES {
        parsed.warnings.push(format!(
            "{}: more than {} packages; the rest are ignored",
            pacman::LOCAL_DIR,
            pacman::MAX_PACKAGES
        ));
    }
    for entry in entries.iter().take(pacman::MAX_PACKAGES) {
        let name = String::from_utf8_lossy(&entry.name);
        let path = format!("{}/{name}/desc", pacman::LOCAL_DIR);
        match view
            .read_file(path.as_bytes(), pacman::MAX_DESC_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|bytes| pacman::parse_desc(&bytes).map_err(|e| format!("{path}: {e}")))
        {
            Ok(app) => parsed.applications.push(app),
            Err(why) => parsed.warnings.push(why),
        }
    }
    parsed
}
