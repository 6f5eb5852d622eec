//! A phony Windows guest, built the way libguestfs builds its `windows.img`: an MBR disk
//! (sfdisk) whose first partition is NTFS (mkntfs, filled through the ntfs-3g FUSE mount)
//! holding `WINDOWS\System32\config\{SOFTWARE,SYSTEM}` and a tiny but valid PE
//! `WINDOWS\System32\cmd.exe`, and a second, FAT data partition. The hives are made by
//! Debian's `hivexregedit --merge` from .reg text ([`reg_file`], [`build_hive`]); the
//! SYSTEM hive's `MountedDevices` names both partitions by this disk's MBR signature and their
//! offsets, so C: and D: map onto them.
//!
//! The system root is spelt `WINDOWS` (as Windows XP spelt it) so that a reader must look it
//! up without case and report the case found.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fsimage::{self, FsType};
use crate::tools::{cached, run, truncate};

/// The MBR disk signature of [`windows_guest`]'s disk.
pub const DISK_SIGNATURE: u32 = 0x5eed_c0de;
/// Where the NTFS system partition (`/dev/sda1`, C:) starts.
pub const SYSTEM_START: u64 = MIB;
/// Where the FAT data partition (`/dev/sda2`, D:) starts.
pub const DATA_START: u64 = SYSTEM_START + SYSTEM_SIZE;
/// The system root directory as the NTFS root holds it.
pub const SYSTEMROOT: &str = "WINDOWS";

const MIB: u64 = 1 << 20;
const SYSTEM_SIZE: u64 = 24 * MIB;
const DATA_SIZE: u64 = 8 * MIB;

/// The registry roots hivexregedit's `--prefix` strips.
pub const SOFTWARE_PREFIX: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE";
pub const SYSTEM_PREFIX: &str = r"HKEY_LOCAL_MACHINE\SYSTEM";

/// A .reg file for `keys` (path below `prefix`, values in .reg syntax), with every ancestor key
/// listed before its children, as hivexregedit needs.
pub fn reg_file(prefix: &str, keys: &[(&str, &[(&str, &str)])]) -> String {
    let mut text = String::from("Windows Registry Editor Version 5.00\n\n");
    let mut seen = std::collections::BTreeSet::new();
    for (path, values) in keys {
        let parts: Vec<&str> = path.split('\\').collect();
        for depth in 1..=parts.len() {
            let key = parts[..depth].join("\\");
            if seen.insert(key.clone()) || depth == parts.len() {
                text.push_str(&format!("[{prefix}\\{key}]\n"));
                if depth == parts.len() {
                    for (name, value) in *values {
                        let name = name.replace('\\', "\\\\");
                        text.push_str(&format!("\"{name}\"={value}\n"));
                    }
                }
                text.push('\n');
            }
        }
    }
    text
}

/// A hive built by `hivexregedit --merge` of `reg` into `empty_hive` (porthole-inspect's
/// `fuzzing::empty_hive`: hivex cannot create a hive and Debian ships none), cached by its
/// inputs.
pub fn build_hive(name: &str, prefix: &str, reg: &str, empty_hive: &[u8]) -> PathBuf {
    let recipe = format!("hive v1 {prefix} {:016x}\n{reg}", digest(&[empty_hive]));
    cached(&recipe, &[name], |paths| {
        let hive = &paths[0];
        std::fs::write(hive, empty_hive).expect("write empty hive");
        let reg_path = hive.with_extension("reg");
        std::fs::write(&reg_path, reg).expect("write .reg");
        let (h, r) = (hive.display().to_string(), reg_path.display().to_string());
        run(
            "hivexregedit",
            "libwin-hivex-perl",
            &["--merge", "--prefix", prefix, &h, &r],
            None,
        );
        std::fs::remove_file(&reg_path).expect("remove .reg");
    })
    .remove(0)
}

/// A REG_SZ in .reg syntax.
pub fn sz(text: &str) -> String {
    format!("\"{text}\"")
}

/// A REG_SZ given as UTF-16LE bytes, for text a .reg file cannot carry portably.
pub fn sz_utf16(text: &str) -> String {
    let bytes: Vec<String> = text
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hex(1):{}", bytes.join(","))
}

/// A REG_BINARY in .reg syntax.
pub fn hex(bytes: &[u8]) -> String {
    let bytes: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("hex:{}", bytes.join(","))
}

/// The `MountedDevices` value of an MBR partition: the disk signature and the partition's
/// first byte, little-endian.
pub fn mbr_mounted_device(signature: u32, start: u64) -> String {
    let mut blob = signature.to_le_bytes().to_vec();
    blob.extend_from_slice(&start.to_le_bytes());
    hex(&blob)
}

