//! MBR and GPT tables built with sfdisk on plain files, read back through porthole.
#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.
use porthole_image::BlockDevice;

use porthole_testkit::*;
use porthole_volume::{read_partition_table, Error, PartitionKind, PartitionTable, Scheme};
use serde_json::Value;
use std::path::{Path, PathBuf};

const MBR_SCRIPT: &str = "label: dos
label-id: 0x1234abcd
start=2048, size=8192, type=83, bootable
start=10240, size=8192, type=8e
start=18432, size=4096, type=c
start=22528, size=40960, type=5
size=8192, type=83
size=8192, type=82
size=4096, type=fd
";

const GPT_SCRIPT: &str = "label: gpt
label-id: 0D1E2F30-4152-4364-8576-A7B8C9DAEBFC
first-lba: 2048
start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system\", uuid=11111111-2222-3333-4444-555555555555
size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root fs\"
size=8192, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=\"lvm\"
size=4096, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=\"swap\"
size=2048, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"data\"
size=2048, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name=\"msr\"
size=2048, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"
size=2048, type=A19D880F-05FC-4D3B-A006-743F0F84911E, name=\"raid\"
";

/// Builds a 64 MiB image partitioned by `script`, then writes a tagged pattern at the start
/// and at the end of every partition that sfdisk reports.
fn build(script: &str, name: &str) -> PathBuf {
    let recipe = format!("v3 {name}\n{script}");
    cached(&recipe, &[name], |paths| {
        let path = &paths[0];
        truncate(path, 64 << 20);
        run(
            "sfdisk",
            "fdisk",
            &["--no-reread", "--no-tell-kernel", &path.to_string_lossy()],
            Some(script),
        );
        // The extended partition's first sector is the EBR: leave it alone.
        for p in sfdisk_parts(path).iter().filter(|p| p["type"] != "5") {
            let (start, size) = (
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            );
            dd_write(path, start, &pattern(&format!("{start} head"), 1000));
            dd_write(
                path,
                start + size - 1000,
                &pattern(&format!("{start} tail"), 1000),
            );
        }
    })
    .remove(0)
}

/// sfdisk's own view of the table: the independent reference.
fn sfdisk_parts(path: &Path) -> Vec<Value> {
    let json = run(
        "sfdisk",
        "fdisk",
        &["--json", &path.to_string_lossy()],
        None,
    );
    let v: Value = serde_json::from_str(&json).expect("sfdisk json");
    v["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions")
        .clone()
}

/// Checks every partition porthole found against sfdisk (start, size, type) and reads back
/// the patterns through the partition devices.
fn check_against_sfdisk(path: &Path, table: &PartitionTable, skip_extended: bool) {
    let expected: Vec<Value> = sfdisk_parts(path)
        .into_iter()
        .filter(|p| !(skip_extended && p["type"] == "5"))
        .collect();
    assert_eq!(table.partitions.len(), expected.len(), "{table:#?}");
    for (p, e) in table.partitions.iter().zip(&expected) {
        let node = e["node"].as_str().unwrap();
        assert!(
            node.ends_with(&p.number.to_string()),
            "{node} vs {}",
            p.number
        );
        assert_eq!(p.start_lba, e["start"].as_u64().unwrap(), "{node}");
        assert_eq!(p.sectors, e["size"].as_u64().unwrap(), "{node}");
        let ty = e["type"].as_str().unwrap().to_lowercase();
        assert_eq!(
            p.type_id
                .to_string()
                .trim_start_matches("0x")
                .trim_start_matches('0'),
            ty.trim_start_matches('0'),
            "{node}"
        );
        if let Some(name) = e.get("name") {
            assert_eq!(p.name.as_deref(), name.as_str(), "{node}");
        }
        let (size, start) = (p.size(), p.start_lba * 512);
        assert!(
            read(&*p.device, 0, 1000) == pattern(&format!("{start} head"), 1000),
            "{node} head"
        );
        assert!(
            read(&*p.device, size - 1000, 1000) == pattern(&format!("{start} tail"), 1000),
            "{node} tail"
        );
        assert!(
            p.device.read_exact_at(&mut [0u8; 1], size).is_err(),
            "{node}: read past end"
        );
    }
}

