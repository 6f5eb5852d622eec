//! System settings: timezone, installed kernels, SELinux and AppArmor, cloud-init and guest
//! agents.

use porthole_fs::FileType;
use porthole_guest::GuestView;
use serde::Serialize;
use serde_yaml_ng::Value;

use super::services::{self, Service};
use super::{list_dir, name_of, read_optional};
use crate::packages::Application;

/// Configuration files read here are small; more is refused before reading.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// A generated grub.cfg can be large with many kernels.
pub const MAX_GRUB_BYTES: u64 = 8 << 20;

/// The system settings of a guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SystemFacts {
    /// The IANA zone (`Europe/Paris`), from where `/etc/localtime` links under `zoneinfo/`,
    /// else `/etc/timezone`, else `ZONE=` in `/etc/sysconfig/clock`.
    pub timezone: Option<String>,
    /// Installed kernels by version, from `/boot/vmlinuz-*` and `/lib/modules/*`.
    pub kernels: Vec<Kernel>,
    /// `/etc/selinux/config`, when there is one.
    pub selinux: Option<Selinux>,
    /// AppArmor, when `/etc/apparmor.d` exists.
    pub apparmor: Option<AppArmor>,
    /// cloud-init, when installed.
    pub cloud_init: Option<CloudInit>,
    /// Guest agents found installed.
    pub agents: Vec<Agent>,
}

