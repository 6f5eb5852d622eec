//! LVM2 volume groups built by real lvm2 on loop devices over plain files (device-mapper is
//! not needed: LVs are created with activation off), then read back from the files alone.
#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use porthole_image::BlockDevice;
use porthole_testkit::kernel::Loop;
use porthole_testkit::*;
use porthole_volume::lvm::{self, LogicalVolume, VolumeGroup};
use porthole_volume::{scan, Error, VolumeKind};

/// lvm2 restricted to our loop devices, without udev, dm, backups or archives.
fn lvm(loops: &[&Loop], args: &[&str]) -> String {
    let devices: Vec<&str> = loops.iter().map(|l| l.0.as_str()).collect();
    porthole_testkit::kernel::lvm(&devices, args)
}

const LV_OPTS: &[&str] = &["--driverloaded", "n", "-an", "-Zn", "-Wn", "-y"];

fn lvcreate(loops: &[&Loop], extra: &[&str]) {
    let mut args = vec!["lvcreate"];
    args.extend_from_slice(LV_OPTS);
    args.extend_from_slice(extra);
    lvm(loops, &args);
}

/// The layout lvm2 reports for every LV segment: (lv, seg start, seg size, stripe size,
/// [(pv device, first extent)]), plus each PV's first-extent offset.
/// (lv, seg start, seg size, stripe size, [(pv device, first extent)]), bytes.
type Seg = (String, u64, u64, u64, Vec<(String, u64)>);

struct Layout {
    extent: u64,
    pe_start: Vec<(String, u64)>,
    segments: Vec<Seg>,
}

fn layout(loops: &[&Loop], vg: &str) -> Layout {
    let out = lvm(
        loops,
        &[
            "vgs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_extent_size",
            vg,
        ],
    );
    let extent = out.trim().parse().expect("extent size");
    let out = lvm(
        loops,
        &[
            "pvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "--separator",
            ";",
            "-o",
            "pv_name,pe_start",
        ],
    );
    let pe_start = out
        .lines()
        .map(|l| {
            let (n, s) = l.trim().split_once(';').expect("pvs line");
            (n.to_string(), s.parse().expect("pe_start"))
        })
        .collect();
    let out = lvm(
        loops,
        &[
            "lvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "--separator",
            ";",
            "-o",
            "lv_name,seg_start,seg_size,stripe_size,seg_pe_ranges",
            vg,
        ],
    );
    let segments = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.trim().split(';').collect();
            let ranges = f[4]
                .split_whitespace()
                .map(|r| {
                    let (dev, range) = r.split_once(':').expect("pe range");
                    let first = range
                        .split('-')
                        .next()
                        .unwrap()
                        .parse()
                        .expect("first extent");
                    (dev.to_string(), first)
                })
                .collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                ranges,
            )
        })
        .collect();
    Layout {
        extent,
        pe_start,
        segments,
    }
}

/// Writes `pattern(lv)` over every LV through the mapping lvm2 reported (dm-stripe's layout:
/// chunk k of a segment goes to stripe k mod n at chunk k div n of that stripe).
fn fill(layout: &Layout, files: &[(String, PathBuf, u64)]) {
    let mut lv_sizes: Vec<(String, u64)> = Vec::new();
    for (lv, start, size, _, _) in &layout.segments {
        match lv_sizes.iter_mut().find(|(n, _)| n == lv) {
            Some(e) => e.1 = e.1.max(start + size),
            None => lv_sizes.push((lv.clone(), start + size)),
        }
    }
    for (lv, start, size, stripe, ranges) in &layout.segments {
        let total = lv_sizes.iter().find(|(n, _)| n == lv).unwrap().1;
        let data = pattern(lv, total as usize);
        let n = ranges.len() as u64;
        let chunk = if n == 1 { *size } else { *stripe };
        for k in 0..size / chunk {
            let (dev, first) = &ranges[(k % n) as usize];
            let (_, path, file_off) = files.iter().find(|(d, _, _)| d == dev).expect("pv file");
            let pe = layout.pe_start.iter().find(|(d, _)| d == dev).unwrap().1;
            let at = file_off + pe + first * layout.extent + (k / n) * chunk;
            let lv_off = (start + k * chunk) as usize;
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.write_all_at(&data[lv_off..lv_off + chunk as usize], at)
                .unwrap();
        }
    }
}