/// The `MountedDevices` value of a GPT partition: `DMIO:ID:` and the partition's unique GUID
/// in its on-disk form (the first three fields little-endian).
pub fn gpt_mounted_device(partuuid: &str) -> String {
    let hex_digits: String = partuuid.chars().filter(|c| *c != '-').collect();
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex_digits[2 * i..2 * i + 2], 16).expect("a GUID"))
        .collect();
    let mut blob = b"DMIO:ID:".to_vec();
    for range in [0..4, 4..6, 6..8] {
        blob.extend(bytes[range].iter().rev());
    }
    blob.extend_from_slice(&bytes[8..]);
    hex(&blob)
}

/// A tiny but valid PE32+ console executable for `machine` (`IMAGE_FILE_MACHINE_*`, 0x8664 for
/// x86-64): DOS header, PE and COFF headers, a PE32+ optional header and one `.text` section
/// holding a `ret`, 1 KiB in all. `file(1)` calls it "PE32+ executable (console) x86-64".
pub fn tiny_pe(machine: u16) -> Vec<u8> {
    const LFANEW: usize = 0x40;
    let mut b = vec![0u8; 0x400];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"MZ");
    put(0x3c, &(LFANEW as u32).to_le_bytes());
    put(LFANEW, b"PE\0\0");
    let coff = LFANEW + 4;
    put(coff, &machine.to_le_bytes());
    put(coff + 2, &1u16.to_le_bytes()); // one section
    put(coff + 16, &240u16.to_le_bytes()); // size of the PE32+ optional header
    put(coff + 18, &0x0022u16.to_le_bytes()); // executable, large address aware
    let opt = coff + 20;
    put(opt, &0x020bu16.to_le_bytes()); // PE32+
    put(opt + 4, &0x200u32.to_le_bytes()); // size of code
    put(opt + 16, &0x1000u32.to_le_bytes()); // entry point
    put(opt + 20, &0x1000u32.to_le_bytes()); // base of code
    put(opt + 24, &0x1_4000_0000u64.to_le_bytes()); // image base
    put(opt + 32, &0x1000u32.to_le_bytes()); // section alignment
    put(opt + 36, &0x200u32.to_le_bytes()); // file alignment
    put(opt + 40, &6u16.to_le_bytes()); // OS version 6.0
    put(opt + 48, &6u16.to_le_bytes()); // subsystem version 6.0
    put(opt + 56, &0x2000u32.to_le_bytes()); // size of image
    put(opt + 60, &0x200u32.to_le_bytes()); // size of headers
    put(opt + 68, &3u16.to_le_bytes()); // console subsystem
    put(opt + 70, &0x8160u16.to_le_bytes()); // DLL characteristics: NX, dynamic base, ...
    for (at, size) in [
        (72, 0x10_0000u64),
        (80, 0x1000),
        (88, 0x10_0000),
        (96, 0x1000),
    ] {
        put(opt + at, &size.to_le_bytes()); // stack and heap reserve/commit
    }
    put(opt + 108, &16u32.to_le_bytes()); // data directories
    let section = opt + 240;
    put(section, b".text\0\0\0");
    put(section + 8, &1u32.to_le_bytes()); // virtual size
    put(section + 12, &0x1000u32.to_le_bytes()); // virtual address
    put(section + 16, &0x200u32.to_le_bytes()); // size of raw data
    put(section + 20, &0x200u32.to_le_bytes()); // pointer to raw data
    put(section + 36, &0x6000_0020u32.to_le_bytes()); // code, execute, read
    put(0x200, &[0xc3]); // ret
    b
}

/// What goes into the Windows partition; `None` leaves a hive out.
#[derive(Debug, Clone, Copy)]
pub struct WindowsFiles<'a> {
    pub software: Option<&'a [u8]>,
    pub system: Option<&'a [u8]>,
    pub cmd_exe: &'a [u8],
}

/// The phony Windows guest's one disk (raw), holding `files`; cached by their contents.
///
/// Partition 1 (`/dev/sda1`, type 7) is the NTFS system volume, labelled `Windows`;
/// partition 2 (`/dev/sda2`, type 0xc) a FAT data volume labelled `DATA`. Filling the NTFS
/// volume needs root (the ntfs-3g FUSE mount; ntfs-3g refuses to mount inside an
/// unprivileged user namespace).
pub fn windows_guest(files: WindowsFiles<'_>) -> PathBuf {
    let parts: Vec<&[u8]> = [files.software, files.system, Some(files.cmd_exe)]
        .iter()
        .map(|f| f.unwrap_or(b"(absent)"))
        .collect();
    let present = (files.software.is_some(), files.system.is_some());
    let recipe = format!(
        "phony guest: windows, mbr, ntfs system, fat data v1 {:016x} {present:?}",
        digest(&parts)
    );
    cached(&recipe, &["disk.raw"], |paths| {
        let disk = &paths[0];
        let work = disk.with_extension("work");
        std::fs::create_dir_all(&work).expect("work dir");
        build(disk, &work, files);
        let _ = std::fs::remove_dir_all(&work);
    })
    .remove(0)
}

