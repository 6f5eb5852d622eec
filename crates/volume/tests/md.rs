//! Linux md RAID1 members with version-1 superblocks written to spec by the test (the
//! container has no md driver, so `mdadm --create` cannot run), checked independently with
//! `mdadm --examine`, then read through porthole.
#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.

use std::path::{Path, PathBuf};

use porthole_testkit::*;
use porthole_volume::md::{self, MdVersion};
use porthole_volume::{scan, Error, VolumeKind};

const MIB: u64 = 1 << 20;

/// md's checksum, written out independently of the library's.
fn md_csum(sb: &[u8], max_dev: usize) -> u32 {
    let mut sum = 0u64;
    for (i, w) in sb[..256 + 2 * max_dev].chunks(4).enumerate() {
        if i != 54 {
            sum += u64::from(u32::from_le_bytes(w.try_into().unwrap()));
        }
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// A version-1 RAID1 superblock for member `dev_number` of a 2-disk array.
fn superblock(
    super_sector: u64,
    data_offset: u64,
    sectors: u64,
    dev_number: u32,
    events: u64,
) -> Vec<u8> {
    let mut sb = vec![0u8; 4096];
    let mut put = |at: usize, b: &[u8]| sb[at..at + b.len()].copy_from_slice(b);
    put(0, &0xa92b_4efcu32.to_le_bytes());
    put(4, &1u32.to_le_bytes());
    put(
        16,
        &[
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
            0xff, 0x01,
        ],
    );
    put(32, b"guest:mirror");
    put(64, &1_700_000_000u64.to_le_bytes());
    put(72, &1u32.to_le_bytes());
    put(80, &sectors.to_le_bytes());
    put(92, &2u32.to_le_bytes());
    put(128, &data_offset.to_le_bytes());
    put(136, &sectors.to_le_bytes());
    put(144, &super_sector.to_le_bytes());
    put(160, &dev_number.to_le_bytes());
    put(168, &[dev_number as u8 + 0x40; 16]);
    put(192, &1_700_000_100u64.to_le_bytes());
    put(200, &events.to_le_bytes());
    put(208, &u64::MAX.to_le_bytes()); // resync_offset: clean
    put(220, &2u32.to_le_bytes()); // max_dev
    put(256, &0u16.to_le_bytes());
    put(258, &1u16.to_le_bytes());
    let csum = md_csum(&sb, 2);
    sb[216..220].copy_from_slice(&csum.to_le_bytes());
    sb
}

/// Two 8 MiB members of a 1.2 array (superblock at 4 KiB, data from 1 MiB) and one 8 MiB member
/// of a 1.0 array (superblock at the end, data from 0). Data areas hold `pattern("mirror")`.
fn images() -> Vec<PathBuf> {
    cached(
        "md v3: 2x1.2 + 1x1.0, 8M",
        &["m12a.img", "m12b.img", "m10.img"],
        |p| {
            let data12 = pattern("mirror", (6 * MIB) as usize);
            for (i, path) in p[..2].iter().enumerate() {
                truncate(path, 8 * MIB);
                dd_write(
                    path,
                    4096,
                    &superblock(8, 2048, 6 * MIB / 512, i as u32, 10 + i as u64),
                );
                let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, &data12, MIB).unwrap();
            }
            let path = &p[2];
            truncate(path, 8 * MIB);
            let end_sector = (8 * MIB / 512 - 16) & !7;
            dd_write(
                path,
                end_sector * 512,
                &superblock(end_sector, 0, 7 * MIB / 512, 0, 5),
            );
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            std::os::unix::fs::FileExt::write_all_at(
                &f,
                &pattern("mirror10", (7 * MIB) as usize),
                0,
            )
            .unwrap();
        },
    )
}

fn examine(path: &Path) -> String {
    run(
        "mdadm",
        "mdadm",
        &["--examine", &path.to_string_lossy()],
        None,
    )
}

#[test]
fn mdadm_agrees_with_the_crafted_superblocks() {
    let p = images();
    let out = examine(&p[0]);
    for needle in [
        "Version : 1.2",
        "Raid Level : raid1",
        "Array UUID : 11223344:55667788:99aabbcc:ddeeff01",
        "Name : guest:mirror",
        "Data Offset : 2048 sectors",
        "- correct",
    ] {
        assert!(
            out.contains(needle),
            "mdadm --examine lacks {needle:?}:\n{out}"
        );
    }
    let out = examine(&p[2]);
    assert!(
        out.contains("Version : 1.0") && out.contains("- correct"),
        "{out}"
    );
}

#[test]
fn raid1_members_read_as_the_array() {
    let p = images();
    let m = md::probe(&open(&p[1])).unwrap().unwrap();
    assert_eq!(m.version, MdVersion::V1_2);
    assert_eq!(
        (m.level, m.raid_disks, m.dev_number, m.events),
        (1, 2, 1, 11)
    );
    assert_eq!(m.array_uuid, "11223344:55667788:99aabbcc:ddeeff01");
    assert_eq!(m.dev_path(), "/dev/md/mirror");
    let array = md::raid1_device(&open(&p[1]), &m).unwrap();
    assert_eq!(array.size(), 6 * MIB);
    assert!(read(&*array, 0, (6 * MIB) as usize) == pattern("mirror", (6 * MIB) as usize));

    let m = md::probe(&open(&p[2])).unwrap().unwrap();
    assert_eq!(m.version, MdVersion::V1_0);
    let array = md::raid1_device(&open(&p[2]), &m).unwrap();
    assert!(read(&*array, 0, (7 * MIB) as usize) == pattern("mirror10", (7 * MIB) as usize));
}

#[test]
fn scan_shows_one_array_for_two_members() {
    let p = images();
    let found = scan(&[open(&p[0]), open(&p[1])]);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let summary: Vec<(&str, VolumeKind, u64, &str)> = found
        .volumes
        .iter()
        .map(|v| (v.path.as_str(), v.kind, v.size, v.type_name.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("/dev/sda", VolumeKind::Disk, 8 * MIB, "Linux RAID member"),
            ("/dev/sdb", VolumeKind::Disk, 8 * MIB, "Linux RAID member"),
            (
                "/dev/md/mirror",
                VolumeKind::MdArray,
                6 * MIB,
                "Linux RAID1"
            ),
        ]
    );
}

fn crafted(edit: impl FnOnce(&mut Vec<u8>)) -> Result<Option<md::MdMember>, Error> {
    let mut disk = vec![0u8; (2 * MIB) as usize];
    let mut sb = superblock(8, 2048, 1024, 0, 1);
    edit(&mut sb);
    disk[4096..8192].copy_from_slice(&sb);
    md::probe(&mem(disk))
}

fn refresh_csum(sb: &mut [u8]) {
    let max_dev = u32::from_le_bytes(sb[220..224].try_into().unwrap()) as usize;
    let csum = md_csum(sb, max_dev.min(1920));
    sb[216..220].copy_from_slice(&csum.to_le_bytes());
}

#[test]
fn hostile_superblocks_are_clear_errors() {
    assert!(crafted(|_| {}).unwrap().is_some());
    let err = crafted(|sb| sb[100] ^= 1).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    let err = crafted(|sb| sb[220..224].copy_from_slice(&u32::MAX.to_le_bytes())).unwrap_err();
    assert!(matches!(err, Error::Limit { .. }), "{err}");
    let err = crafted(|sb| {
        sb[80..88].copy_from_slice(&(1u64 << 40).to_le_bytes());
        refresh_csum(sb);
    })
    .unwrap_err();
    assert!(err.to_string().contains("beyond"), "{err}");
    let member = crafted(|sb| {
        sb[72..76].copy_from_slice(&5u32.to_le_bytes());
        refresh_csum(sb);
    })
    .unwrap()
    .unwrap();
    let err = md::raid1_device(&mem(vec![0u8; (2 * MIB) as usize]), &member).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(md::probe(&mem(vec![0u8; 100])).unwrap().is_none());
}
