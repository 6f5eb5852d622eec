//! `inspect()` end to end on the phony Windows guest (testkit's `guests::windows`): an MBR disk
//! made by sfdisk with an NTFS system partition (mkntfs, filled through ntfs-3g) holding
//! hives made by `hivexregedit --merge` and a tiny PE `cmd.exe`, and a FAT data partition.
//! The whole report is compared with what was put in; the XML is validated against
//! virt-inspector's RELAX NG schema and the JSON against porthole's JSON Schema. Hostile
//! variants (a subkey cycle, a truncated hive, no SOFTWARE) give warnings and the rest.

use std::path::{Path, PathBuf};

use porthole_guest::Disks;
use porthole_inspect::fuzzing::empty_hive;
use porthole_inspect::output::xml;
use porthole_inspect::packages::Application;
use porthole_inspect::report::{DriveMapping, FilesystemFact, Mountpoint, OperatingSystem, Report};
use porthole_inspect::windows::hive::Hive;
use porthole_inspect::{inspect, Options};
use porthole_testkit::guests::windows::{
    self, server_2022, server_2022_guest, server_2022_hives, tiny_pe, windows_guest, WindowsFiles,
    DATA_START, SYSTEM_START,
};
use porthole_testkit::run;
use porthole_testkit::xmllint::{assert_virt_inspector_rng, docs_file, xpath};

fn guest() -> PathBuf {
    server_2022_guest(&empty_hive("ROOT"))
}

fn hives() -> (Vec<u8>, Vec<u8>) {
    let (software, system) = server_2022_hives(&empty_hive("ROOT"));
    (
        std::fs::read(software).expect("SOFTWARE"),
        std::fs::read(system).expect("SYSTEM"),
    )
}

fn inspect_disk(disk: &Path) -> Report {
    let disks = Disks::open(&[disk.to_path_buf()]).expect("open");
    inspect(&disks, Options::default())
}

fn the_os(report: &Report) -> &OperatingSystem {
    let [os] = &report.operating_systems[..] else {
        panic!("one OS expected: {report:#?}");
    };
    os
}

