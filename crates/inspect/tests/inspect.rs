//! `inspect()` end to end on phony guests built by real tools: the facts virt-inspector reports,
//! and applications read from a real dpkg database (this machine's own, copied in).

use porthole_guest::Disks;
use porthole_inspect::{inspect, Options};
use porthole_testkit::guests::{gpt_ext4_esp_guest, lvm_xfs_btrfs_guest, GUEST_VG};
use std::collections::BTreeSet;

#[test]
fn uefi_debian_guest_facts_and_applications() {
    let (disk, dpkg_listing) = gpt_ext4_esp_guest();
    let disks = Disks::open(&[disk]).expect("open");
    let report = inspect(&disks, Options::default());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let [os] = &report.operating_systems[..] else {
        panic!("one OS expected: {report:?}");
    };
    assert_eq!(os.root, "/dev/sda2");
    assert_eq!(os.name, "linux");
    assert_eq!(os.distro.as_deref(), Some("debian"));
    // As virt-inspector: os-release's VERSION_ID "12" has no minor version, so
    // /etc/debian_version ("12.4") gives the version and the product name.
    assert_eq!((os.major_version, os.minor_version), (12, 4));
    assert_eq!(os.product_name.as_deref(), Some("12.4"));
    assert_eq!(os.arch.as_deref(), Some(std::env::consts::ARCH));
    assert_eq!(os.hostname.as_deref(), Some("phony-debian"));
    assert_eq!(os.package_format.as_deref(), Some("deb"));
    assert_eq!(os.package_management.as_deref(), Some("apt"));
    assert_eq!(os.osinfo.as_deref(), Some("debian12"));
    let mounts: Vec<(&str, &str)> = os
        .mountpoints
        .iter()
        .map(|m| (m.mountpoint.as_str(), m.device.as_str()))
        .collect();
    assert_eq!(mounts, [("/", "/dev/sda2"), ("/boot/efi", "/dev/sda1")]);
    let esp = os
        .filesystems
        .iter()
        .find(|f| f.device == "/dev/sda1")
        .expect("ESP");
    assert_eq!(
        (esp.fstype.as_str(), esp.label.as_deref()),
        ("vfat", Some("ESP"))
    );

    // The applications are exactly what dpkg itself listed as installed when the database was
    // copied into the image.
    let listed = std::fs::read_to_string(dpkg_listing).expect("dpkg listing");
    let want: BTreeSet<&str> = listed.lines().collect();
    let apps = os.applications.as_ref().expect("applications asked for");
    let got: BTreeSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert!(want.len() > 100, "dpkg listed only {} packages", want.len());
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert!(os.warnings.is_empty(), "{:?}", os.warnings);

    let without = inspect(
        &disks,
        Options {
            applications: false,
        },
    );
    assert!(without.operating_systems[0].applications.is_none());
}

#[test]
fn lvm_guest_root_and_mounts() {
    let disks = Disks::open(&lvm_xfs_btrfs_guest()).expect("open");
    let report = inspect(&disks, Options::default());
    let [os] = &report.operating_systems[..] else {
        panic!("one OS expected: {report:?}");
    };
    assert_eq!(os.root, format!("/dev/{GUEST_VG}/root"));
    assert_eq!(os.mountpoints.len(), 4);
    assert_eq!(os.filesystems.len(), 5);
    assert!(
        os.warnings.iter().any(|w| w.contains("UUID=0000-DEAD")),
        "{:?}",
        os.warnings
    );
}
