//! Windows registry facts against real hives: each test hive starts as porthole's minimal
//! empty hive (`fuzzing::empty_hive`; hivex cannot create one and Debian ships none), is filled
//! by Debian's `hivexregedit --merge` (testkit's `guests::windows::build_hive`) from a .reg
//! file written here, and is then read by
//! porthole and compared with what was merged and with what hivex itself reads back
//! (`hivexregedit --export`, `hivexget`). Hostile hives are real hives with one structure
//! patched; every reader must return warnings, never panic or hang.

use porthole_inspect::fuzzing::{
    empty_hive, fix_hive_checksum, fuzz_windows_registry, fuzz_windows_uninstall,
};
use porthole_inspect::packages::windows::parse_software;
use porthole_inspect::packages::Application;
use porthole_inspect::windows::hive::{kind, Hive};
use porthole_inspect::windows::{
    map_drive_letters, read_software, read_system, PartitionInfo, PartitionRef,
};
use porthole_testkit::guests::windows::{reg_file, sz, sz_utf16, SOFTWARE_PREFIX, SYSTEM_PREFIX};
use porthole_testkit::run;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SOFTWARE: &str = SOFTWARE_PREFIX;
const SYSTEM: &str = SYSTEM_PREFIX;

/// A hive built by hivexregedit from `reg` into porthole's empty hive (cached by its text).
fn build_hive(name: &str, prefix: &str, reg: &str) -> PathBuf {
    porthole_testkit::guests::windows::build_hive(name, prefix, reg, &empty_hive("ROOT"))
}

const CURRENT_VERSION: &str = r"Microsoft\Windows NT\CurrentVersion";
const UNINSTALL: &str = r"Microsoft\Windows\CurrentVersion\Uninstall";
const UNINSTALL_32: &str = r"WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";
const CAFE: &str = "Café Ünïcode ☕ 東京";

/// A Windows 10 (or 11, by `build`) Pro client's SOFTWARE hive with 64- and 32-bit apps.
fn client_software(build: &str) -> PathBuf {
    let version: &[(&str, &str)] = &[
        ("ProductName", &sz("Windows 10 Pro")),
        ("CurrentMajorVersionNumber", "dword:0000000a"),
        ("CurrentMinorVersionNumber", "dword:00000000"),
        ("CurrentVersion", &sz("6.3")),
        ("CurrentBuildNumber", &sz(build)),
        ("CurrentBuild", &sz(build)),
        ("InstallationType", &sz("Client")),
        ("EditionID", &sz("Professional")),
    ];
    let seven_zip: &[(&str, &str)] = &[
        ("DisplayName", &sz("7-Zip 23.01 (x64)")),
        ("DisplayVersion", &sz("23.01")),
        ("Publisher", &sz("Igor Pavlov")),
        ("InstallLocation", &sz(r"C:\\Program Files\\7-Zip\\")),
        ("URLInfoAbout", &sz("https://www.7-zip.org/")),
        ("Comments", &sz("file archiver")),
        ("EstimatedSize", "dword:000015f0"),
    ];
    let cafe: &[(&str, &str)] = &[
        ("DisplayName", &sz_utf16(CAFE)),
        ("DisplayVersion", "hex(2):31,00,2e,00,30,00,00,00"),
    ];
    let update: &[(&str, &str)] = &[("ParentKeyName", &sz("OperatingSystem"))];
    let notepad: &[(&str, &str)] = &[
        ("DisplayName", &sz("Notepad++ (32-bit x86)")),
        ("DisplayVersion", &sz("8.6.2")),
        ("Publisher", &sz("Notepad++ Team")),
    ];
    let vcredist: &[(&str, &str)] = &[
        (
            "DisplayName",
            &sz("Microsoft Visual C++ 2015-2022 Redistributable (x86)"),
        ),
        ("DisplayVersion", &sz("14.38.33130.0")),
        ("Publisher", &sz("Microsoft Corporation")),
    ];
    let reg = reg_file(
        SOFTWARE,
        &[
            (CURRENT_VERSION, version),
            (&format!(r"{UNINSTALL}\7-Zip"), seven_zip),
            (
                &format!(r"{UNINSTALL}\{{AC76BA86-7AD7-1033-7B44-AC0F074E4100}}"),
                cafe,
            ),
            (&format!(r"{UNINSTALL}\KB5005565"), update),
            (&format!(r"{UNINSTALL_32}\Notepad++"), notepad),
            (
                &format!(r"{UNINSTALL_32}\{{e7802eac-3305-4da0-9378-e55d1ed05518}}"),
                vcredist,
            ),
            (r"Loop\L1\L2\L3\L4\L5\L6\L7\L8\L9\L10", &[]),
        ],
    );
    build_hive(&format!("software-{build}"), SOFTWARE, &reg)
}