/// blkid's TYPE, LABEL and UUID of the filesystem at `offset` of `disk`.
fn blkid_at(disk: &Path, offset: u64) -> FilesystemFact {
    let out = run(
        "blkid",
        "util-linux",
        &[
            "-p",
            "-o",
            "export",
            "-O",
            &offset.to_string(),
            &disk.to_string_lossy(),
        ],
        None,
    );
    let tag = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
    };
    FilesystemFact {
        device: String::new(),
        fstype: tag("TYPE").expect("blkid TYPE"),
        label: tag("LABEL"),
        uuid: tag("UUID"),
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn app(name: &str, display: &str) -> Application {
    Application {
        name: name.into(),
        display_name: s(display),
        ..Application::default()
    }
}

/// Everything virt-inspector would say of the guest, from what was put into it.
fn expected(disk: &Path) -> OperatingSystem {
    use server_2022::*;
    let filesystem = |device: &str, offset| FilesystemFact {
        device: device.into(),
        ..blkid_at(disk, offset)
    };
    OperatingSystem {
        root: "/dev/sda1".into(),
        name: "windows".into(),
        distro: s("windows"),
        product_name: s(PRODUCT_NAME),
        product_variant: s("Server"),
        major_version: 10,
        minor_version: 0,
        arch: s("x86_64"),
        hostname: s(HOSTNAME),
        package_format: None,
        package_management: None,
        windows_systemroot: s("/WINDOWS"),
        windows_current_control_set: s("ControlSet001"),
        osinfo: s("win2k22"),
        mountpoints: vec![Mountpoint {
            device: "/dev/sda1".into(),
            mountpoint: "/".into(),
        }],
        filesystems: vec![
            filesystem("/dev/sda1", SYSTEM_START),
            filesystem("/dev/sda2", DATA_START),
        ],
        drive_mappings: vec![
            DriveMapping {
                name: "C".into(),
                device: "/dev/sda1".into(),
            },
            DriveMapping {
                name: "D".into(),
                device: "/dev/sda2".into(),
            },
        ],
        applications: Some(vec![
            Application {
                version: s("23.01"),
                publisher: s("Igor Pavlov"),
                install_path: s(r"C:\Program Files\7-Zip\"),
                url: s("https://www.7-zip.org/"),
                description: s("file archiver"),
                ..app(NATIVE_APPS[0].0, NATIVE_APPS[0].1)
            },
            Application {
                version: s("107.0.1"),
                publisher: s("RedHat"),
                ..app(NATIVE_APPS[1].0, NATIVE_APPS[1].1)
            },
            Application {
                version: s("8.6.2"),
                publisher: s("Notepad++ Team"),
                ..app(WOW64_APPS[0].0, WOW64_APPS[0].1)
            },
        ]),
        services: None,
        accounts: None,
        network: None,
        system: None,
        warnings: vec![],
    }
}

#[test]
fn the_whole_report_is_what_was_put_in() {
    let disk = guest();
    let report = inspect_disk(&disk);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let os = the_os(&report);
    let want = expected(&disk);
    // Field by field first, for a readable failure; then the whole.
    assert_eq!(os.filesystems, want.filesystems);
    assert_eq!(os.drive_mappings, want.drive_mappings);
    assert_eq!(os.applications, want.applications);
    assert_eq!(os.warnings, want.warnings);
    assert_eq!(format!("{os:#?}"), format!("{want:#?}"));
    // The NTFS label and FAT label are the ones the tools wrote.
    assert_eq!(os.filesystems[0].label.as_deref(), Some("Windows"));
    assert_eq!(os.filesystems[1].label.as_deref(), Some("DATA"));

    let without = inspect(
        &Disks::open(&[disk]).expect("open"),
        Options {
            applications: false,
        },
    );
    let os = the_os(&without);
    assert_eq!(os.applications, None);
    assert_eq!(os.osinfo.as_deref(), Some("win2k22"));
}

/// hivex reads the same facts out of the hives as the report gives.
#[test]
fn hivex_agrees_with_the_report() {
    let (software, system) = server_2022_hives(&empty_hive("ROOT"));
    let get = |hive: &Path, key: &str, value: &str| {
        let h = hive.display().to_string();
        run("hivexget", "libhivex-bin", &[&h, key, value], None)
            .trim_end()
            .to_string()
    };
    let report = inspect_disk(&guest());
    let os = the_os(&report);
    assert_eq!(
        Some(get(
            &software,
            r"Microsoft\Windows NT\CurrentVersion",
            "ProductName"
        )),
        os.product_name
    );
    assert_eq!(
        Some(get(
            &system,
            r"ControlSet001\Services\Tcpip\Parameters",
            "Hostname"
        )),
        os.hostname
    );
}

#[test]
fn tiny_pe_is_a_real_pe_and_the_fuzz_seed() {
    let pe = tiny_pe(0x8664);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cmd.exe");
    std::fs::write(&path, &pe).expect("write");
    let described = run("file", "file", &["-b", &path.to_string_lossy()], None);
    assert!(
        described.starts_with("PE32+ executable (console) x86-64"),
        "{described}"
    );
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/windows_pe/cmd.exe");
    assert_eq!(std::fs::read(seed).expect("seed"), pe);
    // A 32-bit one reads as i386.
    let mut pe32 = tiny_pe(0x014c);
    pe32[0x58..0x5a].copy_from_slice(&0x010bu16.to_le_bytes());
    assert_eq!(porthole_inspect::windows::pe::arch_of(&pe32), Ok("i386"));
}

#[test]
fn xml_is_valid_and_in_virt_inspectors_layout() {
    let document = xml::to_string(&inspect_disk(&guest()));
    assert_virt_inspector_rng(&document);
    let os = "/operatingsystems/operatingsystem";
    assert_eq!(xpath(&document, &format!("{os}/name")), "windows");
    assert_eq!(xpath(&document, &format!("{os}/distro")), "windows");
    assert_eq!(xpath(&document, &format!("{os}/osinfo")), "win2k22");
    assert_eq!(xpath(&document, &format!("{os}/arch")), "x86_64");
    assert_eq!(
        xpath(
            &document,
            &format!("{os}/drive_mappings/drive_mapping[@name='C']")
        ),
        "/dev/sda1"
    );
    assert_eq!(
        xpath(
            &document,
            &format!("{os}/drive_mappings/drive_mapping[@name='D']")
        ),
        "/dev/sda2"
    );
    assert_eq!(xpath(&document, "count(//application)"), "3");
    assert!(!document.contains("<package_format"), "{document}");
    // The Windows elements where virt-inspector writes them.
    let body = |from: &str, to: &str| {
        let start = document.find(from).expect(from);
        let end = document.find(to).expect(to);
        assert!(start < end, "{from} after {to}");
        document[start..end].to_string()
    };
    assert_eq!(
        body("    <minor_version>", "    <hostname>"),
        "    <minor_version>0</minor_version>\n    \
         <windows_systemroot>/WINDOWS</windows_systemroot>\n    \
         <windows_current_control_set>ControlSet001</windows_current_control_set>\n"
    );
    assert_eq!(
        body("    </filesystems>", "    <applications>"),
        "    </filesystems>\n    <drive_mappings>\n      \
         <drive_mapping name=\"C\">/dev/sda1</drive_mapping>\n      \
         <drive_mapping name=\"D\">/dev/sda2</drive_mapping>\n    </drive_mappings>\n"
    );
}

/// Validates JSON on stdin against the schema named first; errors on stderr.
const VALIDATE_PY: &str = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.exit("python3's jsonschema is missing: install the Debian package `python3-jsonschema`")
schema = json.load(open(sys.argv[1]))
errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(sys.stdin)))
for e in errors:
    print("/".join(map(str, e.absolute_path)), e.message, file=sys.stderr)
