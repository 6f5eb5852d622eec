//! virt-inspector's XML (`output::xml`): its exact layout on a report shaped like
//! guestfs-tools' own `expected-fedora.img.xml`, hostile strings, and the documents written
//! for the phony guests validated by `xmllint --relaxng` against virt-inspector's schema.
//!
//! `docs/virt-inspector.rng` is the schema Debian's guestfs-tools 1.48.2 ships
//! (`/usr/share/doc/guestfs-tools/virt-inspector.rng.gz`), unchanged; its header says it "can
//! be freely copied and modified without restrictions".

use porthole_guest::Disks;
use porthole_inspect::output::xml;
use porthole_inspect::packages::Application;
use porthole_inspect::report::{FilesystemFact, Mountpoint, OperatingSystem, Report};
use porthole_inspect::{inspect, Options};
use porthole_testkit::guests::{gpt_ext4_esp_guest, lvm_xfs_btrfs_guest};
use porthole_testkit::tools::run;
use porthole_testkit::xmllint::{assert_virt_inspector_rng, virt_inspector_rng, xpath};

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

fn fedora_like() -> Report {
    let os = OperatingSystem {
        root: "/dev/VG/Root".into(),
        name: "linux".into(),
        distro: some("fedora"),
        product_name: some("Fedora release 14 (Phony)"),
        product_variant: None,
        major_version: 14,
        minor_version: 0,
        arch: some("x86_64"),
        hostname: some("fedora.invalid"),
        package_format: some("rpm"),
        package_management: some("yum"),
        osinfo: some("fedora14"),
        mountpoints: vec![
            Mountpoint {
                device: "/dev/sda1".into(),
                mountpoint: "/boot".into(),
            },
            Mountpoint {
                device: "/dev/VG/Root".into(),
                mountpoint: "/".into(),
            },
        ],
        filesystems: vec![
            FilesystemFact {
                device: "/dev/sda1".into(),
                fstype: "ext2".into(),
                label: some("BOOT"),
                uuid: some("01234567-0123-0123-0123-012345678901"),
            },
            FilesystemFact {
                device: "/dev/VG/Root".into(),
                fstype: "ext2".into(),
                label: some("ROOT"),
                uuid: some("01234567-0123-0123-0123-012345678902"),
            },
            FilesystemFact {
                device: "/dev/VG/Swap".into(),
                fstype: "swap".into(),
                label: Some(String::new()),
                uuid: None,
            },
        ],
        applications: Some(vec![
            Application {
                name: "basesystem".into(),
                version: some("11"),
                release: some("13.fc36"),
                arch: some("noarch"),
                url: some("(none)"),
                summary: some("The skeleton package which defines a simple Fedora system"),
                description: some("Basesystem defines the components\nof a basic Fedora system."),
                ..Application::default()
            },
            Application {
                name: "dbus".into(),
                epoch: 1,
                version: some("1.14.0"),
                release: some("1.fc37"),
                arch: some("x86_64"),
                source_package: Some(String::new()),
                ..Application::default()
            },
        ]),
        ..OperatingSystem::default()
    };
    Report {
        operating_systems: vec![os],
        warnings: vec![],
    }
}

/// The layout of guestfs-tools' `inspector/expected-fedora.img.xml`, cut to two applications
/// and with a swap filesystem without label or UUID.
const FEDORA_XML: &str = r#"<?xml version="1.0"?>
<operatingsystems>
  <operatingsystem>
    <root>/dev/VG/Root</root>
    <name>linux</name>
    <arch>x86_64</arch>
    <distro>fedora</distro>
    <product_name>Fedora release 14 (Phony)</product_name>
    <major_version>14</major_version>
    <minor_version>0</minor_version>
    <package_format>rpm</package_format>
    <package_management>yum</package_management>
    <hostname>fedora.invalid</hostname>
    <osinfo>fedora14</osinfo>
    <mountpoints>
      <mountpoint dev="/dev/VG/Root">/</mountpoint>
      <mountpoint dev="/dev/sda1">/boot</mountpoint>
    </mountpoints>
    <filesystems>
      <filesystem dev="/dev/VG/Root">
        <type>ext2</type>
        <label>ROOT</label>
        <uuid>01234567-0123-0123-0123-012345678902</uuid>
      </filesystem>
      <filesystem dev="/dev/VG/Swap">
        <type>swap</type>
      </filesystem>
      <filesystem dev="/dev/sda1">
        <type>ext2</type>
        <label>BOOT</label>
        <uuid>01234567-0123-0123-0123-012345678901</uuid>
      </filesystem>
    </filesystems>
    <applications>
      <application>
        <name>basesystem</name>
        <version>11</version>
        <release>13.fc36</release>
        <arch>noarch</arch>
        <url>(none)</url>
        <summary>The skeleton package which defines a simple Fedora system</summary>
        <description>Basesystem defines the components