/// (start, size) in bytes of the disk image's second partition, as sfdisk reports it.
fn partition_2(disk: &Path) -> (u64, u64) {
    let json = run(
        "sfdisk",
        "fdisk",
        &["--json", &disk.to_string_lossy()],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("sfdisk json");
    let p = &v["partitiontable"]["partitions"][1];
    (
        p["start"].as_u64().unwrap() * 512,
        p["size"].as_u64().unwrap() * 512,
    )
}

const RECIPE: &str = "v6: a.img b.img 24M pvs (b without metadata); vg porthole-vg -s 1M; lin 3M on a + 2M on b; str -i2 -I64k 8M; my-lv 1M on a; \
disk.img 32M gpt p1 linux 4M p2 lvm rest; vg scanvg; root 6M";

/// Builds (once, cached) two PV images for `porthole-vg` and a GPT disk whose second
/// partition is the PV of `scanvg`.
fn images() -> Vec<PathBuf> {
    cached(RECIPE, &["a.img", "b.img", "disk.img"], |p| {
        let (a, b, disk) = (&p[0], &p[1], &p[2]);
        truncate(a, 24 << 20);
        truncate(b, 24 << 20);
        truncate(disk, 32 << 20);
        run("sfdisk", "fdisk", &["--no-reread", "--no-tell-kernel", &disk.to_string_lossy()], Some(
            "label: gpt\nstart=2048, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"boot\"\nstart=10240, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=\"pv\"\n",
        ));
        let part_size = partition_2(disk).1;
        let (la, lb) = (Loop::attach(a), Loop::attach(b));
        let lp = Loop::attach_window(disk, 10240 * 512, Some(part_size));
        let all = [&la, &lb, &lp];
        lvm(&all, &["pvcreate", "-y", &la.0, &lp.0]);
        // b carries no metadata copy: it is recognised by its PV UUID alone.
        lvm(&all, &["pvcreate", "-y", "--metadatacopies", "0", &lb.0]);
        lvm(&all, &["vgcreate", "-s", "1M", "porthole-vg", &la.0, &lb.0]);
        lvm(&all, &["vgcreate", "-s", "1M", "scanvg", &lp.0]);
        lvcreate(&all, &["-L", "3M", "-n", "lin", "porthole-vg", &la.0]);
        lvcreate(
            &all,
            &[
                "-i",
                "2",
                "-I",
                "64k",
                "-L",
                "8M",
                "-n",
                "str",
                "porthole-vg",
            ],
        );
        lvcreate(&all, &["-L", "1M", "-n", "my-lv", "porthole-vg", &la.0]);
        lvm(
            &all,
            &[
                "lvextend",
                "--driverloaded",
                "n",
                "-L",
                "+2M",
                "porthole-vg/lin",
                &lb.0,
            ],
        );
        lvcreate(&all, &["-L", "6M", "-n", "root", "scanvg"]);
        let files = vec![
            (la.0.clone(), a.clone(), 0),
            (lb.0.clone(), b.clone(), 0),
            (lp.0.clone(), disk.clone(), 10240 * 512),
        ];
        for vg in ["porthole-vg", "scanvg"] {
            let l = layout(&all, vg);
            fill(&l, &files);
        }
    })
}

fn porthole_vg() -> VolumeGroup {
    let p = images();
    let groups = lvm::assemble(&[open(&p[0]), open(&p[1])]).expect("assemble");
    assert_eq!(groups.len(), 1);
    groups.into_iter().next().unwrap()
}

fn check_lv(lv: &LogicalVolume, size: u64) {
    assert_eq!(lv.size(), size, "{}", lv.name);
    let expected = pattern(&lv.name, size as usize);
    assert!(
        read(lv, 0, size as usize) == expected,
        "{}: whole-LV read differs",
        lv.name
    );
    // Unaligned reads across chunk, stripe and segment boundaries.
    for (off, len) in [
        (1u64, 70_000u64),
        (65_535, 3),
        (3 * 1048576 - 5, 10),
        (size - 100_000, 100_000),
        (131_071, 262_146),
    ] {
        if off >= size {
            continue;
        }
        let len = len.min(size - off) as usize;
        assert!(
            read(lv, off, len) == expected[off as usize..off as usize + len],
            "{} at {off}+{len}",
            lv.name
        );
    }
    assert!(lv.read_exact_at(&mut [0u8; 2], size - 1).is_err());
}

#[test]
fn linear_and_striped_lvs_across_two_image_files() {
    let vg = porthole_vg();
    assert_eq!(vg.name, "porthole-vg");
    assert_eq!(vg.extent_bytes, 1 << 20);
    assert!(vg.missing_pvs().is_empty());
    let mut names: Vec<&str> = vg.lvs.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["lin", "my-lv", "str"]);
    check_lv(&vg.logical_volume("lin").unwrap(), 5 << 20);
    check_lv(&vg.logical_volume("str").unwrap(), 8 << 20);
    let my = vg.logical_volume("my-lv").unwrap();
    check_lv(&my, 1 << 20);
    assert_eq!(my.dev_path(), "/dev/porthole-vg/my-lv");
    assert_eq!(my.mapper_path(), "/dev/mapper/porthole--vg-my--lv");
}

