//! `porthole inspect --format text` on the phony rpm guests (testkit's `guests::rpm`, built
//! with sfdisk, lvm2, mkfs.xfs/ext4, rpmbuild, rpm and systemctl): the Linux extras an
//! operator reads first — services, accounts, sudo rules, network, timezone, kernels,
//! SELinux, cloud-init and guest agents — each on its line, with what the builders put in.

mod inspect_common;

use porthole_testkit::guests::rpm::{centos7_guest, fedora_lvm_guest, Damage, FEDORA_KERNELS};

fn text(disks: &[std::path::PathBuf]) -> String {
    inspect_common::porthole_inspect(&["--format", "text"], disks)
}

/// The value of the `key:` line (values are aligned after the colon).
fn value<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{text}"))
        .trim()
}

/// The table row starting with `first` (cells separated by runs of spaces).
fn row(text: &str, first: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()))
        .map(|cells| cells.map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{text}"))
}

#[test]
fn fedora_text_shows_the_linux_extras() {
    let out = text(&fedora_lvm_guest().disks);
    assert_eq!(value(&out, "timezone"), "America/New_York");
    assert_eq!(value(&out, "kernels"), FEDORA_KERNELS.join(", "));
    assert_eq!(value(&out, "selinux"), "enforcing (targeted)");
    assert_eq!(
        value(&out, "cloud-init"),
        "installed, datasources NoCloud, ConfigDrive"
    );
    assert_eq!(
        value(&out, "guest agents"),
        "qemu-guest-agent (enabled at boot)"
    );
    assert_eq!(
        value(&out, "services"),
        "NetworkManager.service, cloud-init.service, qemu-guest-agent.service, sshd.service"
    );
    assert_eq!(value(&out, "masked"), "firewalld.service");
    assert_eq!(value(&out, "uid 0 besides root"), "toor");
    assert_eq!(value(&out, "empty passwords"), "toor");
    assert_eq!(value(&out, "admin groups"), "wheel: alice");
    assert!(!out.contains("apparmor:"), "no AppArmor here:\n{out}");

    assert_eq!(
        row(&out, "LOGIN ACCOUNT"),
        ["LOGIN ACCOUNT", "UID", "SHELL", "PASSWORD"]
    );
    assert_eq!(row(&out, "toor"), ["toor", "0", "/bin/sh", "EMPTY"]);
    assert_eq!(
        row(&out, "ansible"),
        ["ansible", "1001", "/bin/bash", "locked"]
    );
    // System accounts with nologin are not login accounts.
    assert!(!out.lines().any(|l| l.starts_with("sshd ")), "{out}");
    assert_eq!(
        row(&out, "ansible ALL=(ALL) NOPASSWD: ALL"),
        ["ansible ALL=(ALL) NOPASSWD: ALL", "/etc/sudoers.d/ansible"]
    );
    // The tab in `root\tALL=(ALL) \tALL` is shown as one space.
    assert_eq!(
        row(&out, "root ALL=(ALL) ALL"),
        ["root ALL=(ALL) ALL", "/etc/sudoers"]
    );
    assert_eq!(
        row(&out, "enp1s0"),
        [
            "enp1s0",
            "static",
            "192.0.2.20/24",
            "192.0.2.1",
            "192.0.2.53",
            "networkmanager"
        ]
    );
}

#[test]
fn centos_text_shows_the_linux_extras() {
    let out = text(&centos7_guest(Damage::None).disks);
    assert_eq!(value(&out, "timezone"), "UTC");
    assert_eq!(value(&out, "selinux"), "permissive (targeted)");
    assert_eq!(
        value(&out, "guest agents"),
        "qemu-guest-agent (installed, not enabled)"
    );
    assert_eq!(value(&out, "services"), "crond.service, sshd.service");
    for absent in [
        "masked:",
        "uid 0 besides root:",
        "empty passwords:",
        "cloud-init:",
    ] {
        assert!(!out.contains(absent), "{absent} in:\n{out}");
    }
    assert_eq!(row(&out, "root"), ["root", "0", "/bin/bash", "locked"]);
    assert_eq!(row(&out, "eth0"), ["eth0", "dhcp", "-", "-", "-", "ifcfg"]);
}
