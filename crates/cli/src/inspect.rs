//! `porthole inspect IMAGE...`: what is inside a VM's disks, as text, JSON or virt-inspector's
//! XML.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use porthole_guest::Disks;
use porthole_inspect::report::OperatingSystem;
use porthole_inspect::{inspect, Options, Report};

use crate::cli::{InspectArgs, ReportFormat};
use crate::output::{key_values, table};

pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let disks = Disks::open(&args.images)?;
    let report = inspect(
        &disks,
        Options {
            applications: !args.no_applications,
        },
    );
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        ReportFormat::Text
    } else {
        ReportFormat::Json
    });
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Text => print!("{}", text(&report)),
        ReportFormat::Xml => print!("{}", porthole_inspect::output::xml::to_string(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    if report.operating_systems.is_empty() {
        out.push_str("no operating system found\n");
    }
    for os in &report.operating_systems {
        out.push_str(&os_text(os));
        out.push('\n');
    }
    for warning in &report.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// Windows' drive letters, `C: /dev/sda1, D: /dev/sda2`; `None` without any.
fn drive_letters(os: &OperatingSystem) -> Option<String> {
    let letters: Vec<String> = os
        .drive_mappings
        .iter()
        .map(|m| format!("{}: {}", m.name, m.device))
        .collect();
    (!letters.is_empty()).then(|| letters.join(", "))
}

fn os_text(os: &OperatingSystem) -> String {
    let version = format!("{}.{}", os.major_version, os.minor_version);
    let mut out = key_values(&[
        ("root", Some(os.root.clone())),
        ("os", Some(os.name.clone())),
        ("distro", os.distro.clone()),
        ("product", os.product_name.clone()),
        ("variant", os.product_variant.clone()),
        ("version", Some(version)),
        ("arch", os.arch.clone()),
        ("hostname", os.hostname.clone()),
        ("systemroot", os.windows_systemroot.clone()),
        ("control set", os.windows_current_control_set.clone()),
        ("drives", drive_letters(os)),
        (
            "packages",
            os.package_format
                .as_ref()
                .map(|f| format!("{f} ({})", os.package_management.as_deref().unwrap_or("?"))),
        ),
        ("osinfo", os.osinfo.clone()),
        (
            "applications",
            os.applications.as_ref().map(|a| a.len().to_string()),
        ),
    ]);
    let rows: Vec<Vec<String>> = os
        .mountpoints
        .iter()
        .map(|m| vec![m.mountpoint.clone(), m.device.clone()])
        .collect();
    out.push_str(&table(&["MOUNTPOINT", "DEVICE"], &rows));
    for warning in &os.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}
