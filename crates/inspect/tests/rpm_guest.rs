//! `inspect()` end to end on phony rpm guests built by real tools (testkit's `guests::rpm`):
//! Fedora 40 on MBR + LVM + XFS with an `rpmdb.sqlite`, CentOS 7 on MBR + ext4 with a
//! Berkeley DB `Packages`. Each full report must equal a golden value written here from what
//! the builders put in, its applications exactly what real `rpm -qa` lists from the guest's
//! database; the XML must validate against virt-inspector's schema; and a damaged database
//! inside the guest costs a warning and the packages it hides, nothing more.

#![allow(clippy::unwrap_used)]

mod rpm_common;

use porthole_guest::Disks;
use porthole_inspect::linux::accounts::{Accounts, GroupMembers, PasswordState, SudoRule, User};
use porthole_inspect::linux::network::Interface;
use porthole_inspect::linux::services::Service;
use porthole_inspect::linux::system::{Agent, CloudInit, Kernel, Selinux, SystemFacts};
use porthole_inspect::output::xml;
use porthole_inspect::packages::Application;
use porthole_inspect::report::{FilesystemFact, Mountpoint, OperatingSystem};
use porthole_inspect::{inspect, Options};
use porthole_testkit::guests::rpm::{
    centos7_guest, fedora_lvm_guest, Damage, RpmGuest, CENTOS_BOOT_UUID, CENTOS_KERNEL,
    CENTOS_ROOT_UUID, DAMAGED_PACKAGE, FEDORA_BOOT_UUID, FEDORA_KERNELS, FEDORA_ROOT_UUID,
};
use porthole_testkit::xmllint::{assert_virt_inspector_rng, xpath};

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The one OS of `guest`, its applications sorted by name and version (the report keeps the
/// database's order, which is rpm's package number for sqlite and hash order for bdb).
fn inspect_guest(guest: &RpmGuest) -> OperatingSystem {
    let disks = Disks::open(&guest.disks).unwrap();
    let mut report = inspect(&disks, Options::default());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.operating_systems.len(), 1, "{report:?}");
    let mut os = report.operating_systems.remove(0);
    if let Some(apps) = os.applications.as_mut() {
        apps.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    }
    os
}

/// What real rpm listed from the guest's database, as applications.
fn rpm_qa(guest: &RpmGuest) -> Vec<Application> {
    let listing = std::fs::read_to_string(&guest.listing).unwrap();
    let apps: Vec<Application> = rpm_common::applications(&listing);
    assert!(apps.len() >= 6, "{apps:?}");
    apps
}

fn user(name: &str, uid: u32, gid: u32, home: &str, shell: &str, pw: PasswordState) -> User {
    let login_shell = !shell.ends_with("nologin");
    User {
        name: name.into(),
        uid,
        gid,
        home: home.into(),
        shell: shell.into(),
        login_shell,
        password: pw,
    }
}

fn rule(source: &str, who: &str, rule: &str, nopasswd: bool) -> SudoRule {
    SudoRule {
        source: source.into(),
        who: who.into(),
        rule: rule.into(),
        all_commands: true,
        nopasswd,
    }
}

fn enabled(unit: &str) -> Service {
    Service {
        name: unit.into(),
        init: "systemd".into(),
        state: "enabled".into(),
        target: s("multi-user.target"),
        source: format!("/etc/systemd/system/multi-user.target.wants/{unit}"),
    }
}