/// One installed kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// `6.1.0-18-amd64`; for Alpine's `vmlinuz-lts`, the flavour `lts`.
    pub version: String,
    /// Its image in `/boot`, if any.
    pub image: Option<String>,
    /// Whether `/lib/modules/<version>` exists.
    pub modules: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selinux {
    /// `enforcing`, `permissive` or `disabled` (`SELINUX=`).
    pub mode: Option<String>,
    /// `targeted`, `mls`, ... (`SELINUXTYPE=`).
    pub policy: Option<String>,
    /// The boot loader configuration passes `selinux=0`.
    pub disabled_on_cmdline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppArmor {
    /// Profile files directly in `/etc/apparmor.d`.
    pub profiles: usize,
    /// The boot loader configuration passes `apparmor=0`.
    pub disabled_on_cmdline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudInit {
    /// `datasource_list` from `/etc/cloud/cloud.cfg` and `cloud.cfg.d/*.cfg` (the last wins,
    /// as cloud-init merges them).
    pub datasources: Vec<String>,
    /// `/etc/cloud/cloud-init.disabled` exists.
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    /// `qemu-guest-agent` or `porthole-agent`.
    pub name: String,
    /// What shows it is installed: a binary or configuration path, or `package <name>`.
    pub evidence: String,
    /// Whether an init system starts it at boot.
    pub enabled: bool,
}

/// Reads the system settings; `services` and `applications` are what was already read.
pub fn read(
    view: &GuestView,
    services: &[Service],
    applications: Option<&[Application]>,
    warnings: &mut Vec<String>,
) -> SystemFacts {
    let cmdline = boot_cmdline(view, warnings);
    SystemFacts {
        timezone: timezone(view, warnings),
        kernels: kernels(view, warnings),
        selinux: read_optional(view, "/etc/selinux/config", MAX_FILE_BYTES, warnings).map(|b| {
            let vars = porthole_shellvars::parse(&String::from_utf8_lossy(&b));
            Selinux {
                mode: vars.get("SELINUX").map(|m| m.to_ascii_lowercase()),
                policy: vars.get("SELINUXTYPE").cloned(),
                disabled_on_cmdline: has_word(&cmdline, "selinux=0"),
            }
        }),
        apparmor: view.exists(b"/etc/apparmor.d").then(|| AppArmor {
            profiles: list_dir(view, "/etc/apparmor.d", warnings)
                .iter()
                .filter(|e| e.file_type == FileType::Regular)
                .count(),
            disabled_on_cmdline: has_word(&cmdline, "apparmor=0"),
        }),
        cloud_init: cloud_init(view, applications, warnings),
        agents: agents(view, services, applications),
    }
}

/// The zone name after `zoneinfo/` in a link target (`posix/` and `right/` trees stripped).
pub fn zone_from_link(target: &str) -> Option<String> {
    let (_, zone) = target.split_once("zoneinfo/")?;
    let zone = zone
        .strip_prefix("posix/")
        .or_else(|| zone.strip_prefix("right/"))
        .unwrap_or(zone);
    (!zone.is_empty()).then(|| zone.to_string())
}

fn timezone(view: &GuestView, warnings: &mut Vec<String>) -> Option<String> {
    if let Ok(target) = view.read_link(b"/etc/localtime") {
        if let Some(zone) = zone_from_link(&String::from_utf8_lossy(&target)) {
            return Some(zone);
        }
    }
    if let Some(bytes) = read_optional(view, "/etc/timezone", MAX_FILE_BYTES, warnings) {
        let text = String::from_utf8_lossy(&bytes);
        if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Some(line.to_string());
        }
    }
    let clock = read_optional(view, "/etc/sysconfig/clock", MAX_FILE_BYTES, warnings)?;
    porthole_shellvars::parse(&String::from_utf8_lossy(&clock))
        .remove("ZONE")
        .filter(|z| !z.is_empty())
}

/// `vmlinuz-6.1.0-18-amd64` → `6.1.0-18-amd64`.
pub fn kernel_image_version(name: &str) -> Option<&str> {
    ["vmlinuz-", "vmlinux-", "kernel-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .filter(|v| !v.is_empty() && !v.ends_with(".old"))
}

fn kernels(view: &GuestView, warnings: &mut Vec<String>) -> Vec<Kernel> {
    let mut out: Vec<Kernel> = Vec::new();
    for entry in list_dir(view, "/boot", warnings) {
        let name = name_of(&entry);
        if let Some(version) = kernel_image_version(&name) {
            out.push(Kernel {
                version: version.to_string(),
                image: Some(format!("/boot/{name}")),
                modules: false,
            });
        }
    }
    for entry in list_dir(view, "/lib/modules", warnings) {
        if entry.file_type != FileType::Directory {
            continue;
        }
        let version = name_of(&entry);
        match out.iter_mut().find(|k| k.version == version) {
            Some(k) => k.modules = true,
            None => out.push(Kernel {
                version,
                image: None,
                modules: true,
            }),
        }
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    out
}

/// The kernel command lines the boot loader configuration passes (`GRUB_CMDLINE_LINUX*` in
/// `/etc/default/grub`, and `grub.cfg` where the distribution keeps it), as one text.
fn boot_cmdline(view: &GuestView, warnings: &mut Vec<String>) -> String {
    let mut out = String::new();
    if let Some(b) = read_optional(view, "/etc/default/grub", MAX_FILE_BYTES, warnings) {
        for (k, v) in porthole_shellvars::parse(&String::from_utf8_lossy(&b)) {
            if k.starts_with("GRUB_CMDLINE_LINUX") {
                out.push_str(&v);
                out.push('\n');
            }
        }
    }
    for cfg in ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"] {
        if let Some(b) = read_optional(view, cfg, MAX_GRUB_BYTES, warnings) {
            let text = String::from_utf8_lossy(&b);
            for line in text.lines().filter(|l| l.trim_start().starts_with("linux")) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .any(|w| w == word)
}

/// `datasource_list` of one cloud-init YAML file, if it sets one.
pub fn datasource_list(bytes: &[u8]) -> Result<Option<Vec<String>>, String> {
    let doc: Value = serde_yaml_ng::from_slice(bytes).map_err(|e| e.to_string())?;
    let Some(list) = doc.get("datasource_list") else {
        return Ok(None);
    };
    Ok(Some(match list {
        Value::Sequence(items) => items
            .iter()
            .take(64)
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }))
}

fn cloud_init(
    view: &GuestView,
    applications: Option<&[Application]>,
    warnings: &mut Vec<String>,
) -> Option<CloudInit> {
    let installed = view.exists(b"/etc/cloud/cloud.cfg")
        || view.exists(b"/usr/bin/cloud-init")
        || has_package(applications, &["cloud-init"]);
    if !installed {
        return None;
    }
    let mut files = vec!["/etc/cloud/cloud.cfg".to_string()];
    for entry in list_dir(view, "/etc/cloud/cloud.cfg.d", warnings) {
        let name = name_of(&entry);
        if name.ends_with(".cfg") {
            files.push(format!("/etc/cloud/cloud.cfg.d/{name}"));
        }
    }
    let mut datasources = Vec::new();
    for path in files {
        let Some(bytes) = read_optional(view, &path, MAX_FILE_BYTES, warnings) else {
            continue;
        };
        match datasource_list(&bytes) {
            Ok(Some(list)) => datasources = list,
            Ok(None) => {}
            Err(e) => warnings.push(format!("{path}: {e}")),
        }
    }
    Some(CloudInit {
        datasources,
        disabled: view.exists(b"/etc/cloud/cloud-init.disabled"),
    })
}

fn has_package(applications: Option<&[Application]>, names: &[&str]) -> bool {
    applications.is_some_and(|apps| apps.iter().any(|a| names.contains(&a.name.as_str())))
}

/// A guest agent and where it shows up.
struct AgentSigns {
    name: &'static str,
    /// Binaries or configuration files that mean it is installed.
    paths: &'static [&'static str],
    packages: &'static [&'static str],
    /// Its service names under the init systems.
    units: &'static [&'static str],
}

const AGENTS: [AgentSigns; 2] = [
    AgentSigns {
        name: "qemu-guest-agent",
        paths: &[
            "/usr/bin/qemu-ga",
            "/usr/sbin/qemu-ga",
            "/usr/libexec/qemu-ga",
        ],
        packages: &["qemu-guest-agent", "qemu-ga"],
        units: &["qemu-guest-agent", "qemu-ga"],
    },
    AgentSigns {
        name: "porthole-agent",
        paths: &[
            "/usr/bin/porthole-agent",
            "/usr/sbin/porthole-agent",
            "/usr/local/bin/porthole-agent",
            "/etc/porthole/agent.toml",
        ],
        packages: &["porthole-agent"],
        units: &["porthole-agent"],
    },
];

fn agents(
    view: &GuestView,
    services: &[Service],
    applications: Option<&[Application]>,
) -> Vec<Agent> {
    let mut out = Vec::new();
    for AgentSigns {
        name,
        paths,
        packages,
        units,
    } in AGENTS
    {
        let evidence = paths
            .iter()
            .find(|p| view.exists(p.as_bytes()))
            .map(|p| p.to_string())
            .or_else(|| {
                applications?
                    .iter()
                    .find(|a| packages.contains(&a.name.as_str()))
                    .map(|a| format!("package {}", a.name))
            });
        if let Some(evidence) = evidence {
            out.push(Agent {
                name: name.to_string(),
                evidence,
                enabled: units.iter().any(|u| services::is_enabled(services, u)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_kernels_words() {
        assert_eq!(
            zone_from_link("/usr/share/zoneinfo/Europe/Paris").as_deref(),
            Some("Europe/Paris")
        );
        assert_eq!(
            zone_from_link("../usr/share/zoneinfo/posix/UTC").as_deref(),
            Some("UTC")
        );
        assert_eq!(zone_from_link("/etc/foo"), None);
        assert_eq!(
            kernel_image_version("vmlinuz-6.1.0-18-amd64"),
            Some("6.1.0-18-amd64")
        );
        assert_eq!(kernel_image_version("vmlinuz-lts"), Some("lts"));
        assert_eq!(kernel_image_version("vmlinuz"), None);
        assert_eq!(kernel_image_version("vmlinuz-"), None);
        assert!(has_word("quiet apparmor=0 splash", "apparmor=0"));
        assert!(has_word("\"quiet selinux=0\"", "selinux=0"));
        assert!(!has_word("noapparmor=0", "apparmor=0"));
    }

    #[test]
    fn datasources() {
        assert_eq!(
            datasource_list(b"datasource_list: [ NoCloud, ConfigDrive, None ]\n").unwrap(),
            Some(vec!["NoCloud".into(), "ConfigDrive".into(), "None".into()])
        );
        assert_eq!(datasource_list(b"users: [default]\n").unwrap(), None);
        assert!(datasource_list(b"a: [\x00").is_err());
    }
}