#[test]
fn mbr_with_extended_and_logical_partitions() {
    let path = build(MBR_SCRIPT, "mbr.img");
    let table = read_partition_table(&open(&path))
        .unwrap()
        .expect("a table");
    assert_eq!(table.scheme, Scheme::Mbr);
    assert_eq!(table.disk_id, "1234abcd");
    check_against_sfdisk(&path, &table, true);
    let numbers: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3, 5, 6, 7]);
    let kinds: Vec<PartitionKind> = table.partitions.iter().map(|p| p.kind()).collect();
    use PartitionKind::*;
    assert_eq!(
        kinds,
        [
            LinuxFilesystem,
            LinuxLvm,
            Fat,
            LinuxFilesystem,
            LinuxSwap,
            LinuxRaid
        ]
    );
    let uuids: Vec<&str> = table
        .partitions
        .iter()
        .map(|p| p.partuuid.as_str())
        .collect();
    assert_eq!(
        uuids,
        [
            "1234abcd-01",
            "1234abcd-02",
            "1234abcd-03",
            "1234abcd-05",
            "1234abcd-06",
            "1234abcd-07"
        ]
    );
    assert!(table.warnings.is_empty(), "{:?}", table.warnings);
}

#[test]
fn gpt_with_named_partitions() {
    let path = build(GPT_SCRIPT, "gpt.img");
    let table = read_partition_table(&open(&path))
        .unwrap()
        .expect("a table");
    assert_eq!(table.scheme, Scheme::Gpt);
    assert!(!table.used_backup_gpt);
    assert_eq!(table.disk_id, "0d1e2f30-4152-4364-8576-a7b8c9daebfc");
    check_against_sfdisk(&path, &table, false);
    assert_eq!(
        table.partitions[0].partuuid,
        "11111111-2222-3333-4444-555555555555"
    );
    let expected_uuids: Vec<String> = sfdisk_parts(&path)
        .iter()
        .map(|p| p["uuid"].as_str().unwrap().to_lowercase())
        .collect();
    let uuids: Vec<String> = table
        .partitions
        .iter()
        .map(|p| p.partuuid.clone())
        .collect();
    assert_eq!(uuids, expected_uuids);
    let names: Vec<&str> = table.partitions.iter().map(|p| p.kind().name()).collect();
    assert_eq!(
        names,
        [
            "EFI System",
            "Linux filesystem",
            "Linux LVM",
            "Linux swap",
            "Microsoft basic data",
            "Microsoft reserved",
            "BIOS boot",
            "Linux RAID"
        ]
    );
}

/// Copies the GPT image and damages it with `damage(bytes)`.
fn damaged_gpt(tag: &str, damage: impl FnOnce(&mut Vec<u8>)) -> (PathBuf, PathBuf) {
    let path = build(GPT_SCRIPT, "gpt.img");
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    let copy = std::env::temp_dir().join(format!("porthole-gpt-{tag}-{}.img", std::process::id()));
    std::fs::write(&copy, &bytes).unwrap();
    (path, copy)
}

#[test]
fn gpt_damaged_primary_header_falls_back_to_backup() {
    // Byte 0x30 of LBA 1 is inside last_usable_lba: the header CRC no longer matches.
    let (orig, copy) = damaged_gpt("header", |b| b[512 + 0x30] ^= 0x55);
    let table = read_partition_table(&open(&copy))
        .unwrap()
        .expect("a table");
    assert!(table.used_backup_gpt);
    assert!(
        table.warnings[0].contains("header CRC32"),
        "{:?}",
        table.warnings
    );
    check_against_sfdisk(&orig, &table, false);
    std::fs::remove_file(copy).unwrap();
}

#[test]
fn gpt_damaged_primary_entry_array_falls_back_to_backup() {
    // LBA 2 holds the first entries; damage the first partition's name.
    let (orig, copy) = damaged_gpt("array", |b| b[1024 + 60] ^= 0x01);
    let table = read_partition_table(&open(&copy))
        .unwrap()
        .expect("a table");
    assert!(table.used_backup_gpt);
    assert!(
        table.warnings[0].contains("entry array CRC32"),
        "{:?}",
        table.warnings
    );
    check_against_sfdisk(&orig, &table, false);
    std::fs::remove_file(copy).unwrap();
}