fn server_2022_software() -> PathBuf {
    let reg = reg_file(
        SOFTWARE,
        &[(
            CURRENT_VERSION,
            &[
                ("ProductName", &sz("Windows Server 2022 Standard")),
                ("CurrentMajorVersionNumber", "dword:0000000a"),
                ("CurrentMinorVersionNumber", "dword:00000000"),
                ("CurrentVersion", &sz("6.3")),
                ("CurrentBuildNumber", &sz("20348")),
                ("InstallationType", &sz("Server")),
                ("EditionID", &sz("ServerStandard")),
            ],
        )],
    );
    build_hive("software-2022", SOFTWARE, &reg)
}

fn windows7_software() -> PathBuf {
    let reg = reg_file(
        SOFTWARE,
        &[(
            CURRENT_VERSION,
            &[
                ("ProductName", &sz("Windows 7 Professional")),
                ("CurrentVersion", &sz("6.1")),
                ("CurrentBuildNumber", &sz("7601")),
                ("EditionID", &sz("Professional")),
            ],
        )],
    );
    build_hive("software-win7", SOFTWARE, &reg)
}

/// The GPT partition GUID of D: in the SYSTEM hive, and its on-disk bytes.
const D_PARTUUID: &str = "6e0a42b1-93c7-4f5a-b8d2-0c1e2f3a4b5c";
const D_BLOB: &str = "hex:44,4d,49,4f,3a,49,44,3a,b1,42,0a,6e,c7,93,5a,4f,b8,d2,0c,1e,2f,3a,4b,5c";

fn system_hive() -> PathBuf {
    let reg = reg_file(
        SYSTEM,
        &[
            (
                "Select",
                &[
                    ("Current", "dword:00000002"),
                    ("Default", "dword:00000002"),
                    ("LastKnownGood", "dword:00000001"),
                ],
            ),
            (
                r"ControlSet001\Services\Tcpip\Parameters",
                &[("Hostname", &sz("OLD-NAME"))],
            ),
            (
                r"ControlSet002\Services\Tcpip\Parameters",
                &[("Hostname", &sz("WIN-PORTHOLE")), ("Domain", &sz(""))],
            ),
            (
                "MountedDevices",
                &[
                    (r"\DosDevices\C:", "hex:78,56,34,12,00,00,10,00,00,00,00,00"),
                    (r"\DosDevices\D:", D_BLOB),
                    (
                        r"\??\Volume{0b5c3e0e-0000-0000-0000-100000000000}",
                        "hex:78,56,34,12,00,00,10,00,00,00,00,00",
                    ),
                    (r"\DosDevices\E:", &sz_utf16(r"\??\IDE#CdRomQEMU")),
                ],
            ),
        ],
    );
    build_hive("system", SYSTEM, &reg)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read hive")
}

fn hivexget(hive: &Path, key: &str, value: &str) -> String {
    let h = hive.display().to_string();
    run("hivexget", "libhivex-bin", &[&h, key, value], None)
        .trim_end_matches('\n')
        .to_string()
}

#[test]
fn windows10_client_version() {
    let hive = client_software("19045");
    let read = read_software(&read(&hive));
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    let v = read.facts;
    assert_eq!(v.product_name.as_deref(), Some("Windows 10 Pro"));
    assert_eq!(v.product_variant.as_deref(), Some("Client"));
    assert_eq!(v.edition_id.as_deref(), Some("Professional"));
    // The DWORDs win over CurrentVersion's "6.3".
    assert_eq!((v.major_version, v.minor_version), (10, 0));
    assert_eq!(v.build, Some(19045));
    assert_eq!(v.osinfo.as_deref(), Some("win10"));
    assert_eq!(
        hivexget(&hive, CURRENT_VERSION, "ProductName"),
        "Windows 10 Pro"
    );
}