fn build(disk: &Path, work: &Path, files: WindowsFiles<'_>) {
    truncate(disk, DATA_START + DATA_SIZE + MIB);
    let layout = format!(
        "label: dos\nlabel-id: {DISK_SIGNATURE:#010x}\nstart={}, size={}, type=7, bootable\nstart={}, size={}, type=c\n",
        SYSTEM_START / 512,
        SYSTEM_SIZE / 512,
        DATA_START / 512,
        DATA_SIZE / 512
    );
    let disk_s = disk.to_string_lossy().into_owned();
    run("sfdisk", "fdisk", &["-q", &disk_s], Some(&layout));

    let tree = work.join("tree");
    let system32 = tree.join(SYSTEMROOT).join("System32");
    let config = system32.join("config");
    std::fs::create_dir_all(&config).expect("mkdir config");
    std::fs::create_dir_all(tree.join("Program Files")).expect("mkdir Program Files");
    std::fs::create_dir_all(tree.join("Users/Public")).expect("mkdir Users");
    std::fs::write(system32.join("cmd.exe"), files.cmd_exe).expect("write cmd.exe");
    for (name, bytes) in [("SOFTWARE", files.software), ("SYSTEM", files.system)] {
        if let Some(bytes) = bytes {
            std::fs::write(config.join(name), bytes).expect("write hive");
        }
    }
    let ntfs = work.join("ntfs.img");
    fsimage::make(FsType::Ntfs, &tree, &ntfs, SYSTEM_SIZE / MIB);
    wait_for_ntfs_3g(&ntfs);
    run(
        "ntfslabel",
        "ntfs-3g",
        &["--force", &ntfs.to_string_lossy(), "Windows"],
        None,
    );
    run(
        "dd",
        "coreutils",
        &[
            &format!("if={}", ntfs.display()),
            &format!("of={disk_s}"),
            "bs=1M",
            &format!("seek={}", SYSTEM_START / MIB),
            "conv=notrunc,sparse",
            "status=none",
        ],
        None,
    );
    run(
        "mkfs.vfat",
        "dosfstools",
        &[
            "-n",
            "DATA",
            "--offset",
            &(DATA_START / 512).to_string(),
            &disk_s,
            &(DATA_SIZE / 1024).to_string(),
        ],
        None,
    );
}

/// Overwrites the MBR disk signature (byte 440) of a copy of the guest's disk.
pub fn patch_disk_signature(disk: &Path, signature: u32) {
    crate::tools::dd_write(disk, 440, &signature.to_le_bytes());
}

/// Waits until no ntfs-3g process serves `image`: unmounting a FUSE filesystem returns before
/// ntfs-3g has written the volume back as cleanly unmounted.
fn wait_for_ntfs_3g(image: &Path) {
    let needle = image.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"ntfs-3g"))
                    && args.contains(&needle.as_bytes())
            });
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ntfs-3g still serves {needle} 30 s after unmounting"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn digest(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// What the standard guest's hives say, for the tests to compare with.
pub mod server_2022 {
    pub const PRODUCT_NAME: &str = "Windows Server 2022 Datacenter";
    pub const BUILD: &str = "20348";
    pub const HOSTNAME: &str = "WIN-PHONY2022";
    /// The GPT partition F: names: the root partition of
    /// [`gpt_ext4_esp_guest`](crate::guests::gpt_ext4_esp_guest), so F: maps when that disk is
    /// attached second, and to nothing when the Windows disk is alone.
    pub const F_PARTUUID: &str = crate::guests::ROOT_PARTUUID;
    /// `(key below Uninstall, DisplayName)` of the native and the 32-bit applications.
    pub const NATIVE_APPS: &[(&str, &str)] = &[
        ("7-Zip", "7-Zip 23.01 (x64)"),
        ("{8E4E6F5C-9A4B-4C1D-8E6F-0A1B2C3D4E5F}", "QEMU guest agent"),
    ];
    pub const WOW64_APPS: &[(&str, &str)] = &[("Notepad++", "Notepad++ (32-bit x86)")];
}