#[test]
fn gpt_both_headers_damaged_is_a_clear_error() {
    let (_, copy) = damaged_gpt("both", |b| {
        b[512 + 0x30] ^= 1;
        let last = b.len() - 512;
        b[last + 0x30] ^= 1;
    });
    let err = read_partition_table(&open(&copy)).unwrap_err();
    assert!(matches!(err, Error::GptUnreadable { .. }), "{err}");
    std::fs::remove_file(copy).unwrap();
}

// ---- crafted hostile tables ----

fn mbr_entry(sector: &mut [u8], slot: usize, ty: u8, start: u32, sectors: u32) {
    let e = &mut sector[446 + 16 * slot..462 + 16 * slot];
    e[4] = ty;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
}

fn boot_sig(sector: &mut [u8]) {
    sector[510] = 0x55;
    sector[511] = 0xaa;
}

#[test]
fn ebr_loop_is_an_error() {
    let mut disk = vec![0u8; 2048 * 512];
    boot_sig(&mut disk[..512]);
    mbr_entry(&mut disk[..512], 0, 0x05, 100, 1000);
    // EBR at 100 -> EBR at 150 -> back to EBR at 100.
    for (lba, next) in [(100usize, 50u32), (150, 0)] {
        let s = &mut disk[lba * 512..lba * 512 + 512];
        boot_sig(s);
        mbr_entry(s, 0, 0x83, 1, 10);
        mbr_entry(s, 1, 0x05, next, 100);
    }
    let err = read_partition_table(&mem(disk)).unwrap_err();
    assert!(err.to_string().contains("loops back"), "{err}");
}

#[test]
fn long_ebr_chain_is_capped() {
    let mut disk = vec![0u8; 700 * 512];
    boot_sig(&mut disk[..512]);
    mbr_entry(&mut disk[..512], 0, 0x05, 1, 698);
    for i in 0..698u32 {
        let lba = 1 + i as usize;
        let s = &mut disk[lba * 512..lba * 512 + 512];
        boot_sig(s);
        mbr_entry(s, 1, 0x05, i + 1, 1);
    }
    let err = read_partition_table(&mem(disk)).unwrap_err();
    assert!(matches!(err, Error::Limit { .. }), "{err}");
}