sys.exit(1 if errors else 0)
"#;

#[test]
fn json_follows_its_schema() {
    let report = inspect_disk(&guest());
    let json = serde_json::to_string(&report).expect("serialize");
    let schema = docs_file("inspect-report.schema.json");
    run(
        "python3",
        "python3-jsonschema",
        &["-c", VALIDATE_PY, &schema],
        Some(&json),
    );
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let os = &value["operating_systems"][0];
    assert_eq!(os["windows_systemroot"], "/WINDOWS");
    assert_eq!(os["drive_mappings"][1]["device"], "/dev/sda2");
    // The schema refuses a drive letter that is not one.
    let mut wrong = value.clone();
    wrong["operating_systems"][0]["drive_mappings"][0]["name"] = "C:".into();
    let mut child = std::process::Command::new("python3")
        .args(["-c", VALIDATE_PY, &schema])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(wrong.to_string().as_bytes())
        .expect("write");
    assert!(!child.wait().expect("wait").success());
}

// ---- hostile variants: each problem a warning, the rest of the report still there ----

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The guest with these hives and a real cmd.exe.
fn guest_with(software: Option<&[u8]>, system: Option<&[u8]>) -> Report {
    let disk = windows_guest(WindowsFiles {
        software,
        system,
        cmd_exe: &tiny_pe(0x8664),
    });
    inspect_disk(&disk)
}

/// The facts that come from SYSTEM and the filesystem, whatever happened to SOFTWARE.
fn assert_system_facts(os: &OperatingSystem) {
    assert_eq!(os.name, "windows");
    assert_eq!(os.arch.as_deref(), Some("x86_64"));
    assert_eq!(os.hostname.as_deref(), Some(server_2022::HOSTNAME));
    assert_eq!(os.windows_systemroot.as_deref(), Some("/WINDOWS"));
    assert_eq!(
        os.windows_current_control_set.as_deref(),
        Some("ControlSet001")
    );
    assert_eq!(os.drive_mappings.len(), 2);
}

#[test]
fn uninstall_subkey_cycle_is_a_warning() {
    let (mut software, system) = hives();
    // The native Uninstall key's subkey list becomes an index whose one entry is itself.
    let hive = Hive::new(&software).expect("hive");
    let key = hive
        .open(r"Microsoft\Windows\CurrentVersion\Uninstall")
        .expect("readable")
        .expect("exists");
    let nk = key.byte_offset() as usize + 4;
    let list_cell = le_u32(&software, nk + 28);
    let list = list_cell as usize + 4096 + 4;
    software[list..list + 2].copy_from_slice(b"ri");
    software[list + 2..list + 4].copy_from_slice(&1u16.to_le_bytes());
    software[list + 4..list + 8].copy_from_slice(&list_cell.to_le_bytes());
    let report = guest_with(Some(&software), Some(&system));
    let os = the_os(&report);
    assert!(
        os.warnings
            .iter()
            .any(|w| w.contains("SOFTWARE") && w.contains("subkey list")),
        "{:?}",
        os.warnings
    );
    // The 32-bit view and every other fact are still read.
    let names: Vec<&str> = os
        .applications
        .as_deref()
        .expect("applications")
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["Notepad++"]);
    assert_eq!(os.osinfo.as_deref(), Some("win2k22"));
    assert_system_facts(os);
}