/// The standard guest's SOFTWARE and SYSTEM hives: Windows Server 2022 Datacenter (build
/// 20348), applications in both Uninstall views (and an update without a `DisplayName`),
/// control set 1 with its hostname, and `MountedDevices` naming C: and D: by this disk's
/// signature and offsets, E: as a CD-ROM and F: by a GPT GUID on another disk
/// ([`server_2022::F_PARTUUID`]).
pub fn server_2022_hives(empty_hive: &[u8]) -> (PathBuf, PathBuf) {
    use server_2022::*;
    let uninstall = r"Microsoft\Windows\CurrentVersion\Uninstall";
    let wow64 = r"WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";
    let (seven_zip, agent) = (NATIVE_APPS[0], NATIVE_APPS[1]);
    let software = reg_file(
        SOFTWARE_PREFIX,
        &[
            (
                r"Microsoft\Windows NT\CurrentVersion",
                &[
                    ("ProductName", &sz(PRODUCT_NAME)),
                    ("CurrentMajorVersionNumber", "dword:0000000a"),
                    ("CurrentMinorVersionNumber", "dword:00000000"),
                    ("CurrentVersion", &sz("6.3")),
                    ("CurrentBuildNumber", &sz(BUILD)),
                    ("CurrentBuild", &sz(BUILD)),
                    ("InstallationType", &sz("Server")),
                    ("EditionID", &sz("ServerDatacenter")),
                ],
            ),
            (
                &format!(r"{uninstall}\{}", seven_zip.0),
                &[
                    ("DisplayName", &sz(seven_zip.1)),
                    ("DisplayVersion", &sz("23.01")),
                    ("Publisher", &sz("Igor Pavlov")),
                    ("InstallLocation", &sz(r"C:\\Program Files\\7-Zip\\")),
                    ("URLInfoAbout", &sz("https://www.7-zip.org/")),
                    ("Comments", &sz("file archiver")),
                ],
            ),
            (
                &format!(r"{uninstall}\{}", agent.0),
                &[
                    ("DisplayName", &sz(agent.1)),
                    ("DisplayVersion", &sz("107.0.1")),
                    ("Publisher", &sz("RedHat")),
                ],
            ),
            (
                &format!(r"{uninstall}\KB5005039"),
                &[("ParentKeyName", &sz("OperatingSystem"))],
            ),
            (
                &format!(r"{wow64}\{}", WOW64_APPS[0].0),
                &[
                    ("DisplayName", &sz(WOW64_APPS[0].1)),
                    ("DisplayVersion", &sz("8.6.2")),
                    ("Publisher", &sz("Notepad++ Team")),
                ],
            ),
        ],
    );
    let system = reg_file(
        SYSTEM_PREFIX,
        &[
            (
                "Select",
                &[
                    ("Current", "dword:00000001"),
                    ("Default", "dword:00000001"),
                    ("LastKnownGood", "dword:00000002"),
                ],
            ),
            (
                r"ControlSet001\Services\Tcpip\Parameters",
                &[("Hostname", &sz(HOSTNAME)), ("Domain", &sz(""))],
            ),
            (
                r"ControlSet002\Services\Tcpip\Parameters",
                &[("Hostname", &sz("OLD-NAME"))],
            ),
            (
                "MountedDevices",
                &[
                    (
                        r"\DosDevices\C:",
                        &mbr_mounted_device(DISK_SIGNATURE, SYSTEM_START),
                    ),
                    (
                        r"\DosDevices\D:",
                        &mbr_mounted_device(DISK_SIGNATURE, DATA_START),
                    ),
                    (r"\DosDevices\E:", &sz_utf16(r"\??\IDE#CdRomQEMU")),
                    (r"\DosDevices\F:", &gpt_mounted_device(F_PARTUUID)),
                    (
                        r"\??\Volume{0b5c3e0e-0000-0000-0000-100000000000}",
                        &mbr_mounted_device(DISK_SIGNATURE, SYSTEM_START),
                    ),
                ],
            ),
        ],
    );
    (
        build_hive(
            "software-2022-guest",
            SOFTWARE_PREFIX,
            &software,
            empty_hive,
        ),
        build_hive("system-2022-guest", SYSTEM_PREFIX, &system, empty_hive),
    )
}

/// The standard phony Windows guest: [`server_2022_hives`] and an x86-64 [`tiny_pe`] cmd.exe
/// in [`windows_guest`]'s disk.
pub fn server_2022_guest(empty_hive: &[u8]) -> PathBuf {
    let (software, system) = server_2022_hives(empty_hive);
    let software = std::fs::read(software).expect("read SOFTWARE");
    let system = std::fs::read(system).expect("read SYSTEM");
    windows_guest(WindowsFiles {
        software: Some(&software),
        system: Some(&system),
        cmd_exe: &tiny_pe(0x8664),
    })
}
