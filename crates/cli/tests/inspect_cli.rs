//! `porthole inspect --format xml|json|text` on the UEFI phony guest, as an operator runs it:
//! the XML validated against virt-inspector's RELAX NG schema (`xmllint`, libxml2-utils), the
//! JSON against porthole's JSON Schema `docs/inspect-report.schema.json` (python3-jsonschema,
//! draft 2020-12), and the key facts read back out of each.

mod inspect_common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use porthole_inspect::linux::accounts::{Accounts, GroupMembers, PasswordState, SudoRule, User};
use porthole_inspect::linux::network::Interface;
use porthole_inspect::linux::services::Service;
use porthole_inspect::linux::system::{Agent, AppArmor, CloudInit, Kernel, Selinux, SystemFacts};
use porthole_inspect::packages::Application;
use porthole_inspect::report::{DriveMapping, FilesystemFact, Mountpoint, OperatingSystem, Report};
use porthole_testkit::guests::{gpt_ext4_esp_guest, lvm_xfs_btrfs_guest};
use porthole_testkit::xmllint::{assert_virt_inspector_rng, docs_file, xpath};
use serde_json::Value;

/// `porthole inspect <flags> <the UEFI guest's disk>`'s standard output.
fn inspect(flags: &[&str]) -> String {
    let (disk, _) = gpt_ext4_esp_guest();
    inspect_disks(flags, &[disk])
}

fn inspect_disks(flags: &[&str], disks: &[PathBuf]) -> String {
    inspect_common::porthole_inspect(flags, disks)
}

/// Runs `program args` with `input` on stdin; its exit status and stderr.
fn feed(program: &str, package: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install the Debian package `{package}`")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Validates JSON (on stdin) against the schema file named first; the errors on stderr.
const VALIDATE_PY: &str = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.exit("python3's jsonschema is missing: install the Debian package `python3-jsonschema`")
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(sys.stdin)))
for e in errors:
    print("/".join(map(str, e.absolute_path)), e.message, file=sys.stderr)
sys.exit(1 if errors else 0)
"#;

/// The schema's complaints about `json`, if any.
fn schema_errors(json: &str) -> Option<String> {
    let schema = docs_file("inspect-report.schema.json");
    let (ok, stderr) = feed(
        "python3",
        "python3-jsonschema",
        &["-c", VALIDATE_PY, &schema],
        json,
    );
    assert!(!stderr.contains("python3-jsonschema"), "{stderr}");
    (!ok).then_some(stderr)
}

fn assert_schema_valid(json: &str) {
    if let Some(errors) = schema_errors(json) {
        panic!("not valid against docs/inspect-report.schema.json:\n{errors}");
    }
}

#[test]
fn xml_is_virt_inspectors_and_holds_the_guest() {
    let xml = inspect(&["--format", "xml"]);
    assert!(xml.starts_with("<?xml version=\"1.0\"?>\n<operatingsystems>\n"));
    assert_virt_inspector_rng(&xml);
    let os = "/operatingsystems/operatingsystem";
    assert_eq!(xpath(&xml, &format!("count({os})")), "1");
    assert_eq!(xpath(&xml, &format!("{os}/name")), "linux");
    assert_eq!(xpath(&xml, &format!("{os}/distro")), "debian");
    assert_eq!(xpath(&xml, &format!("{os}/osinfo")), "debian12");
    assert_eq!(xpath(&xml, &format!("{os}/hostname")), "phony-debian");
    assert_eq!(xpath(&xml, &format!("{os}/root")), "/dev/sda2");
    assert_eq!(xpath(&xml, &format!("{os}/major_version")), "12");
    assert_eq!(xpath(&xml, &format!("{os}/mountpoints/mountpoint[1]")), "/");
    assert_eq!(
        xpath(&xml, &format!("{os}/mountpoints/mountpoint[1]/@dev")),
        "/dev/sda2"
    );
    assert_eq!(
        xpath(&xml, &format!("{os}/mountpoints/mountpoint[2]")),
        "/boot/efi"
    );
    assert_eq!(
        xpath(&xml, &format!("{os}/mountpoints/mountpoint[2]/@dev")),
        "/dev/sda1"
    );
    assert_eq!(
        xpath(
            &xml,
            &format!("{os}/filesystems/filesystem[@dev='/dev/sda1']/type")
        ),
        "vfat"
    );
    let apps: usize = xpath(&xml, &format!("count({os}/applications/application)"))
        .parse()
        .expect("a count");
    assert!(apps > 100, "{apps} applications");
    assert_eq!(xpath(&xml, "count(//application[name='dpkg'])"), "1");

    // The same applications as the JSON report.
    let json: Value = serde_json::from_str(&inspect(&["--format", "json"])).expect("JSON");
    let listed = json["operating_systems"][0]["applications"]
        .as_array()
        .expect("applications")
        .len();
    assert_eq!(apps, listed);
}