fn fedora_golden(applications: Vec<Application>) -> OperatingSystem {
    use PasswordState::{Empty, Locked, Set};
    let accounts = Accounts {
        users: vec![
            user("root", 0, 0, "/root", "/bin/bash", Set),
            user("bin", 1, 1, "/bin", "/usr/sbin/nologin", Locked),
            user("daemon", 2, 2, "/sbin", "/usr/sbin/nologin", Locked),
            user(
                "sshd",
                74,
                74,
                "/usr/share/empty.sshd",
                "/usr/sbin/nologin",
                Locked,
            ),
            user("alice", 1000, 1000, "/home/alice", "/bin/bash", Set),
            user("ansible", 1001, 1001, "/home/ansible", "/bin/bash", Locked),
            user("toor", 0, 0, "/root", "/bin/sh", Empty),
        ],
        uid0_non_root: vec!["toor".into()],
        empty_passwords: vec!["toor".into()],
        admin_groups: vec![GroupMembers {
            group: "wheel".into(),
            gid: 10,
            members: vec!["alice".into()],
        }],
        sudo_rules: vec![
            rule("/etc/sudoers", "root", "root\tALL=(ALL) \tALL", false),
            rule("/etc/sudoers", "%wheel", "%wheel\tALL=(ALL)\tALL", false),
            rule(
                "/etc/sudoers.d/ansible",
                "ansible",
                "ansible ALL=(ALL) NOPASSWD: ALL",
                true,
            ),
        ],
    };
    let kernel = |v: &str| Kernel {
        version: v.into(),
        image: Some(format!("/boot/vmlinuz-{v}")),
        modules: true,
    };
    let system = SystemFacts {
        timezone: s("America/New_York"),
        kernels: FEDORA_KERNELS.iter().map(|v| kernel(v)).collect(),
        selinux: Some(Selinux {
            mode: s("enforcing"),
            policy: s("targeted"),
            disabled_on_cmdline: false,
        }),
        apparmor: None,
        cloud_init: Some(CloudInit {
            datasources: vec!["NoCloud".into(), "ConfigDrive".into()],
            disabled: false,
        }),
        agents: vec![Agent {
            name: "qemu-guest-agent".into(),
            evidence: "/usr/bin/qemu-ga".into(),
            enabled: true,
        }],
    };
    OperatingSystem {
        root: "/dev/fedora/root".into(),
        name: "linux".into(),
        distro: s("fedora"),
        product_name: s("Fedora Linux 40 (Server Edition)"),
        product_variant: s("Server Edition"),
        major_version: 40,
        minor_version: 0,
        arch: s("x86_64"),
        hostname: s("fedora-server.example.org"),
        package_format: s("rpm"),
        package_management: s("dnf"),
        osinfo: s("fedora40"),
        mountpoints: vec![
            Mountpoint {
                device: "/dev/fedora/root".into(),
                mountpoint: "/".into(),
            },
            Mountpoint {
                device: "/dev/sda1".into(),
                mountpoint: "/boot".into(),
            },
        ],
        filesystems: vec![
            FilesystemFact {
                device: "/dev/sda1".into(),
                fstype: "ext4".into(),
                label: None,
                uuid: s(FEDORA_BOOT_UUID),
            },
            FilesystemFact {
                device: "/dev/fedora/root".into(),
                fstype: "xfs".into(),
                label: None,
                uuid: s(FEDORA_ROOT_UUID),
            },
        ],
        applications: Some(applications),
        services: Some(vec![
            Service {
                name: "firewalld.service".into(),
                init: "systemd".into(),
                state: "masked".into(),
                target: None,
                source: "/etc/systemd/system/firewalld.service".into(),
            },
            enabled("NetworkManager.service"),
            enabled("cloud-init.service"),
            enabled("qemu-guest-agent.service"),
            enabled("sshd.service"),
        ]),
        accounts: Some(accounts),
        network: Some(vec![Interface {
            interface: "enp1s0".into(),
            method: s("static"),
            addresses: vec!["192.0.2.20/24".into()],
            gateway: s("192.0.2.1"),
            dns: vec!["192.0.2.53".into()],
            tool: "networkmanager".into(),
            source: "/etc/NetworkManager/system-connections/enp1s0.nmconnection".into(),
        }]),
        system: Some(system),
        windows_systemroot: None,
        windows_current_control_set: None,
        drive_mappings: vec![],
        warnings: vec![],
    }
}

