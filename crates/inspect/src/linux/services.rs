//! Services started at boot, from the links each init system keeps:
//!
//! - systemd: `<target>.wants/` and `<target>.requires/` directories of symlinks under
//!   `/etc/systemd/system` (enabled by the administrator) and `/usr/lib/systemd/system`,
//!   `/lib/systemd/system` (enabled by the vendor: systemctl's `static`); a unit file in
//!   `/etc/systemd/system` that is a symlink to `/dev/null` is masked.
//! - OpenRC: `/etc/runlevels/<runlevel>/<service>` links.
//! - SysV init: `/etc/rc<N>.d/S<NN><service>` links.

use std::collections::HashSet;

use porthole_fs::FileType;
use porthole_guest::GuestView;
use serde::Serialize;

use super::{list_dir, name_of};

/// Where systemd looks for units, administrator's first.
pub const SYSTEMD_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];
/// Services reported at most; more are ignored with a warning.
pub const MAX_SERVICES: usize = 20_000;

/// One service link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// The unit or script name (`ssh.service`, `sshd`).
    pub name: String,
    /// `systemd`, `openrc` or `sysv`.
    pub init: String,
    /// `enabled` (the administrator's link), `static` (the vendor's link) or `masked`.
    pub state: String,
    /// What starts it: the systemd target (`multi-user.target`), OpenRC runlevel
    /// (`default`) or SysV runlevel (`rc2`); none for a masked unit.
    pub target: Option<String>,
    /// The link's guest path.
    pub source: String,
}

/// Every service link of the guest.
pub fn read(view: &GuestView, warnings: &mut Vec<String>) -> Vec<Service> {
    let mut out = Vec::new();
    systemd(view, &mut out, warnings);
    openrc(view, &mut out, warnings);
    sysv(view, &mut out, warnings);
    if out.len() > MAX_SERVICES {
        warnings.push(format!(
            "services: more than {MAX_SERVICES}; the rest are ignored"
        ));
        out.truncate(MAX_SERVICES);
    }
    out
}

/// Whether the service `name` (with or without `.service`) is started at boot by any init.
pub fn is_enabled(services: &[Service], name: &str) -> bool {
    let masked = services
        .iter()
        .any(|s| s.state == "masked" && unit_base(&s.name) == name);
    !masked
        && services
            .iter()
            .any(|s| s.state != "masked" && unit_base(&s.name) == name)
}

/// `ssh.service` → `ssh`; `getty@tty1.service` → `getty@tty1`; other names as they are.
fn unit_base(name: &str) -> &str {
    name.strip_suffix(".service").unwrap_or(name)
}

fn systemd(view: &GuestView, out: &mut Vec<Service>, warnings: &mut Vec<String>) {
    // /lib is often a link to /usr/lib: read each real directory once.
    let mut seen = HashSet::new();
    for dir in SYSTEMD_DIRS {
        let Ok(real) = view.canonicalize(dir.as_bytes()) else {
            continue;
        };
        if !seen.insert(real) {
            continue;
        }
        let admin = dir.starts_with("/etc/");
        for entry in list_dir(view, dir, warnings) {
            let name = name_of(&entry);
            let path = format!("{dir}/{name}");
            if admin && entry.file_type == FileType::Symlink && points_to_dev_null(view, &path) {
                out.push(Service {
                    name,
                    init: "systemd".into(),
                    state: "masked".into(),
                    target: None,
                    source: path,
                });
                continue;
            }
            let Some(target) = name
                .strip_suffix(".wants")
                .or_else(|| name.strip_suffix(".requires"))
            else {
                continue;
            };
            for unit in list_dir(view, &path, warnings) {
                let unit_name = name_of(&unit);
                out.push(Service {
                    source: format!("{path}/{unit_name}"),
                    name: unit_name,
                    init: "systemd".into(),
                    state: if admin { "enabled" } else { "static" }.into(),
                    target: Some(target.to_string()),
                });
            }
        }
    }
}

fn points_to_dev_null(view: &GuestView, path: &str) -> bool {
    view.read_link(path.as_bytes())
        .is_ok_and(|t| t == b"/dev/null")
}

fn openrc(view: &GuestView, out: &mut Vec<Service>, warnings: &mut Vec<String>) {
    for level in list_dir(view, "/etc/runlevels", warnings) {
        let level = name_of(&level);
        let dir = format!("/etc/runlevels/{level}");
        for svc in list_dir(view, &dir, warnings) {
            let name = name_of(&svc);
            out.push(Service {
                source: format!("{dir}/{name}"),
                name,
                init: "openrc".into(),
                state: "enabled".into(),
                target: Some(level.clone()),
            });
        }
    }
}

fn sysv(view: &GuestView, out: &mut Vec<Service>, warnings: &mut Vec<String>) {
    for level in ["0", "1", "2", "3", "4", "5", "6", "S"] {
        let dir = format!("/etc/rc{level}.d");
        for link in list_dir(view, &dir, warnings) {
            let name = name_of(&link);
            let Some(service) = sysv_start_link(&name) else {
                continue;
            };
            out.push(Service {
                name: service.to_string(),
                init: "sysv".into(),
                state: "enabled".into(),
                target: Some(format!("rc{level}")),
                source: format!("{dir}/{name}"),
            });
        }
    }
}

/// `S01ssh` → `ssh`: a start link is `S`, two digits and the script's name.
pub fn sysv_start_link(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('S')?;
    let digits = rest.get(..2)?;
    let script = rest.get(2..)?;
    (digits.bytes().all(|b| b.is_ascii_digit()) && !script.is_empty()).then_some(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_links() {
        assert_eq!(sysv_start_link("S01ssh"), Some("ssh"));
        assert_eq!(sysv_start_link("K01ssh"), None);
        assert_eq!(sysv_start_link("S1"), None);
        assert_eq!(sysv_start_link("S99"), None);
        assert_eq!(sysv_start_link("README"), None);
        assert_eq!(sysv_start_link("S\u{e9}x"), None);
    }

    #[test]
    fn enabled_unless_masked() {
        let svc = |name: &str, state: &str| Service {
            name: name.into(),
            init: "systemd".into(),
            state: state.into(),
            target: None,
            source: String::new(),
        };
        let list = [
            svc("ssh.service", "enabled"),
            svc("cups.service", "enabled"),
            svc("cups.service", "masked"),
        ];
        assert!(is_enabled(&list, "ssh"));
        assert!(!is_enabled(&list, "cups"));
        assert!(!is_enabled(&list, "nginx"));
    }
}