#[test]
fn truncated_software_hive_is_a_warning() {
    let (software, system) = hives();
    let cut = &software[..4096 + 2048];
    let report = guest_with(Some(cut), Some(&system));
    let os = the_os(&report);
    assert!(
        os.warnings.iter().any(|w| w.contains("truncated")),
        "{:?}",
        os.warnings
    );
    // Reported once, though two readers open SOFTWARE.
    let truncated = os
        .warnings
        .iter()
        .filter(|w| w.contains("truncated"))
        .count();
    assert_eq!(truncated, 1, "{:?}", os.warnings);
    assert_system_facts(os);
}

#[test]
fn missing_software_hive_is_a_warning() {
    let (_, system) = hives();
    let report = guest_with(None, Some(&system));
    let os = the_os(&report);
    assert!(
        os.warnings
            .iter()
            .any(|w| w.contains("SOFTWARE") && w.contains("no such file")),
        "{:?}",
        os.warnings
    );
    assert_eq!(os.product_name, None);
    assert_eq!(os.osinfo, None);
    assert_eq!(os.applications.as_deref(), Some(&[][..]));
    assert_system_facts(os);
}

#[test]
fn garbage_system_hive_and_cmd_exe_are_warnings() {
    let (software, _) = hives();
    let disk = windows_guest(WindowsFiles {
        software: Some(&software),
        system: Some(b"regf but not really a hive"),
        cmd_exe: b"MZ\0\0",
    });
    let report = inspect_disk(&disk);
    let os = the_os(&report);
    for want in ["SYSTEM: hive base block", "cmd.exe: PE: DOS header"] {
        assert!(
            os.warnings.iter().any(|w| w.contains(want)),
            "{want}: {:?}",
            os.warnings
        );
    }
    assert_eq!(os.arch, None);
    assert_eq!(os.hostname, None);
    assert!(os.drive_mappings.is_empty());
    assert_eq!(os.osinfo.as_deref(), Some("win2k22"));
    assert_eq!(os.applications.as_ref().map(Vec::len), Some(3));
}

/// The drive letters map by signature and offset: the same hives on a disk with another
/// signature map nothing.
#[test]
fn drive_letters_need_the_right_disk_signature() {
    let disk = guest();
    let copy = tempfile::NamedTempFile::new().expect("temp");
    std::fs::copy(&disk, copy.path()).expect("copy");
    windows::patch_disk_signature(copy.path(), 0x0bad_5eed);
    let report = inspect_disk(copy.path());
    let os = the_os(&report);
    assert!(os.drive_mappings.is_empty(), "{:?}", os.drive_mappings);
    assert_eq!(os.hostname.as_deref(), Some(server_2022::HOSTNAME));
}

/// F: names a GPT partition by its GUID: the root partition of the UEFI Linux guest, attached
/// as the second disk, whose OS is found beside Windows.
#[test]
fn gpt_partition_maps_by_its_guid_on_a_second_disk() {
    let (linux_disk, _) = porthole_testkit::guests::gpt_ext4_esp_guest();
    let disks = Disks::open(&[guest(), linux_disk]).expect("open");
    let report = inspect(&disks, Options::default());
    let roots: Vec<(&str, &str)> = report
        .operating_systems
        .iter()
        .map(|os| (os.root.as_str(), os.name.as_str()))
        .collect();
    assert_eq!(roots, [("/dev/sda1", "windows"), ("/dev/sdb2", "linux")]);
    let windows = &report.operating_systems[0];
    let letters: Vec<(&str, &str)> = windows
        .drive_mappings
        .iter()
        .map(|m| (m.name.as_str(), m.device.as_str()))
        .collect();
    assert_eq!(
        letters,
        [("C", "/dev/sda1"), ("D", "/dev/sda2"), ("F", "/dev/sdb2")]
    );
    assert!(windows.warnings.is_empty(), "{:?}", windows.warnings);
}