#[test]
fn no_applications_leaves_the_element_out() {
    let xml = inspect(&["--format", "xml", "--no-applications"]);
    assert_virt_inspector_rng(&xml);
    assert!(!xml.contains("<applications"), "{xml}");
    assert_eq!(xpath(&xml, "//distro"), "debian");

    let json = inspect(&["--format", "json", "--no-applications"]);
    assert_schema_valid(&json);
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["operating_systems"][0]["applications"], Value::Null);
}

#[test]
fn json_follows_its_schema_and_holds_the_guest() {
    let text = inspect(&["--format", "json"]);
    assert_schema_valid(&text);
    let json: Value = serde_json::from_str(&text).expect("JSON");
    let os = &json["operating_systems"][0];
    assert_eq!(os["distro"], "debian");
    assert_eq!(os["osinfo"], "debian12");
    assert_eq!(os["hostname"], "phony-debian");
    assert_eq!(os["mountpoints"][0]["mountpoint"], "/");
    assert_eq!(os["mountpoints"][0]["device"], "/dev/sda2");
    assert!(os["applications"].as_array().expect("applications").len() > 100);
}

/// The LVM/XFS/btrfs guest (two disks, raw and qcow2; built as root): both outputs valid.
#[test]
fn lvm_guest_json_and_xml_are_valid() {
    let disks = lvm_xfs_btrfs_guest();
    let json = inspect_disks(&["--format", "json"], &disks);
    assert_schema_valid(&json);
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["operating_systems"][0]["root"], "/dev/guestvg/root");
    let xml = inspect_disks(&["--format", "xml"], &disks);
    assert_virt_inspector_rng(&xml);
    assert_eq!(xpath(&xml, "//operatingsystem/root"), "/dev/guestvg/root");
    assert_eq!(xpath(&xml, "count(//mountpoint)"), "4");
}