#[test]
fn windows11_says_10_but_is_win11() {
    let read = read_software(&read(&client_software("22631")));
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.facts.product_name.as_deref(), Some("Windows 10 Pro"));
    assert_eq!(read.facts.build, Some(22631));
    assert_eq!(read.facts.osinfo.as_deref(), Some("win11"));
}

#[test]
fn server_2022_version() {
    let read = read_software(&read(&server_2022_software()));
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    let v = read.facts;
    assert_eq!(
        v.product_name.as_deref(),
        Some("Windows Server 2022 Standard")
    );
    assert_eq!(v.product_variant.as_deref(), Some("Server"));
    assert_eq!(v.edition_id.as_deref(), Some("ServerStandard"));
    assert_eq!(
        (v.major_version, v.minor_version, v.build),
        (10, 0, Some(20348))
    );
    assert_eq!(v.osinfo.as_deref(), Some("win2k22"));
}

#[test]
fn windows7_version_from_current_version_string() {
    let read = read_software(&read(&windows7_software()));
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    let v = read.facts;
    assert_eq!((v.major_version, v.minor_version), (6, 1));
    assert_eq!(v.product_variant, None);
    assert_eq!(v.build, Some(7601));
    assert_eq!(v.osinfo.as_deref(), Some("win7"));
}

#[test]
fn system_hive_control_set_hostname_and_drives() {
    let hive = system_hive();
    let read = read_system(&read(&hive));
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    let s = read.facts;
    assert_eq!(s.control_set.as_deref(), Some("ControlSet002"));
    assert_eq!(s.hostname.as_deref(), Some("WIN-PORTHOLE"));
    assert_eq!(
        hivexget(
            &hive,
            r"ControlSet002\Services\Tcpip\Parameters",
            "Hostname"
        ),
        "WIN-PORTHOLE"
    );
    // The volume GUID link and the CD-ROM's device path are not partitions.
    let letters: Vec<char> = s.drives.iter().map(|d| d.letter).collect();
    assert_eq!(letters, ['C', 'D']);
    assert_eq!(
        s.drives[0].location,
        PartitionRef::Mbr {
            disk_signature: 0x1234_5678,
            start: 1 << 20
        }
    );
    assert_eq!(
        s.drives[1].location,
        PartitionRef::Gpt {
            partuuid: D_PARTUUID.into()
        }
    );
    let partitions = [
        PartitionInfo {
            device: "/dev/sda1".into(),
            mbr_disk_signature: Some(0x1234_5678),
            start: 1 << 20,
            gpt_partuuid: None,
        },
        PartitionInfo {
            device: "/dev/sdb2".into(),
            mbr_disk_signature: None,
            start: 17 << 20,
            gpt_partuuid: Some(D_PARTUUID.to_uppercase()),
        },
    ];
    assert_eq!(
        map_drive_letters(&s.drives, &partitions),
        [('C', "/dev/sda1".into()), ('D', "/dev/sdb2".into())]
    );
}

#[test]
fn hostname_falls_back_on_computer_name() {
    let reg = reg_file(
        SYSTEM,
        &[
            ("Select", &[("Current", "dword:00000001")]),
            (
                r"ControlSet001\Control\ComputerName\ComputerName",
                &[("ComputerName", &sz("FALLBACK"))],
            ),
        ],
    );
    let read = read_system(&read(&build_hive("system-computername", SYSTEM, &reg)));
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.facts.control_set.as_deref(), Some("ControlSet001"));
    assert_eq!(read.facts.hostname.as_deref(), Some("FALLBACK"));
    assert!(read.facts.drives.is_empty());
}