/// A CRC-valid GPT header at `lba` with the given entry count.
fn gpt_header(disk: &mut [u8], lba: u64, entries: u32) {
    let at = lba as usize * 512;
    let h = &mut disk[at..at + 92];
    h[..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x10000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&lba.to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&entries.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    let crc = crc32(h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn gpt_claiming_2_pow_32_entries_is_an_error_not_an_allocation() {
    let mut disk = vec![0u8; 64 * 512];
    boot_sig(&mut disk[..512]);
    mbr_entry(&mut disk[..512], 0, 0xee, 1, 63);
    gpt_header(&mut disk, 1, u32::MAX);
    gpt_header(&mut disk, 63, u32::MAX);
    let err = read_partition_table(&mem(disk)).unwrap_err();
    let Error::GptUnreadable { primary, backup } = &err else {
        panic!("{err}")
    };
    assert!(matches!(**primary, Error::Limit { .. }), "{primary}");
    assert!(matches!(**backup, Error::Limit { .. }), "{backup}");
    assert!(
        err.to_string().contains("4294967295 partition entries"),
        "{err}"
    );
}

#[test]
fn no_boot_signature_means_no_table() {
    assert!(read_partition_table(&mem(vec![0u8; 4096]))
        .unwrap()
        .is_none());
    assert!(read_partition_table(&mem(vec![0u8; 10])).unwrap().is_none());
}

/// A 4Kn disk: GPT in 4096-byte sectors, made with `fdisk -b 4096` (sfdisk 2.38 has no
/// sector-size option). Returns the image and fdisk's (start, sectors) per partition.
fn gpt_4k() -> (PathBuf, Vec<(u64, u64)>) {
    let path = cached("v1 gpt 4Kn 32M: 4M, 8M, 2M", &["gpt4k.img"], |paths| {
        let path = &paths[0];
        truncate(path, 32 << 20);
        let script = "g\nn\n\n\n+4M\nn\n\n\n+8M\nn\n\n\n+2M\nw\n";
        run(
            "fdisk",
            "fdisk",
            &["-b", "4096", &path.to_string_lossy()],
            Some(script),
        );
        for (start, sectors) in fdisk_4k_parts(path) {
            dd_write(
                path,
                start * 4096,
                &pattern(&format!("4k {start} head"), 5000),
            );
            let end = (start + sectors) * 4096;
            dd_write(
                path,
                end - 5000,
                &pattern(&format!("4k {start} tail"), 5000),
            );
        }
    })
    .remove(0);
    let parts = fdisk_4k_parts(&path);
    (path, parts)
}

fn fdisk_4k_parts(path: &Path) -> Vec<(u64, u64)> {
    let out = run(
        "fdisk",
        "fdisk",
        &[
            "-b",
            "4096",
            "-l",
            "-o",
            "Device,Start,Sectors",
            &path.to_string_lossy(),
        ],
        None,
    );
    out.lines()
        .skip_while(|l| !l.starts_with("Device"))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn gpt_with_4096_byte_sectors() {
    let (path, parts) = gpt_4k();
    assert_eq!(parts.len(), 3, "fdisk listed {parts:?}");
    let table = read_partition_table(&open(&path))
        .unwrap()
        .expect("a table");
    assert_eq!((table.scheme, table.sector_size), (Scheme::Gpt, 4096));
    let got: Vec<(u64, u64)> = table
        .partitions
        .iter()
        .map(|p| (p.start_lba, p.sectors))
        .collect();
    assert_eq!(got, parts);
    for p in &table.partitions {
        let start = p.start_lba;
        assert_eq!(p.size(), p.sectors * 4096);
        assert!(read(&*p.device, 0, 5000) == pattern(&format!("4k {start} head"), 5000));
        assert!(
            read(&*p.device, p.size() - 5000, 5000) == pattern(&format!("4k {start} tail"), 5000)
        );
    }
    // The backup header alone also identifies the sector size.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4096..4104].copy_from_slice(b"NOT GPT!");
    let table = read_partition_table(&mem(bytes)).unwrap().expect("a table");
    assert!(table.used_backup_gpt && table.sector_size == 4096);
    assert_eq!(table.partitions.len(), 3);
}

/// A FAT or NTFS filesystem on the whole disk ends its boot sector in 0x55AA like an MBR; it is
/// a filesystem, not a partition table (as blkid says), whatever its boot code looks like.
#[test]
fn whole_disk_fat_and_ntfs_are_not_partition_tables() {
    let images = cached(
        "whole-disk fat12 fat16 fat32 ntfs v1",
        &["fat12", "fat16", "fat32", "ntfs"],
        |p| {
            for (path, (size, args)) in p.iter().zip([
                (4u64, vec!["-F", "12"]),
                (32, vec!["-F", "16"]),
                (64, vec!["-F", "32", "-s", "1"]),
            ]) {
                truncate(path, size << 20);
                let mut all = args;
                let target = path.to_string_lossy().into_owned();
                all.push(&target);
                run("mkfs.vfat", "dosfstools", &all, None);
            }
            truncate(&p[3], 8 << 20);
            run(
                "mkntfs",
                "ntfs-3g",
                &["-F", "-Q", &p[3].to_string_lossy()],
                None,
            );
        },
    );
    for image in &images {
        let table = read_partition_table(&open(image)).unwrap();
        assert!(table.is_none(), "{}: read as {table:?}", image.display());
    }
    // A FAT partition inside a real MBR is still a partition.
    let disk = build(MBR_SCRIPT, "mbr-for-vbr-check");
    let table = read_partition_table(&open(&disk)).unwrap();
    assert!(table.is_some_and(|t| !t.partitions.is_empty()));
}