#[test]
fn text_names_the_guest() {
    let text = inspect(&["--format", "text"]);
    for want in [
        "debian12",
        "phony-debian",
        "/dev/sda2",
        "/boot/efi",
        "/dev/sda1",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let distro = text
        .lines()
        .find(|l| l.starts_with("distro"))
        .unwrap_or_else(|| panic!("no distro line in:\n{text}"));
    assert!(distro.ends_with("debian"), "{distro}");
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// A report with every optional part present, so that the schema is checked against every
/// field of every struct (the phony guests leave most Linux extras empty).
fn full_report() -> Report {
    let app = Application {
        name: "dbus".into(),
        display_name: s("D-Bus"),
        epoch: 1,
        version: s("1.14.0"),
        release: s("1.fc37"),
        arch: s("x86_64"),
        install_path: s("/usr"),
        publisher: s("freedesktop.org"),
        url: s("https://dbus.freedesktop.org"),
        source_package: s("dbus"),
        summary: s("D-BUS message bus"),
        description: s("D-BUS is a system for sending messages"),
    };
    let accounts = Accounts {
        users: vec![User {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
            login_shell: true,
            password: PasswordState::Locked,
        }],
        uid0_non_root: vec!["toor".into()],
        empty_passwords: vec!["guest".into()],
        admin_groups: vec![GroupMembers {
            group: "sudo".into(),
            gid: 27,
            members: vec!["alice".into()],
        }],
        sudo_rules: vec![SudoRule {
            source: "/etc/sudoers".into(),
            who: "%sudo".into(),
            rule: "%sudo ALL=(ALL:ALL) NOPASSWD: ALL".into(),
            all_commands: true,
            nopasswd: true,
        }],
    };
    let system = SystemFacts {
        timezone: s("Europe/Paris"),
        kernels: vec![Kernel {
            version: "6.1.0-18-amd64".into(),
            image: s("/boot/vmlinuz-6.1.0-18-amd64"),
            modules: true,
        }],
        selinux: Some(Selinux {
            mode: s("enforcing"),
            policy: s("targeted"),
            disabled_on_cmdline: false,
        }),
        apparmor: Some(AppArmor {
            profiles: 42,
            disabled_on_cmdline: true,
        }),
        cloud_init: Some(CloudInit {
            datasources: vec!["NoCloud".into()],
            disabled: false,
        }),
        agents: vec![Agent {
            name: "qemu-guest-agent".into(),
            evidence: "package qemu-guest-agent".into(),
            enabled: true,
        }],
    };
    let os = OperatingSystem {
        root: "/dev/sda2".into(),
        name: "linux".into(),
        distro: s("debian"),
        product_name: s("Debian GNU/Linux 12 (bookworm)"),
        product_variant: s("Server"),
        major_version: 12,
        minor_version: 4,
        arch: s("x86_64"),
        hostname: s("phony"),
        package_format: s("deb"),
        package_management: s("apt"),
        windows_systemroot: None,
        windows_current_control_set: None,
        osinfo: s("debian12"),
        mountpoints: vec![Mountpoint {
            device: "/dev/sda2".into(),
            mountpoint: "/".into(),
        }],
        filesystems: vec![FilesystemFact {
            device: "/dev/sda2".into(),
            fstype: "ext4".into(),
            label: s("root"),
            uuid: s("01234567-0123-0123-0123-012345678901"),
        }],
        drive_mappings: vec![],
        applications: Some(vec![app]),
        services: Some(vec![Service {
            name: "ssh.service".into(),
            init: "systemd".into(),
            state: "enabled".into(),
            target: s("multi-user.target"),
            source: "/etc/systemd/system/multi-user.target.wants/ssh.service".into(),
        }]),
        accounts: Some(accounts),
        network: Some(vec![Interface {
            interface: "eth0".into(),
            method: s("static"),
            addresses: vec!["192.0.2.10/24".into()],
            gateway: s("192.0.2.1"),
            dns: vec!["192.0.2.53".into()],
            tool: "netplan".into(),
            source: "/etc/netplan/50-cloud-init.yaml".into(),
        }]),
        system: Some(system),
        warnings: vec!["a warning".into()],
    };
    let windows = OperatingSystem {
        root: "/dev/sdb2".into(),
        name: "windows".into(),
        windows_systemroot: s("/Windows"),
        windows_current_control_set: s("ControlSet001"),
        drive_mappings: vec![DriveMapping {
            name: "C".into(),
            device: "/dev/sdb2".into(),
        }],
        ..OperatingSystem::default()
    };
    Report {
        operating_systems: vec![os, windows],
        warnings: vec!["disk warning".into()],
    }
}

#[test]
fn schema_describes_every_field_of_the_report() {
    let json = serde_json::to_value(full_report()).expect("serialize");
    assert_schema_valid(&json.to_string());

    // The schema refuses what the report does not hold: the validation above can fail.
    let mut extra = json.clone();
    extra["operating_systems"][0]["system"]["kernels"][0]["flavour"] = "cloud".into();
    let errors = schema_errors(&extra.to_string()).expect("an unknown field is refused");
    assert!(errors.contains("flavour"), "{errors}");
    let mut wrong = json;
    wrong["operating_systems"][0]["accounts"]["users"][0]["password"] = "hunter2".into();
    assert!(schema_errors(&wrong.to_string()).is_some());
}

/// `porthole inspect IMAGE | head`: the reader goes away mid-document (the XML of 900 packages
/// is far more than a pipe holds) and porthole stops quietly with success, not a panic.
#[test]
fn closed_pipe_ends_the_output_quietly() {
    let (disk, _) = gpt_ext4_esp_guest();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_porthole"))
        .args(["inspect", "--format", "xml"])
        .arg(&disk)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run porthole");
    let mut first = [0u8; 64];
    std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut first)
        .expect("the document starts");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(String::from_utf8_lossy(&first).starts_with("<?xml"));
}