#[test]
fn uninstall_keys_in_both_views() {
    let hive = client_software("19045");
    let parsed = parse_software(&read(&hive));
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let app = |name: &str, display: &str| Application {
        name: name.into(),
        display_name: Some(display.into()),
        ..Application::default()
    };
    let want = [
        Application {
            version: Some("23.01".into()),
            publisher: Some("Igor Pavlov".into()),
            install_path: Some(r"C:\Program Files\7-Zip\".into()),
            url: Some("https://www.7-zip.org/".into()),
            description: Some("file archiver".into()),
            ..app("7-Zip", "7-Zip 23.01 (x64)")
        },
        Application {
            version: Some("1.0".into()),
            ..app("{AC76BA86-7AD7-1033-7B44-AC0F074E4100}", CAFE)
        },
        Application {
            version: Some("8.6.2".into()),
            publisher: Some("Notepad++ Team".into()),
            ..app("Notepad++", "Notepad++ (32-bit x86)")
        },
        Application {
            version: Some("14.38.33130.0".into()),
            publisher: Some("Microsoft Corporation".into()),
            ..app(
                "{e7802eac-3305-4da0-9378-e55d1ed05518}",
                "Microsoft Visual C++ 2015-2022 Redistributable (x86)",
            )
        },
    ];
    let mut got = parsed.applications.clone();
    got.sort_by(|a, b| a.name.cmp(&b.name));
    let mut want = want.to_vec();
    want.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got, want);
    // hivex reads the same display names (KB5005565 has none: not an application).
    for a in &parsed.applications {
        let base = if a.name.contains('+') || a.name.starts_with("{e7") {
            UNINSTALL_32
        } else {
            UNINSTALL
        };
        let key = format!(r"{base}\{}", a.name);
        assert_eq!(
            Some(hivexget(&hive, &key, "DisplayName")),
            a.display_name,
            "{key}"
        );
    }
}

/// One value as `hivexregedit --export` prints it.
fn export_line(name: &str, kind_: u32, data: &[u8]) -> String {
    let name = if name.is_empty() {
        "@".to_string()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    };
    if kind_ == kind::DWORD && data.len() == 4 {
        let v = u32::from_le_bytes(data.try_into().expect("4 bytes"));
        return format!("{name}=dword:{v:08x}");
    }
    let hex: Vec<String> = data.iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}=hex({kind_:x}):{}", hex.join(","))
}

/// Every key and value of the hive as porthole reads it, in `hivexregedit --export`'s form,
/// each key's lines sorted.
fn porthole_export(bytes: &[u8]) -> Vec<(String, Vec<String>)> {
    let hive = Hive::new(bytes).expect("hive opens");
    let mut keys = Vec::new();
    let warnings = hive.walk(100_000, |path, key| {
        let mut lines: Vec<String> = key
            .values()
            .expect("values")
            .into_iter()
            .map(|v| {
                let v = v.expect("value");
                export_line(&v.name, v.kind, &v.data)
            })
            .collect();
        lines.sort();
        keys.push((
            format!("[{}]", if path.is_empty() { "\\" } else { path }),
            lines,
        ));
    });
    assert!(warnings.is_empty(), "{warnings:?}");
    keys.sort();
    keys
}

fn hivex_export(hive: &Path) -> Vec<(String, Vec<String>)> {
    let h = hive.display().to_string();
    let text = run(
        "hivexregedit",
        "libwin-hivex-perl",
        &["--export", &h, "\\"],
        None,
    );
    let text = text.replace("\\\n  ", "");
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        if line.starts_with('[') {
            keys.push((line.to_string(), Vec::new()));
        } else if let Some((_, lines)) = keys.last_mut() {
            lines.push(line.to_string());
        }
    }
    for (_, lines) in &mut keys {
        lines.sort();
    }
    keys.sort();
    keys
}

#[test]
fn every_key_and_value_matches_hivex_export() {
    // hivex stores a value above 16344 bytes in one cell, not as `db` segments.
    let blob: Vec<String> = (0..40_000).map(|i| format!("{:02x}", i % 251)).collect();
    let long_text = sz(&"long text ".repeat(2000));
    let big_reg = reg_file(
        SOFTWARE,
        &[(
            "Big",
            &[
                ("Blob", &format!("hex:{}", blob.join(","))),
                ("Text", &long_text),
                ("Q", "hex(b):88,77,66,55,44,33,22,11"),
                ("Multi", "hex(7):61,00,00,00,62,00,63,00,00,00,00,00"),
            ],
        )],
    );
    let big = build_hive("software-big", SOFTWARE, &big_reg);
    let big_bytes = read(&big);
    let hive = Hive::new(&big_bytes).expect("hive");
    let key = hive.open("Big").expect("readable").expect("exists");
    let value = |name| key.value(name).expect("readable").expect("exists");
    assert_eq!(value("Blob").data.len(), 40_000);
    assert_eq!(value("Text").string(), Some("long text ".repeat(2000)));
    assert_eq!(value("Q").qword(), Some(0x1122_3344_5566_7788));
    assert_eq!(
        value("Multi").strings(),
        Some(vec!["a".into(), "bc".into()])
    );
    for hive in [
        client_software("19045"),
        system_hive(),
        windows7_software(),
        big,
    ] {
        let ours = porthole_export(&read(&hive));
        let theirs = hivex_export(&hive);
        assert!(ours.len() >= 2, "{} keys", ours.len());
        assert_eq!(ours, theirs, "{}", hive.display());
    }
}