of a basic Fedora system.</description>
      </application>
      <application>
        <name>dbus</name>
        <epoch>1</epoch>
        <version>1.14.0</version>
        <release>1.fc37</release>
        <arch>x86_64</arch>
      </application>
    </applications>
  </operatingsystem>
</operatingsystems>
"#;

#[test]
fn layout_is_virt_inspectors() {
    let document = xml::to_string(&fedora_like());
    assert_eq!(document, FEDORA_XML);
    assert_virt_inspector_rng(&document);
}

#[test]
fn applications_element_only_when_applications_were_read() {
    let mut report = fedora_like();
    report.operating_systems[0].applications = None;
    let document = xml::to_string(&report);
    assert!(!document.contains("<applications"), "{document}");
    assert_virt_inspector_rng(&document);

    report.operating_systems[0].applications = Some(vec![]);
    let document = xml::to_string(&report);
    assert!(document.contains("\n    <applications/>\n"), "{document}");
    assert_virt_inspector_rng(&document);
}

#[test]
fn unknown_facts_are_left_out_and_versions_kept() {
    let mut report = fedora_like();
    let os = &mut report.operating_systems[0];
    os.distro = some("unknown");
    os.arch = None;
    os.hostname = Some(String::new());
    os.major_version = 0;
    let document = xml::to_string(&report);
    for absent in ["<distro", "\n    <arch>", "<hostname"] {
        assert!(!document.contains(absent), "{absent} in {document}");
    }
    assert!(document.contains("    <major_version>0</major_version>\n"));
    assert_virt_inspector_rng(&document);
}

#[test]
fn no_operating_system_is_an_empty_root_element() {
    assert_eq!(
        xml::to_string(&Report::default()),
        "<?xml version=\"1.0\"?>\n<operatingsystems/>\n"
    );
}

/// Guest strings that try to break out of their element, and bytes XML cannot carry: the
/// document stays well-formed and valid, and a parser reads back exactly the guest's string
/// with each forbidden character replaced by U+FFFD.
#[test]
fn hostile_guest_strings_are_escaped() {
    let hostile =
        "x</hostname><name>windows</name>&amp;<![CDATA[ ]]>\"'\u{0}\u{1b}[31m\r\t\u{FFFF}é";
    let expected: String = hostile
        .chars()
        .map(|c| {
            if xml::is_xml_char(c) {
                c
            } else {
                xml::REPLACEMENT
            }
        })
        .collect();
    let mut report = fedora_like();
    let os = &mut report.operating_systems[0];
    os.hostname = some(hostile);
    os.product_name = some(hostile);
    os.mountpoints[0].device = hostile.to_string();
    os.filesystems[0].label = some(hostile);
    if let Some(apps) = os.applications.as_mut() {
        apps[0].description = some(hostile);
        apps[0].name = hostile.to_string();
    }
    let document = xml::to_string(&report);
    assert_virt_inspector_rng(&document);
    assert_eq!(xpath(&document, "//hostname"), expected);
    assert_eq!(xpath(&document, "//product_name"), expected);
    assert_eq!(xpath(&document, "//application[1]/name"), expected);
    assert_eq!(xpath(&document, "//application[1]/description"), expected);
    assert_eq!(xpath(&document, "//filesystem[3]/label"), expected);
    // The hostile device is the one mounted on `/boot`.
    assert_eq!(xpath(&document, "//mountpoint[.='/boot']/@dev"), expected);
    assert_eq!(xpath(&document, "//name[.='windows']"), "");
}

