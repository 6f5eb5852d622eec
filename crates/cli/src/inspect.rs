//! `porthole inspect IMAGE...`: what is inside a VM's disks, as text, JSON or virt-inspector's
//! XML.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use porthole_guest::Disks;
use porthole_inspect::linux::accounts::{Accounts, PasswordState};
use porthole_inspect::linux::services::Service;
use porthole_inspect::linux::system::SystemFacts;
use porthole_inspect::report::OperatingSystem;
use porthole_inspect::{inspect, Options, Report};

use crate::cli::{InspectArgs, ReportFormat};
use crate::output::{emit, key_values, table};

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
        ReportFormat::Json => emit(&(serde_json::to_string_pretty(&report)? + "\n"))?,
        ReportFormat::Text => emit(&text(&report))?,
        ReportFormat::Xml => emit(&porthole_inspect::output::xml::to_string(&report))?,
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
    let mut pairs = vec![
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
    ];
    pairs.extend(linux_facts(os));
    let mut out = key_values(&pairs);
    let rows: Vec<Vec<String>> = os
        .mountpoints
        .iter()
        .map(|m| vec![m.mountpoint.clone(), m.device.clone()])
        .collect();
    out.push_str(&table(&["MOUNTPOINT", "DEVICE"], &rows));
    out.push_str(&linux_tables(os));
    for warning in &os.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// Guest text as it may reach a terminal: control characters (escape sequences a hostile
/// guest could plant) are shown as U+FFFD.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// `items` joined by `, `, or `None` when there are none.
fn list<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Option<String> {
    let items: Vec<String> = items.into_iter().map(|i| printable(i.as_ref())).collect();
    (!items.is_empty()).then(|| items.join(", "))
}

/// The Linux extras as `key: value` lines: what starts at boot, the security settings and
/// the account findings a fleet operator checks first. Nothing for other OSes.
fn linux_facts(os: &OperatingSystem) -> Vec<(&'static str, Option<String>)> {
    let mut pairs = Vec::new();
    if let Some(system) = &os.system {
        pairs.extend(system_facts(system));
    }
    if let Some(services) = &os.services {
        pairs.push(("services", services_in(services, "enabled")));
        pairs.push(("masked", services_in(services, "masked")));
    }
    if let Some(accounts) = &os.accounts {
        pairs.extend(account_findings(accounts));
    }
    pairs
}

fn system_facts(system: &SystemFacts) -> Vec<(&'static str, Option<String>)> {
    let on_cmdline = |off: bool, word: &str| {
        if off {
            format!(", {word} on the kernel command line")
        } else {
            String::new()
        }
    };
    let selinux = system.selinux.as_ref().map(|s| {
        let mode = s.mode.as_deref().unwrap_or("unset");
        let policy = s
            .policy
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        printable(&format!(
            "{mode}{policy}{}",
            on_cmdline(s.disabled_on_cmdline, "selinux=0")
        ))
    });
    let apparmor = system.apparmor.as_ref().map(|a| {
        format!(
            "{} profiles{}",
            a.profiles,
            on_cmdline(a.disabled_on_cmdline, "apparmor=0")
        )
    });
    let cloud_init = system
        .cloud_init
        .as_ref()
        .map(|c| match list(&c.datasources) {
            _ if c.disabled => "installed, disabled".to_string(),
            Some(sources) => format!("installed, datasources {sources}"),
            None => "installed".to_string(),
        });
    let agents = list(system.agents.iter().map(|a| {
        let state = if a.enabled {
            "enabled at boot"
        } else {
            "installed, not enabled"
        };
        format!("{} ({state})", a.name)
    }));
    vec![
        ("timezone", system.timezone.as_deref().map(printable)),
        ("kernels", list(system.kernels.iter().map(|k| &k.version))),
        ("selinux", selinux),
        ("apparmor", apparmor),
        ("cloud-init", cloud_init),
        ("guest agents", agents),
    ]
}

/// The names of the services in `state`, each once, in the order found.
fn services_in(services: &[Service], state: &str) -> Option<String> {
    let mut names: Vec<&str> = Vec::new();
    for s in services.iter().filter(|s| s.state == state) {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    list(names)
}

fn account_findings(accounts: &Accounts) -> Vec<(&'static str, Option<String>)> {
    let admins = list(
        accounts
            .admin_groups
            .iter()
            .filter(|g| !g.members.is_empty())
            .map(|g| format!("{}: {}", g.group, g.members.join(" "))),
    );
    vec![
        ("uid 0 besides root", list(&accounts.uid0_non_root)),
        ("empty passwords", list(&accounts.empty_passwords)),
        ("admin groups", admins),
    ]
}

/// The Linux extras as tables: accounts that can log in, sudo rules that grant much, and
/// configured network interfaces. Empty tables are left out.
fn linux_tables(os: &OperatingSystem) -> String {
    let mut out = String::new();
    let mut add = |header: &[&str], rows: Vec<Vec<String>>| {
        if !rows.is_empty() {
            out.push('\n');
            out.push_str(&table(header, &rows));
        }
    };
    if let Some(accounts) = &os.accounts {
        let logins = accounts.users.iter().filter(|u| u.login_shell);
        let password = |p: PasswordState| match p {
            PasswordState::Set => "set",
            PasswordState::Empty => "EMPTY",
            PasswordState::Locked => "locked",
            PasswordState::Unknown => "unknown",
        };
        add(
            &["LOGIN ACCOUNT", "UID", "SHELL", "PASSWORD"],
            logins
                .map(|u| {
                    vec![
                        printable(&u.name),
                        u.uid.to_string(),
                        printable(&u.shell),
                        password(u.password).to_string(),
                    ]
                })
                .collect(),
        );
        add(
            &["SUDO RULE", "FILE"],
            accounts
                .sudo_rules
                .iter()
                .map(|r| {
                    let rule = r.rule.split_whitespace().collect::<Vec<_>>().join(" ");
                    vec![printable(&rule), printable(&r.source)]
                })
                .collect(),
        );
    }
    if let Some(network) = &os.network {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        add(
            &["INTERFACE", "METHOD", "ADDRESSES", "GATEWAY", "DNS", "FROM"],
            network
                .iter()
                .map(|i| {
                    vec![
                        printable(&i.interface),
                        dash(i.method.as_deref().map(printable)),
                        dash(list(&i.addresses)),
                        dash(i.gateway.as_deref().map(printable)),
                        dash(list(&i.dns)),
                        printable(&i.tool),
                    ]
                })
                .collect(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use porthole_inspect::linux::accounts::User;

    /// A guest's account name carrying a terminal escape reaches the terminal defused.
    #[test]
    fn guest_control_characters_are_not_printed() {
        let os = OperatingSystem {
            name: "linux".into(),
            accounts: Some(Accounts {
                users: vec![User {
                    name: "evil\u{1b}]0;owned\u{7}".into(),
                    uid: 0,
                    gid: 0,
                    home: "/".into(),
                    shell: "/bin/sh\r".into(),
                    login_shell: true,
                    password: PasswordState::Empty,
                }],
                uid0_non_root: vec!["evil\u{1b}[2J".into()],
                ..Accounts::default()
            }),
            ..OperatingSystem::default()
        };
        let out = os_text(&os);
        assert!(!out.contains(['\u{1b}', '\u{7}', '\r']), "{out:?}");
        assert!(out.contains("evil\u{FFFD}]0;owned\u{FFFD}"), "{out}");
        assert!(out.contains("uid 0 besides root: evil\u{FFFD}[2J"), "{out}");
    }
}