// ---- hostile hives ----

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The file offset of the data (past the size field) of the key at `path`.
fn nk_data(bytes: &[u8], path: &str) -> usize {
    let hive = Hive::new(bytes).expect("hive");
    let key = hive.open(path).expect("readable").expect("exists");
    key.byte_offset() as usize + 4
}

/// The file offset of the `vk` data of value `name` of the key at `path`.
fn vk_data(bytes: &[u8], path: &str, name: &str) -> usize {
    let nk = nk_data(bytes, path);
    let count = le_u32(bytes, nk + 36) as usize;
    let list = le_u32(bytes, nk + 40) as usize + 4096 + 4;
    (0..count)
        .map(|i| le_u32(bytes, list + 4 * i) as usize + 4096 + 4)
        .find(|&vk| {
            let len = u16::from_le_bytes([bytes[vk + 2], bytes[vk + 3]]) as usize;
            &bytes[vk + 20..vk + 20 + len] == name.as_bytes()
        })
        .expect("value exists")
}

/// Runs every reader on `bytes` and fails if one takes more than a second.
fn all_readers(bytes: &[u8]) {
    let start = Instant::now();
    let _ = read_software(bytes);
    let _ = read_system(bytes);
    let _ = parse_software(bytes);
    fuzz_windows_registry(bytes);
    fuzz_windows_uninstall(bytes);
    assert!(
        // A hang guard, not a speed goal: generous for a debug build on a loaded machine.
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn truncated_hives_warn() {
    let bytes = read(&client_software("19045"));
    for len in [
        0,
        100,
        4095,
        4096,
        4096 + 40,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let cut = &bytes[..len];
        all_readers(cut);
        let read = read_software(cut);
        assert!(!read.warnings.is_empty(), "cut at {len}: no warning");
    }
    assert!(Hive::new(&bytes[..4095]).is_err());
    let half = Hive::new(&bytes[..bytes.len() / 2]).expect("half a hive still opens");
    assert!(
        half.warnings()[0].contains("truncated"),
        "{:?}",
        half.warnings()
    );
}

#[test]
fn subkey_list_pointing_at_itself() {
    let mut bytes = read(&client_software("19045"));
    let nk = nk_data(&bytes, UNINSTALL);
    let list_cell = le_u32(&bytes, nk + 28);
    let list = list_cell as usize + 4096 + 4;
    // As an index whose one entry is itself.
    let mut looped = bytes.clone();
    looped[list..list + 2].copy_from_slice(b"ri");
    looped[list + 2..list + 4].copy_from_slice(&1u16.to_le_bytes());
    set_u32(&mut looped, list + 4, list_cell);
    all_readers(&looped);
    let parsed = parse_software(&looped);
    assert!(
        parsed.warnings.iter().any(|w| w.contains("subkey list")),
        "{:?}",
        parsed.warnings
    );
    // Native apps are lost, the 32-bit view is still read.
    assert_eq!(parsed.applications.len(), 2);
    // As a leaf list whose entries point at the list itself.
    set_u32(&mut bytes, list + 4, list_cell);
    all_readers(&bytes);
    let parsed = parse_software(&bytes);
    assert!(
        parsed.warnings.iter().any(|w| w.contains("expected nk")),
        "{:?}",
        parsed.warnings
    );
}

#[test]
fn absurd_cell_sizes() {
    let bytes = read(&client_software("19045"));
    let nk = nk_data(&bytes, CURRENT_VERSION);
    for size in [i32::MIN, -4, 0, 1 << 30, -(1 << 30)] {
        let mut patched = bytes.clone();
        patched[nk - 4..nk].copy_from_slice(&size.to_le_bytes());
        all_readers(&patched);
        let read = read_software(&patched);
        assert_eq!(read.facts.product_name, None, "size {size}");
        assert!(
            read.warnings.iter().any(|w| w.contains("cell")),
            "size {size}: {:?}",
            read.warnings
        );
    }
}

#[test]
fn value_with_a_lying_length() {
    let bytes = read(&client_software("19045"));
    let vk = vk_data(&bytes, CURRENT_VERSION, "ProductName");
    for size in [0x7fff_fff0u32, 0x10_0001, 0x1000, 0x8000_0010] {
        let mut patched = bytes.clone();
        set_u32(&mut patched, vk + 4, size);
        all_readers(&patched);
        let read = read_software(&patched);
        assert_eq!(read.facts.product_name, None, "size {size:#x}");
        assert!(
            read.warnings.iter().any(|w| w.contains("\"ProductName\"")),
            "size {size:#x}: {:?}",
            read.warnings
        );
        // The other values are still read.
        assert_eq!(read.facts.osinfo.as_deref(), Some("win10"));
    }
}

#[test]
fn ten_level_deep_cycle() {
    let mut bytes = read(&client_software("19045"));
    // L10 (no subkeys) gets Loop's subkey list, whose one entry is L1.
    let looped = nk_data(&bytes, "Loop");
    let l10 = nk_data(&bytes, r"Loop\L1\L2\L3\L4\L5\L6\L7\L8\L9\L10");
    let list = le_u32(&bytes, looped + 28);
    set_u32(&mut bytes, l10 + 20, 1);
    set_u32(&mut bytes, l10 + 28, list);
    all_readers(&bytes);
    let hive = Hive::new(&bytes).expect("hive");
    let deep = r"Loop\L1\L2\L3\L4\L5\L6\L7\L8\L9\L10\L1\L2\L3";
    assert_eq!(
        hive.open(deep).expect("readable").expect("exists").name(),
        "L3"
    );
    let mut visited = 0;
    let warnings = hive.walk(1_000_000, |_, _| visited += 1);
    assert!(
        warnings.iter().any(|w| w.contains("own ancestor")),
        "{warnings:?}"
    );
    assert!(visited < 100, "{visited} keys visited");
    // The facts are untouched.
    let read = read_software(&bytes);
    assert_eq!(read.facts.osinfo.as_deref(), Some("win10"));
}

#[test]
fn dirty_hive_is_read_with_a_warning() {
    let mut bytes = read(&server_2022_software());
    set_u32(&mut bytes, 4, 7); // primary sequence number ahead of the secondary
    fix_hive_checksum(&mut bytes);
    let read = read_software(&bytes);
    assert_eq!(read.facts.osinfo.as_deref(), Some("win2k22"));
    assert!(
        read.warnings.iter().any(|w| w.contains("dirty")),
        "{:?}",
        read.warnings
    );
    set_u32(&mut bytes, 508, 0);
    let read = read_software(&bytes);
    assert!(read.warnings.iter().any(|w| w.contains("checksum")));
}

// ---- deterministic mutations ----

use porthole_mutate::Rng;

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    // Three in four mutations hit the hive bins, where the cells are.
    let pos = if rng.below(4) > 0 && data.len() > 4096 {
        4096 + rng.below(data.len() - 4096)
    } else {
        rng.below(data.len())
    };
    let edge: [u64; 6] = [0, 1, u64::MAX, u64::from(u32::MAX), 0x8000_0000, rng.next()];
    match rng.below(5) {
        0 => {
            let bit = 1 << rng.below(8);
            if let Some(b) = data.get_mut(pos) {
                *b ^= bit;
            }
        }
        1 => put(data, pos, &[rng.next() as u8]),
        2 => put(data, pos & !3, &(edge[rng.below(6)] as u32).to_le_bytes()),
        3 => put(data, pos & !1, &(edge[rng.below(6)] as u16).to_le_bytes()),
        _ => data.truncate(pos),
    }
}

fn put(data: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = data.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

#[test]
fn mutated_hives_never_panic() {
    let start = Instant::now();
    for (hive, rounds) in [(client_software("19045"), 2000), (system_hive(), 1000)] {
        let seed = read(&hive);
        fuzz_windows_registry(&seed);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64);
        for i in 0..rounds {
            let mut data = seed.clone();
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut data);
            }
            if i % 2 == 0 {
                fix_hive_checksum(&mut data);
            }
            fuzz_windows_registry(&data);
            fuzz_windows_uninstall(&data);
        }
    }
    eprintln!("3000 mutated hives in {:?}", start.elapsed());
}