#[test]
fn uefi_phony_guest_is_valid_virt_inspector_xml() {
    let (disk, _) = gpt_ext4_esp_guest();
    let disks = Disks::open(&[disk]).expect("open");
    let document = xml::to_string(&inspect(&disks, Options::default()));
    assert_virt_inspector_rng(&document);
    assert_eq!(xpath(&document, "//operatingsystem/distro"), "debian");
    assert_eq!(xpath(&document, "//operatingsystem/osinfo"), "debian12");
    assert_eq!(
        xpath(&document, "//operatingsystem/hostname"),
        "phony-debian"
    );
    assert_eq!(xpath(&document, "//mountpoint[.='/']/@dev"), "/dev/sda2");
    assert_eq!(
        xpath(&document, "//mountpoint[.='/boot/efi']/@dev"),
        "/dev/sda1"
    );
    let count: usize = run(
        "xmllint",
        "libxml2-utils",
        &["--xpath", "count(//application)", "-"],
        Some(&document),
    )
    .trim()
    .parse()
    .expect("a count");
    assert!(count > 100, "{count} applications");
}

#[test]
fn lvm_phony_guest_is_valid_virt_inspector_xml() {
    let disks = Disks::open(&lvm_xfs_btrfs_guest()).expect("open");
    let report = inspect(&disks, Options::default());
    let document = xml::to_string(&report);
    assert_virt_inspector_rng(&document);
    assert_eq!(
        xpath(&document, "//operatingsystem/root"),
        report.operating_systems[0].root
    );
    let os = &report.operating_systems[0];
    assert!(os.mountpoints.len() >= 4, "{:?}", os.mountpoints);
    for m in &os.mountpoints {
        let at = format!("//mountpoint[.='{}']/@dev", m.mountpoint);
        assert_eq!(xpath(&document, &at), m.device);
    }
    assert_eq!(
        xpath(&document, "//filesystem[@dev='/dev/sda1']/label"),
        "BOOT"
    );
}

/// The validation above can fail: the schema rejects porthole's Linux extras, an unknown
/// distribution and application fields out of order.
#[test]
fn schema_rejects_what_virt_inspector_does_not_write() {
    let broken = [
        FEDORA_XML.replace("<mountpoints>", "<services/>\n<mountpoints>"),
        FEDORA_XML.replace(">fedora<", ">porthole<"),
        FEDORA_XML.replace(
            "<epoch>1</epoch>\n        <version>1.14.0</version>",
            "<version>1.14.0</version>\n        <epoch>1</epoch>",
        ),
    ];
    for document in broken {
        assert_ne!(document, FEDORA_XML);
        let mut child = std::process::Command::new("xmllint")
            .args(["--noout", "--relaxng", &virt_inspector_rng(), "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("xmllint: install the Debian package `libxml2-utils`");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(document.as_bytes())
            .expect("write");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "accepted:\n{document}");
    }
}

/// A character from every class the escaper treats differently: markup, whitespace, C0 and
/// C1 controls, the non-characters U+FFFE/U+FFFF, multi-byte and astral characters.
fn random_char(rng: &mut porthole_mutate::Rng) -> char {
    const SPECIAL: [char; 16] = [
        '<',
        '>',
        '&',
        '"',
        '\'',
        '\n',
        '\r',
        '\t',
        '\0',
        '\u{1b}',
        '\u{7f}',
        '\u{85}',
        '\u{FFFE}',
        '\u{FFFF}',
        '\u{FFFD}',
        '\u{1F600}',
    ];
    match rng.below(4) {
        0 => SPECIAL[rng.below(SPECIAL.len())],
        1 => char::from_u32(rng.below(0x20) as u32).unwrap_or('?'),
        2 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{E000}'),
        _ => char::from(b'a' + rng.below(26) as u8),
    }
}

/// Thousands of deterministic random strings in every place guest text reaches: the one
/// document stays well-formed and valid, carries no character XML forbids, and a parser reads
/// every application back.
#[test]
fn random_guest_strings_always_give_a_valid_document() {
    let mut rng = porthole_mutate::Rng::new(0x786d6c);
    let mut random = |len: usize| -> String { (0..len).map(|_| random_char(&mut rng)).collect() };
    let mut report = fedora_like();
    let os = &mut report.operating_systems[0];
    os.hostname = Some(random(64));
    os.product_name = Some(random(64));
    os.mountpoints[0].device = random(64);
    os.filesystems[0].label = Some(random(64));
    let apps: Vec<Application> = (0..2000)
        .map(|_| Application {
            name: random(16),
            version: Some(random(8)),
            summary: Some(random(40)),
            description: Some(random(200)),
            ..Application::default()
        })
        .collect();
    os.applications = Some(apps);
    let document = xml::to_string(&report);
    assert!(
        document.chars().all(xml::is_xml_char),
        "a character XML 1.0 forbids was written"
    );
    assert_virt_inspector_rng(&document);
    assert_eq!(xpath(&document, "count(//application)"), "2000");
}