fn centos_golden(applications: Vec<Application>) -> OperatingSystem {
    use PasswordState::Locked;
    let accounts = Accounts {
        users: vec![
            user("root", 0, 0, "/root", "/bin/bash", Locked),
            user("bin", 1, 1, "/bin", "/sbin/nologin", Locked),
            user("centos", 1000, 1000, "/home/centos", "/bin/bash", Locked),
        ],
        uid0_non_root: vec![],
        empty_passwords: vec![],
        admin_groups: vec![GroupMembers {
            group: "wheel".into(),
            gid: 10,
            members: vec!["centos".into()],
        }],
        sudo_rules: vec![
            rule("/etc/sudoers", "root", "root\tALL=(ALL) \tALL", false),
            rule("/etc/sudoers", "%wheel", "%wheel\tALL=(ALL)\tALL", false),
            rule(
                "/etc/sudoers.d/90-cloud-init-users",
                "centos",
                "centos ALL=(ALL) NOPASSWD:ALL",
                true,
            ),
        ],
    };
    let system = SystemFacts {
        timezone: s("UTC"),
        kernels: vec![Kernel {
            version: CENTOS_KERNEL.into(),
            image: Some(format!("/boot/vmlinuz-{CENTOS_KERNEL}")),
            modules: true,
        }],
        selinux: Some(Selinux {
            mode: s("permissive"),
            policy: s("targeted"),
            disabled_on_cmdline: false,
        }),
        apparmor: None,
        cloud_init: None,
        agents: vec![Agent {
            name: "qemu-guest-agent".into(),
            evidence: "package qemu-guest-agent".into(),
            enabled: false,
        }],
    };
    let by_uuid = |device: &str, uuid: &str| FilesystemFact {
        device: device.into(),
        fstype: "ext4".into(),
        label: None,
        uuid: s(uuid),
    };
    OperatingSystem {
        root: "/dev/sda2".into(),
        name: "linux".into(),
        distro: s("centos"),
        product_name: s("CentOS Linux release 7.9.2009 (Core)"),
        product_variant: None,
        major_version: 7,
        minor_version: 9,
        arch: s("x86_64"),
        hostname: s("centos7.example.com"),
        package_format: s("rpm"),
        package_management: s("yum"),
        osinfo: s("centos7.0"),
        mountpoints: vec![
            Mountpoint {
                device: "/dev/sda2".into(),
                mountpoint: "/".into(),
            },
            Mountpoint {
                device: "/dev/sda1".into(),
                mountpoint: "/boot".into(),
            },
        ],
        filesystems: vec![
            by_uuid("/dev/sda1", CENTOS_BOOT_UUID),
            by_uuid("/dev/sda2", CENTOS_ROOT_UUID),
        ],
        applications: Some(applications),
        services: Some(vec![enabled("crond.service"), enabled("sshd.service")]),
        accounts: Some(accounts),
        network: Some(vec![Interface {
            interface: "eth0".into(),
            method: s("dhcp"),
            tool: "ifcfg".into(),
            source: "/etc/sysconfig/network-scripts/ifcfg-eth0".into(),
            ..Interface::default()
        }]),
        system: Some(system),
        windows_systemroot: None,
        windows_current_control_set: None,
        drive_mappings: vec![],
        warnings: vec![],
    }
}

/// Compares part by part first, so that a failure names the part and prints little.
fn assert_report(got: &OperatingSystem, want: &OperatingSystem) {
    let head = |os: &OperatingSystem| OperatingSystem {
        applications: None,
        services: None,
        accounts: None,
        network: None,
        system: None,
        ..os.clone()
    };
    assert_eq!(head(got), head(want), "facts, mounts, filesystems");
    assert_eq!(got.applications, want.applications, "applications");
    assert_eq!(got.services, want.services, "services");
    assert_eq!(got.accounts, want.accounts, "accounts");
    assert_eq!(got.network, want.network, "network");
    assert_eq!(got.system, want.system, "system");
    assert_eq!(got, want);
}