#[test]
fn missing_pv_is_reported_and_only_fails_lvs_on_it() {
    let p = images();
    let groups = lvm::assemble(&[open(&p[0])]).expect("assemble");
    let vg = &groups[0];
    let missing: Vec<&str> = vg.missing_pvs().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(missing, ["pv1"]);
    let err = vg.logical_volume("lin").unwrap_err();
    assert!(
        matches!(&err, Error::MissingPv { pv, lv, .. } if pv == "pv1" && lv == "lin"),
        "{err}"
    );
    assert!(
        err.to_string().contains("missing physical volume pv1"),
        "{err}"
    );
    check_lv(&vg.logical_volume("my-lv").unwrap(), 1 << 20);
}

#[test]
fn pv_without_metadata_alone_belongs_to_no_vg() {
    let p = images();
    let pv = lvm::probe(&open(&p[1])).unwrap().expect("b is a PV");
    assert!(pv.label.metadata_areas.is_empty());
    assert!(pv.metadata.is_none());
    assert!(lvm::assemble(&[open(&p[1])]).unwrap().is_empty());
    let found = scan(&[open(&p[1])]);
    assert_eq!(found.volumes.len(), 1);
    assert!(
        found.problems[0].contains("belongs to no volume group"),
        "{:?}",
        found.problems
    );
}

#[test]
fn non_pv_device_is_refused() {
    let err = lvm::assemble(&[mem(vec![0u8; 8192])]).unwrap_err();
    assert!(err.to_string().contains("no LVM2 label"), "{err}");
}

#[test]
fn scan_finds_partitions_and_lvs_on_partitions_and_whole_disk_pvs() {
    let p = images();
    let found = scan(&[open(&p[2]), open(&p[0]), open(&p[1])]);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let summary: Vec<(String, VolumeKind, u64, String)> = found
        .volumes
        .iter()
        .map(|v| (v.path.clone(), v.kind, v.size, v.type_name.clone()))
        .collect();
    let expect =
        |path: &str, kind, size: u64, ty: &str| (path.to_string(), kind, size, ty.to_string());
    let part2 = partition_2(&p[2]).1;
    assert_eq!(
        summary,
        [
            expect(
                "/dev/sda1",
                VolumeKind::Partition,
                4 << 20,
                "Linux filesystem"
            ),
            expect("/dev/sda2", VolumeKind::Partition, part2, "Linux LVM"),
            expect("/dev/sdb", VolumeKind::Disk, 24 << 20, "LVM2 PV"),
            expect("/dev/sdc", VolumeKind::Disk, 24 << 20, "LVM2 PV"),
            expect(
                "/dev/porthole-vg/lin",
                VolumeKind::LogicalVolume,
                5 << 20,
                "LVM2 LV"
            ),
            expect(
                "/dev/porthole-vg/my-lv",
                VolumeKind::LogicalVolume,
                1 << 20,
                "LVM2 LV"
            ),
            expect(
                "/dev/porthole-vg/str",
                VolumeKind::LogicalVolume,
                8 << 20,
                "LVM2 LV"
            ),
            expect(
                "/dev/scanvg/root",
                VolumeKind::LogicalVolume,
                6 << 20,
                "LVM2 LV"
            ),
        ]
    );
    let root = found
        .volumes
        .iter()
        .find(|v| v.path == "/dev/scanvg/root")
        .unwrap();
    assert!(read(&*root.device, 0, 6 << 20) == pattern("root", 6 << 20));
    assert_eq!(root.mapper_path.as_deref(), Some("/dev/mapper/scanvg-root"));
    let sda1 = &found.volumes[0];
    assert_eq!(sda1.name.as_deref(), Some("boot"));
    assert!(sda1.partuuid.as_ref().is_some_and(|u| u.len() == 36));
}
