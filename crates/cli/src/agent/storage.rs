//! Filesystems and disks: freeze/thaw, fsinfo, disks, fstrim.

use super::Session;
use crate::output::{human_bytes, table, yes_no};
use anyhow::Result;
use porthole_client::commands::{self as cmd, DiskAddress, DiskInfo, FilesystemInfo, FstrimResult};
use serde_json::{json, Value};

impl Session {
    pub(super) fn fsfreeze(&mut self, mountpoints: Vec<String>) -> Result<()> {
        let (command, arguments) = if mountpoints.is_empty() {
            (cmd::GUEST_FSFREEZE_FREEZE.name, Value::Null)
        } else {
            (
                cmd::GUEST_FSFREEZE_FREEZE_LIST.name,
                json!({ "mountpoints": mountpoints }),
            )
        };
        self.show_with(command, arguments, |count: i64| {
            format!("froze {count} filesystem(s)\n")
        })
    }

    pub(super) fn thaw(&mut self) -> Result<()> {
        self.show(cmd::GUEST_FSFREEZE_THAW.name, |count: i64| {
            format!("thawed {count} filesystem(s)\n")
        })
    }

    pub(super) fn freeze_status(&mut self) -> Result<()> {
        self.show(cmd::GUEST_FSFREEZE_STATUS.name, |status: String| {
            format!("{status}\n")
        })
    }

    pub(super) fn fsinfo(&mut self) -> Result<()> {
        self.show(
            cmd::GUEST_GET_FSINFO.name,
            |filesystems: Vec<FilesystemInfo>| {
                let size = |n: Option<u64>| n.map(human_bytes).unwrap_or_else(|| "-".into());
                let rows: Vec<Vec<String>> = filesystems
                    .into_iter()
                    .map(|fs| {
                        vec![
                            fs.mountpoint,
                            fs.r#type,
                            fs.name,
                            size(fs.used_bytes),
                            size(fs.total_bytes),
                            join(fs.disk.iter().map(|d| d.bus_type.clone())),
                            join(fs.disk.iter().filter_map(|d| d.serial.clone())),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "MOUNTPOINT",
                        "TYPE",
                        "NAME",
                        "USED",
                        "TOTAL",
                        "BUS",
                        "SERIAL",
                    ],
                    &rows,
                )
            },
        )
    }

    pub(super) fn disks(&mut self) -> Result<()> {
        self.show(cmd::GUEST_GET_DISKS.name, |disks: Vec<DiskInfo>| {
            let rows: Vec<Vec<String>> = disks
                .into_iter()
                .map(|d| {
                    let address = d.address.as_ref();
                    vec![
                        d.name,
                        yes_no(d.partition).into(),
                        join(d.dependencies.unwrap_or_default().into_iter()),
                        address.map(|a| a.bus_type.clone()).unwrap_or_default(),
                        address.and_then(|a| a.serial.clone()).unwrap_or_default(),
                        address.map(pci).unwrap_or_default(),
                        d.alias.unwrap_or_default(),
                    ]
                })
                .collect();
            table(
                &[
                    "NAME",
                    "PARTITION",
                    "DEPENDS-ON",
                    "BUS",
                    "SERIAL",
                    "PCI",
                    "ALIAS",
                ],
                &rows,
            )
        })
    }

    pub(super) fn fstrim(&mut self, minimum: Option<i64>) -> Result<()> {
        let arguments = match minimum {
            Some(n) => json!({ "minimum": n }),
            None => Value::Null,
        };
        self.show_with(cmd::GUEST_FSTRIM.name, arguments, |result: FstrimResult| {
            let rows: Vec<Vec<String>> = result
                .paths
                .into_iter()
                .map(|p| {
                    let outcome = match (p.error, p.trimmed) {
                        (Some(error), _) => format!("error: {error}"),
                        (None, Some(n)) => format!("{} trimmed", human_bytes(n)),
                        (None, None) => "trimmed".into(),
                    };
                    vec![p.path, outcome]
                })
                .collect();
            table(&["PATH", "RESULT"], &rows)
        })
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.filter(|s| !s.is_empty()).collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// `0000:00:05.0`, or nothing for a disk that is not on PCI.
fn pci(address: &DiskAddress) -> String {
    let p = address.pci_controller;
    if p.domain < 0 {
        return String::new();
    }
    format!(
        "{:04x}:{:02x}:{:02x}.{}",
        p.domain, p.bus, p.slot, p.function
    )
}