#[test]
fn fedora_lvm_guest_report_is_golden() {
    let guest = fedora_lvm_guest();
    let want = fedora_golden(rpm_qa(&guest));
    let apps = want.applications.as_ref().unwrap();
    let kernels = apps.iter().filter(|a| a.name == "kernel-core").count();
    assert_eq!(kernels, 2, "both kernel-core versions are installed");
    let qga = apps.iter().find(|a| a.name == "qemu-guest-agent").unwrap();
    assert_eq!(
        (qga.epoch, qga.url.as_deref()),
        (2, Some("http://www.qemu.org/"))
    );
    assert_report(&inspect_guest(&guest), &want);
}

#[test]
fn centos7_bdb_guest_report_is_golden() {
    let guest = centos7_guest(Damage::None);
    let want = centos_golden(rpm_qa(&guest));
    let qga = want.applications.as_ref().unwrap();
    let qga = qga.iter().find(|a| a.name == "qemu-guest-agent").unwrap();
    assert_eq!(
        (qga.epoch, qga.summary.as_deref()),
        (10, Some("QEMU guest agent"))
    );
    assert_report(&inspect_guest(&guest), &want);
}

/// virt-inspector's XML of both guests validates against its RELAX NG schema and carries
/// the golden facts.
#[test]
fn rpm_guests_are_valid_virt_inspector_xml() {
    for (guest, distro, osinfo, manager) in [
        (fedora_lvm_guest(), "fedora", "fedora40", "dnf"),
        (centos7_guest(Damage::None), "centos", "centos7.0", "yum"),
    ] {
        let disks = Disks::open(&guest.disks).unwrap();
        let document = xml::to_string(&inspect(&disks, Options::default()));
        assert_virt_inspector_rng(&document);
        let os = "/operatingsystems/operatingsystem";
        assert_eq!(xpath(&document, &format!("{os}/distro")), distro);
        assert_eq!(xpath(&document, &format!("{os}/osinfo")), osinfo);
        assert_eq!(xpath(&document, &format!("{os}/package_format")), "rpm");
        assert_eq!(
            xpath(&document, &format!("{os}/package_management")),
            manager
        );
        let count = xpath(&document, &format!("count({os}/applications/application)"));
        assert_eq!(count, rpm_qa(&guest).len().to_string(), "{distro}");
        assert_eq!(
            xpath(&document, "//application[name='qemu-guest-agent']/summary"),
            "QEMU guest agent"
        );
    }
}

/// A header whose offsets lie: that package keeps its name and version but loses the two
/// fields, with warnings; every other package and fact is the golden one.
#[test]
fn lying_header_offsets_in_the_guest_cost_two_fields() {
    let guest = centos7_guest(Damage::LyingOffsets);
    let got = inspect_guest(&guest);
    let mut want = centos_golden(rpm_qa(&guest));
    let apps = want.applications.as_mut().unwrap();
    let damaged = apps.iter_mut().find(|a| a.name == DAMAGED_PACKAGE).unwrap();
    (damaged.summary, damaged.description) = (None, None);
    let warnings = &got.warnings;
    for tag in ["tag 1004", "tag 1005"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("Packages") && w.contains(tag)),
            "{tag}: {warnings:?}"
        );
    }
    want.warnings = got.warnings.clone();
    assert_report(&got, &want);
}

/// A Packages file cut in half: the packages it still holds come out, the loss is a warning
/// naming the database, and the rest of the report is the golden one.
#[test]
fn truncated_database_in_the_guest_is_a_warning() {
    let guest = centos7_guest(Damage::Truncated);
    let got = inspect_guest(&guest);
    let want = centos_golden(rpm_qa(&guest));
    let apps = got.applications.as_ref().unwrap();
    let all = want.applications.as_ref().unwrap();
    assert!(apps.len() < all.len(), "{apps:?}");
    for app in apps {
        assert!(all.contains(app), "{app:?} is not what rpm listed");
    }
    assert!(
        got.warnings.iter().any(|w| w.contains("Packages")),
        "{:?}",
        got.warnings
    );
    assert_eq!(
        (&got.distro, &got.hostname, &got.mountpoints, &got.accounts),
        (
            &want.distro,
            &want.hostname,
            &want.mountpoints,
            &want.accounts
        )
    );
    assert_eq!(
        (&got.services, &got.network),
        (&want.services, &want.network)
    );
}
